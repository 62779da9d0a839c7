"""Settings → Webhooks in headless Chromium: an admin adds an endpoint, copies the secret shown
once, opens the delivery log and deletes the endpoint (the page's CSP allows no inline script)."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.test_settings_browser import admin_page


def test_an_admin_adds_an_endpoint_sees_the_secret_once_and_deletes_it(browser, app, live_server):
    page = admin_page(browser, app, live_server)
    page.goto(live_server + "/settings/webhooks")
    page.get_by_label("URL (https)").fill("https://10.9.8.7/hooks/mutualplan")
    page.get_by_label("Description (optional)").fill("CRM bridge")
    page.get_by_role("button", name="Add endpoint").click()
    assert "private" in page.locator("#wh-url-err").inner_text()  # refused without the flag
    page.get_by_label("Allow private addresses").check()
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_")
    # mutualplan.js adds the button once it has run: wait for it, not just look once
    expect(page.get_by_role("button", name="Copy secret")).to_be_visible()
    page.goto(live_server + "/settings/webhooks")
    assert secret not in page.content()
    page.get_by_role("link", name="Delivery log").click()
    assert "Nothing sent yet" in page.content()
    page.get_by_role("link", name="← All endpoints").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete endpoint https://10.9.8.7/hooks/mutualplan").click()
    page.wait_for_selector(".notice.ok")
    assert "No endpoints yet" in page.content()
