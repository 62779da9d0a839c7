"""A rep's own contact card in headless Chromium (issue 12): edited at /app/profile, shown on
the buyer page of the plans the rep owns, axe clean on both pages."""
from __future__ import annotations

from conftest import signed_in

from tests.browser.test_buyer_browser import demo  # noqa: F401  (the fixture)
from webapp import users
from webapp.db import session
from webapp.models import Plan

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
       b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")


def _serious(results):
    return [(v["id"], [n["target"] for n in v["nodes"]][:3])
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def test_a_rep_edits_their_card_and_the_buyer_sees_it(browser, app, demo):  # noqa: F811
    from axe_playwright_python.sync_playwright import Axe

    who = signed_in(app.test_client(), "acme", "rep", name="Dana Rep", email="dana@seller.example")
    with app.app_context():
        s = session()
        users.claim_plan(s, s.get(Plan, demo["plan"]["id"]), s.get(users.User, who.user_id), "t")
        s.commit()
    ctx = browser.context()
    ctx.add_cookies([{"name": users.COOKIE, "value": who.token, "url": demo["base"]}])
    page = ctx.new_page()
    page.goto(demo["base"] + "/app")
    page.get_by_role("link", name="Your contact card").click()
    assert page.get_by_label("Name").input_value() == "Dana Rep"  # from the CRM sign-in
    page.get_by_label("Email").fill("dana@seller")  # the browser lets it through; we do not
    page.get_by_role("button", name="Save contact card").click()
    assert "email address" in page.locator("#c-email-err").inner_text()
    page.get_by_label("Name").fill("Dana Lee")
    page.get_by_label("Title").fill("Account executive")
    page.get_by_label("Email").fill("dana.lee@seller.example")
    page.get_by_label("Photo").set_input_files(files=[{"name": "me.png", "mimeType": "image/png",
                                                        "buffer": PNG}])
    page.get_by_role("button", name="Save contact card").click()
    page.wait_for_selector(".notice.ok")
    assert _serious(Axe().run(page)) == []

    buyer = browser.page()
    buyer.goto(demo["url"])
    card = buyer.locator(".contact-card")
    assert "Dana Lee" in card.inner_text() and "Account executive" in card.inner_text()
    assert card.locator("img.contact-photo").evaluate("img => img.complete && img.naturalWidth > 0")
    assert _serious(Axe().run(buyer)) == []
