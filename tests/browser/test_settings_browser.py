"""Settings in headless Chromium: an admin writes a template with relative dates and a new
plan gets the right due dates."""
from __future__ import annotations

from conftest import signed_in

from tests.browser.test_buyer_browser import demo  # noqa: F401  (the fixture)
from webapp import sharing, users


def admin_page(browser, app, base):
    """A browser signed in as an admin of "acme" (a real session row; its cookie set)."""
    who = signed_in(app.test_client(), "acme", "admin", name="Ada Admin")
    ctx = browser.context()
    ctx.add_cookies([{"name": users.COOKIE, "value": who.token, "url": base}])
    return ctx.new_page()


def test_a_template_with_relative_dates_gives_a_new_plan_the_right_due_dates(browser, app, api, live_server):
    page = admin_page(browser, app, live_server)
    page.goto(live_server + "/settings/templates")
    page.get_by_role("link", name="New template").click()
    page.get_by_label("Name").fill("Mid-market")
    page.get_by_label("Stages and milestones").fill(
        "## Discovery\nDiscovery call | both | start+0\nSecurity review | buyer | start+10 | internal\n"
        "## Close\nOrder form signed | both | go-live-30 | close\nKickoff | both | go-live+5")
    page.get_by_role("button", name="Save template").click()
    notice = page.locator(".notice.ok").inner_text()
    assert "Template “Mid-market” saved." in notice and "fewer than 6" in notice

    plan = api.post("/plans", json={"title": "Relative dates", "start_date": "2027-01-04",
                                    "go_live_date": "2027-04-01"}).json
    with app.app_context():
        url, _ = sharing.editor_link(_tenant(app), plan["id"], "rep@seller",
                                     sharing.Keys.from_config(app.config))
    rep = browser.page()
    rep.goto(url)
    rep.locator("summary", has_text="Apply a template").click()
    rep.get_by_label("Template").select_option(label="Mid-market (2 stages, 4 milestones)")
    rep.get_by_role("button", name="Apply template").click()
    rep.wait_for_selector(".notice.ok")

    def due(title):
        item = rep.locator("li.ms", has=rep.locator("h4", has_text=title))
        return item.locator(".ms-meta dd").nth(1).inner_text()

    assert due("Discovery call") == "4 Jan 2027"
    assert due("Security review") == "14 Jan 2027"
    assert due("Order form signed") == "2 Mar 2027"
    assert due("Kickoff") == "6 Apr 2027"


def _tenant(app):
    from sqlalchemy import select

    from webapp.db import session
    from webapp.models import Tenant
    return session().scalars(select(Tenant.id).where(Tenant.name == "acme")).one()


def test_axe_finds_no_serious_violations_on_the_settings_pages(browser, app, api, live_server):
    from axe_playwright_python.sync_playwright import Axe

    from tests.browser.test_buyer_browser import _serious

    axe = Axe()
    page = admin_page(browser, app, live_server)
    for name in ("connections", "mapping", "templates", "templates/new", "team", "keys"):
        page.goto(f"{live_server}/settings/{name}")
        assert _serious(axe.run(page)) == [], name
    page.goto(f"{live_server}/settings/templates/new")
    page.get_by_label("Stages and milestones").fill("Discovery call | both | start+0")
    page.get_by_role("button", name="Save template").click()
    assert "start with a stage" in page.locator("#t-stages-err").inner_text()
    assert page.get_by_label("Stages and milestones").input_value() == "Discovery call | both | start+0"
    assert _serious(axe.run(page)) == []


def test_branding_shows_on_the_buyer_page_without_contrast_violations(browser, app, demo):  # noqa: F811
    from axe_playwright_python.sync_playwright import Axe

    page = admin_page(browser, app, demo["base"])
    page.goto(demo["base"] + "/settings/branding")
    page.get_by_label("Company name").fill("Seller Inc")
    page.get_by_label("Accent colour").fill("#fbbf24")  # amber: unreadable under white text
    page.get_by_label("Contact’s name").fill("Riley Chen")
    page.get_by_label("Contact’s title").fill("Account executive")
    page.get_by_label("Contact’s email").fill("riley@seller.example")
    page.get_by_role("button", name="Save branding").click()
    assert "at least 4.5:1" in page.locator("#b-accent-err").inner_text()
    assert page.get_by_label("Contact’s name").input_value() == "Riley Chen"
    page.get_by_label("Accent colour").fill("#0f766e")
    page.get_by_label("Logo").set_input_files(files=[{
        "name": "logo.svg", "mimeType": "image/svg+xml",
        "buffer": b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 30">'
                  b'<rect width="120" height="30" fill="#0f766e"/></svg>'}])
    page.get_by_role("button", name="Save branding").click()
    page.wait_for_selector(".notice.ok")

    buyer = browser.page()
    buyer.goto(demo["url"])
    assert "Seller Inc · Mutual action plan" in buyer.locator("header.top .eyebrow").text_content()
    logo = buyer.locator("img.brand-logo")
    assert logo.get_attribute("alt") == "Seller Inc"
    assert logo.evaluate("img => img.complete && img.naturalWidth > 0")
    card = buyer.locator(".contact-card")
    assert "Riley Chen" in card.inner_text() and "riley@seller.example" in card.inner_text()
    link = card.get_by_role("link", name="riley@seller.example")
    assert link.evaluate("a => getComputedStyle(a).color") == "rgb(15, 118, 110)"  # the accent
    results = Axe().run(buyer)
    contrast = [v for v in results.response["violations"] if v["id"] == "color-contrast"]
    assert contrast == []
