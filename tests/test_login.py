"""Signing in with the CRM (issue 12) through both sandboxes over real HTTP: "Sign in with
HubSpot" (OAuth + the token's introspection) and "Sign in with Salesforce" (OpenID Connect
scopes + UserInfo), the refusals, and the installer recorded as an admin."""
from __future__ import annotations

import urllib.parse

import pytest
import requests
from sqlalchemy import select

from sandboxes.hubspot import HubSpotSandbox
from sandboxes.hubspot import serve as serve_hubspot
from sandboxes.salesforce import SalesforceSandbox
from sandboxes.salesforce import serve as serve_salesforce
from webapp import installations
from webapp.db import session
from webapp.models import Installation, User, UserSession

ENT, PRO = 100001, 100002
CLIENT_ID, CLIENT_SECRET = "mp-test-client", "mp-test-secret"
PUBLIC = "http://localhost"
HTML = {"Accept": "text/html"}


@pytest.fixture
def hs():
    sandbox = HubSpotSandbox(v1_oauth=False)
    sandbox.server = serve_hubspot(sandbox)
    yield sandbox
    sandbox.server.shutdown()
    sandbox.assert_no_contract_violations()


@pytest.fixture
def sf():
    sandbox = SalesforceSandbox()
    sandbox.add_connected_app(CLIENT_ID, CLIENT_SECRET, [PUBLIC + "/oauth/salesforce/callback"])
    sandbox.add_org("Acme Corp", my_domain="acme")
    handle = serve_salesforce(sandbox)
    sandbox.handle = handle
    yield sandbox
    handle.shutdown()


@pytest.fixture
def app_config(hs, sf):
    return {"HUBSPOT_CLIENT_ID": "sandbox-client-id", "HUBSPOT_CLIENT_SECRET":
            "sandbox-client-secret", "HUBSPOT_APP_ID": "1000001",
            "HUBSPOT_API_BASE": hs.server.url, "HUBSPOT_AUTH_BASE": hs.server.url,
            "HUBSPOT_RETRY_SLEEP": lambda seconds: None, "HUBSPOT_TIMEOUT": (2.0, 5.0),
            "SALESFORCE_CLIENT_ID": CLIENT_ID, "SALESFORCE_CLIENT_SECRET": CLIENT_SECRET,
            "SALESFORCE_LOGIN_URL": sf.handle.url, "CRM_CA_BUNDLE": sf.handle.ca_path,
            "JOBS_MODE": "manual", "PUBLIC_BASE_URL": PUBLIC}


@pytest.fixture
def org(sf):
    return next(iter(sf.orgs.values()))


def local(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.path}?{parts.query}"


