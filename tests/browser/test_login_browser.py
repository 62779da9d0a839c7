"""Sign in with HubSpot and with Salesforce in headless Chromium (issue 12): the app is
installed through the sandbox's consent page, then a rep of the same account clicks "Sign in
with ..." on the home page, picks themself on the sandbox's page and lands on /app."""
from __future__ import annotations

from tests.test_login import CLIENT_ID, ENT, app_config, hs, org, sf  # noqa: F401 (fixtures)


def _consent_hubspot(page, user_label: str | None) -> None:
    page.locator("select[name=portal_id]").select_option(str(ENT))
    if user_label:
        page.locator("select[name=user_id]").select_option(label=user_label)
    page.get_by_role("button", name="Connect app").click()


def test_sign_in_with_hubspot_lands_a_rep_on_app(browser, live_server, hs):  # noqa: F811
    installer = browser.page()
    installer.goto(live_server + "/install/hubspot")
    _consent_hubspot(installer, None)
    installer.wait_for_url(live_server + "/**")

    rep = browser.page()
    rep.goto(live_server + "/")
    rep.get_by_role("link", name="Sign in with HubSpot").click()
    _consent_hubspot(rep, f"rep@sandbox-{ENT}.test")
    rep.wait_for_url(live_server + "/app")
    assert rep.get_by_role("heading", level=1).inner_text() == "Your plans"
    assert f"rep@sandbox-{ENT}.test · rep" in rep.locator(".who").inner_text()


def test_sign_in_with_salesforce_lands_a_rep_on_app(browser, live_server, sf, org):  # noqa: F811
    sf.apps[CLIENT_ID].redirect_uris.append(live_server + "/oauth/salesforce/callback")
    person = sf.add_user(org, "rita@acme.example", name="Rita Rep", email="rita@acme.example")
    installer = browser.page(ignore_https_errors=True)
    installer.goto(live_server + "/install/salesforce")
    installer.locator("#login").select_option(f"{org.id}:{org.admin.id}")
    installer.get_by_role("button", name="Allow").click()
    installer.wait_for_url(live_server + "/**")

    rep = browser.page(ignore_https_errors=True)
    rep.goto(live_server + "/")
    rep.get_by_role("link", name="Sign in with Salesforce").click()
    rep.locator("#login").select_option(f"{org.id}:{person.id}")
    rep.get_by_role("button", name="Allow").click()
    rep.wait_for_url(live_server + "/app")
    assert rep.get_by_role("heading", level=1).inner_text() == "Your plans"
    assert "Rita Rep · rep" in rep.locator(".who").inner_text()