def hubspot_round(client, hs, start: str, portal: int, user_id: int | None = None):
    """Start at our URL, click through the HubSpot sandbox's consent page as `user_id`."""
    first = client.get(start)
    assert first.status_code == 302, first.text
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(first.headers["Location"]).query))
    form = {k: q.get(k, "") for k in ("client_id", "redirect_uri", "scope", "optional_scope",
                                      "state")}
    answer = requests.post(hs.server.url + "/oauth/authorize", timeout=5, allow_redirects=False,
                           data={**form, "portal_id": portal, "action": "connect",
                                 "user_id": user_id or ""})
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def salesforce_round(client, sf, org, user, start: str, scope_seen: list | None = None):
    first = client.get(start)
    assert first.status_code == 302, first.text
    if scope_seen is not None:
        scope_seen.append(dict(urllib.parse.parse_qsl(
            urllib.parse.urlsplit(first.headers["Location"]).query)).get("scope"))
    sf.auto_approve = (org.id, user.id)
    http = requests.Session()
    http.verify, http.trust_env = sf.handle.ca_path, False
    answer = http.get(first.headers["Location"], allow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def users_of(app, provider: str) -> list[User]:
    with app.app_context():
        return list(session().scalars(select(User).where(User.provider == provider)
                                      .order_by(User.role)))


def install_hubspot(client, hs, portal=ENT, user_id=None):
    page = client.get(local(hubspot_round(client, hs, "/install/hubspot", portal, user_id)))
    assert page.status_code == 200, page.text
    return page


def install_salesforce(client, sf, org):
    page = client.get(local(salesforce_round(client, sf, org, org.admin, "/install/salesforce")))
    assert page.status_code == 200, page.text
    return page


# ---- the installer is an admin ------------------------------------------------------------


def test_the_hubspot_installer_is_recorded_as_an_admin(app, client, hs):
    install_hubspot(client, hs)
    [admin] = users_of(app, "hubspot")
    assert (admin.role, admin.crm_user_id, admin.email) == (
        "admin", str(9000000 + ENT), f"admin@sandbox-{ENT}.test")


def test_the_salesforce_installer_is_recorded_as_an_admin(app, client, sf, org):
    install_salesforce(client, sf, org)
    [admin] = users_of(app, "salesforce")
    assert (admin.role, admin.crm_user_id) == ("admin", org.admin.id)
    with app.app_context():
        row = session().scalars(select(Installation)).one()
        assert admin.tenant_id == row.tenant_id


# ---- Sign in with HubSpot -----------------------------------------------------------------


def test_sign_in_with_hubspot_as_a_rep_lands_on_next(app, client, hs):
    install_hubspot(client, hs)
    rep_id = 9100000 + ENT
    back = hubspot_round(client, hs, "/login/hubspot?next=/app?filter=overdue", ENT, rep_id)
    answer = client.get(local(back))
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/app?filter=overdue"
    home = client.get("/app", headers=HTML)
    assert home.status_code == 200
    _admin, rep = users_of(app, "hubspot")
    assert (rep.role, rep.crm_user_id, rep.email) == ("rep", str(rep_id), f"rep@sandbox-{ENT}.test")
    with app.app_context():
        live = session().scalars(select(UserSession).where(UserSession.user_id == rep.id)).all()
        assert len(live) == 1 and live[0].plan_id is None


def test_sign_in_with_hubspot_refuses_a_portal_without_the_app(app, client, hs):
    install_hubspot(client, hs, ENT)
    answer = client.get(local(hubspot_round(client, hs, "/login/hubspot", PRO)))
    assert answer.status_code == 403
    assert 'id="reason">not_installed<' in answer.text
    assert client.get("/app", headers=HTML).status_code == 302  # still anonymous
    assert [u.role for u in users_of(app, "hubspot")] == ["admin"]  # nobody new


def test_sign_in_refuses_an_uninstalled_portal(app, client, hs):
    install_hubspot(client, hs, ENT)
    with app.app_context():
        s = session()
        installations.uninstall(s, installations.find(s, "hubspot", str(ENT)))
        s.commit()
    answer = client.get(local(hubspot_round(client, hs, "/login/hubspot", ENT)))
    assert answer.status_code == 403 and 'id="reason">not_installed<' in answer.text


def test_a_sign_in_answer_is_single_use(app, client, hs):
    install_hubspot(client, hs)
    back = hubspot_round(client, hs, "/login/hubspot", ENT)
    assert client.get(local(back)).status_code == 303
    client.post("/logout", data={})  # whatever happens, the answer is spent
    again = client.get(local(back))
    assert again.status_code == 400 and 'id="reason">used_state<' in again.text


def test_an_unsafe_next_goes_home(app, client, hs):
    install_hubspot(client, hs)
    back = hubspot_round(client, hs, "/login/hubspot?next=//evil.example/x", ENT)
    assert client.get(local(back)).headers["Location"] == "/app"


# ---- Sign in with Salesforce --------------------------------------------------------------


def test_sign_in_with_salesforce_uses_openid_and_userinfo(app, client, sf, org):
    install_salesforce(client, sf, org)
    rep = sf.add_user(org, "rita@acme.example", name="Rita Rep", email="rita@acme.example")
    scopes: list = []
    back = salesforce_round(client, sf, org, rep, "/login/salesforce?next=/app", scopes)
    assert scopes == ["openid profile email"]
    answer = client.get(local(back))
    assert answer.status_code == 303 and answer.headers["Location"] == "/app"
    assert client.get("/app", headers=HTML).status_code == 200
    admin, person = users_of(app, "salesforce")
    assert (person.role, person.crm_user_id, person.name, person.email) == (
        "rep", rep.id, "Rita Rep", "rita@acme.example")
    assert admin.crm_user_id == org.admin.id


def test_sign_in_with_salesforce_refuses_an_org_not_connected(app, client, sf, org):
    back = salesforce_round(client, sf, org, org.admin, "/login/salesforce")
    answer = client.get(local(back))
    assert answer.status_code == 403 and 'id="reason">not_installed<' in answer.text
    assert users_of(app, "salesforce") == []
    assert client.get("/app", headers=HTML).status_code == 302


def test_userinfo_needs_an_identity_scope(app, client, sf, org):
    """The install's token (api refresh_token) cannot read UserInfo; a sign-in's can."""
    install_salesforce(client, sf, org)
    with app.app_context():
        tokens = installations.tokens_of(session().scalars(select(Installation)).one())
    http = requests.Session()
    http.verify, http.trust_env = sf.handle.ca_path, False
    refused = http.get(sf.handle.url + "/services/oauth2/userinfo",
                       headers={"Authorization": f"Bearer {tokens.access_token}"})
    assert refused.status_code == 403


# ---- the home page of a local run ---------------------------------------------------------


def test_a_local_home_shows_the_demo_plan_and_the_sign_in_choices(app, client, hs):
    assert 'id="demo-plan"' not in client.get("/").text  # nothing seeded yet
    from webapp.cli import seed_demo

    with app.app_context():
        seed_demo(session())
    page = client.get("/").text
    assert 'href="/login/hubspot"' in page and 'href="/login/salesforce"' in page
    buyer = re_href(page, "demo-buyer")
    editor = re_href(page, "demo-editor")
    assert client.get(local(buyer)).status_code == 200
    opened = client.get(local(editor), headers=HTML)
    assert opened.status_code in (200, 302, 303), opened.status_code


def re_href(page: str, element_id: str) -> str:
    import re

    return re.search(rf'id="{element_id}" href="([^"]+)"', page).group(1).replace("&amp;", "&")
