"""The buyer page and the rep editor in headless Chromium (see conftest.py here)."""
from __future__ import annotations

import pytest

from webapp import sharing
from webapp.db import session
from webapp.models import Plan

XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">"\'&<b>'


@pytest.fixture
def demo(app, api, plan, live_server):
    """The enterprise plan with people, a resource, an internal milestone and note, and links."""
    pid = plan["id"]
    api.patch(f"/plans/{pid}", json={
        "value_summary": "Acme loses deals in the last mile. Together we put every step in one plan.",
        "objectives": {"challenges": ["Deals stall after the demo"], "ideal_results": ["Shorter cycle"],
                       "deliverables": ["A shared plan per deal"]},
        "constraints": {"budget": "$48,000 / year", "go_live_date": "2027-03-26"},
        "resources": [{"title": "Security overview", "url": "https://example.com/security"}]})
    api.post(f"/plans/{pid}/stakeholders", json={"name": "Dana Whitfield", "title": "VP Sales",
                                                 "side": "buyer", "role": "decision_maker"})
    api.post(f"/plans/{pid}/stakeholders", json={"name": "Riley Chen", "title": "Account executive",
                                                 "side": "seller"})
    secret = api.post(f"/plans/{pid}/milestones", json={
        "stage_id": plan["stages"][1]["id"], "title": "SECRET discount approval", "internal": True}).json
    with app.app_context():
        s = session()
        p = s.get(Plan, pid)
        m = next(m for m in p.milestones if m.title == "Discovery call")
        sharing.add_comment(s, p, m, "INTERNAL: price-sensitive", side="seller", name="Riley",
                            email="", actor="rep", internal=True)
        keys = sharing.Keys.from_config(app.config)
        _, url = sharing.create_link(s, p, "tests", keys)
        s.commit()
        editor_url, _ = sharing.editor_link(p.tenant_id, pid, "rep@seller", keys)
    return {"plan": plan, "url": url, "editor": editor_url, "secret": secret, "base": live_server}


def milestone_item(page, title):
    return page.locator("li.ms", has=page.locator("h4", has_text=title))


def identify(page, name="Dana Whitfield", email="dana@acme.example"):
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Work email").fill(email)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_selector(".notice.ok")


def test_buyer_completes_a_milestone_and_the_rep_editor_shows_it(browser, demo):
    page = browser.page()
    page.goto(demo["url"])
    assert "Acme loses deals" in page.locator("#why-h + p").inner_text()
    identify(page)
    item = milestone_item(page, "Identify problems to solve")
    item.get_by_role("button", name="Mark as done").click()
    page.wait_for_selector(".notice.ok")
    assert "Marked as done" in page.locator(".notice.ok").inner_text()
    item = milestone_item(page, "Identify problems to solve")
    assert item.locator(".chip.s-done").count() == 1
    # The seller-side milestone offers no "done" button to the buyer.
    assert milestone_item(page, "Customized product demo").get_by_role("button", name="Mark as done").count() == 0

    rep = browser.page()
    rep.goto(demo["editor"])
    rep_item = milestone_item(rep, "Identify problems to solve")
    assert rep_item.locator(".chip.s-done").count() == 1
    assert "buyer:Dana Whitfield" in rep_item.inner_text()
    assert "Dana Whitfield" in rep.locator("#buyer").inner_text()


def test_buyer_proposes_a_date_and_the_rep_accepts_it(browser, demo):
    page = browser.page()
    page.goto(demo["url"])
    identify(page)
    item = milestone_item(page, "Customized product demo")
    item.locator("summary").click()
    item.get_by_label("New date").fill("2027-01-08")
    item.get_by_label("Reason").fill("Our CTO is away until January")
    item.get_by_role("button", name="Propose date").click()
    page.wait_for_selector(".notice.ok")
    assert "proposed 8 Jan 2027" in milestone_item(page, "Customized product demo").inner_text()

    rep = browser.page()
    rep.goto(demo["editor"])
    assert "Our CTO is away until January" in rep.locator("#buyer").inner_text()
    rep.get_by_role("button", name="Accept 8 Jan 2027").click()
    rep.wait_for_selector(".notice.ok")
    assert "8 Jan 2027" in milestone_item(rep, "Customized product demo").inner_text()
    assert "Our CTO is away" in rep.locator("#slips").inner_text()

    page.reload()
    assert "8 Jan 2027" in milestone_item(page, "Customized product demo").locator(".ms-meta").inner_text()


def test_a_refusal_is_explained_on_the_page(browser, demo):
    page = browser.page()
    page.goto(demo["url"])
    identify(page)
    item = milestone_item(page, "Customized product demo")
    item.locator("summary").click()
    item.get_by_label("New date").fill("2027-01-08")
    item.get_by_role("button", name="Propose date").click()
    error = page.locator(".notice.error")
    assert "say why" in error.inner_text().lower()
    assert page.locator("#m-" + milestone_id(demo, "Customized product demo") + " details[open]").count() == 1


def milestone_id(demo, title):
    return next(m["id"] for st in demo["plan"]["stages"] for m in st["milestones"] if m["title"] == title)


def test_xss_payloads_in_every_text_field_render_inert(browser, api, demo):
    pid = demo["plan"]["id"]
    api.patch(f"/plans/{pid}", json={
        "title": XSS, "value_summary": XSS,
        "objectives": {"challenges": [XSS], "ideal_results": [XSS], "deliverables": [XSS]},
        "constraints": {"budget": XSS, "dates": [{"label": XSS, "date": "2027-01-01"}]},
        "resources": [{"title": XSS, "url": "https://example.com/?q=\"><script>window.__xss=3</script>"}]})
    stage = demo["plan"]["stages"][0]
    api.patch(f"/stages/{stage['id']}", json={"name": XSS})
    m = stage["milestones"][1]
    api.patch(f"/milestones/{m['id']}", json={"title": XSS, "description": XSS,
                                              "owners": [{"name": XSS, "email": ""}]})
    api.post(f"/plans/{pid}/stakeholders", json={"name": XSS, "title": XSS, "side": "buyer"})
    dialogs = []
    page = browser.page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(demo["url"])
    identify(page, name=XSS[:100])
    item = page.locator(f"#m-{m['id']}")
    item.locator("summary").click()
    item.get_by_label("Comment").fill(XSS)
    item.get_by_role("button", name="Add comment").click()
    page.wait_for_selector(".notice.ok")
    assert page.evaluate("window.__xss") is None
    assert page.locator("b").count() == 0 or all("&" not in t for t in page.locator("b").all_inner_texts())
    assert XSS[:30] in page.locator("h1").inner_text()  # shown as text
    rep = browser.page()
    rep.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    rep.goto(demo["editor"])
    assert rep.evaluate("window.__xss") is None
    assert dialogs == []


def test_a_javascript_link_is_refused(browser, api, demo):
    response = api.patch(f"/plans/{demo['plan']['id']}", json={
        "resources": [{"title": "x", "url": "javascript:alert(1)"}]})
    assert response.status_code == 422
    rep = browser.page()
    rep.goto(demo["editor"])
    rep.get_by_label("Linked resources").fill("Click me | javascript:window.__xss=1")
    rep.get_by_role("button", name="Save plan").click()
    assert "only http and https links are allowed" in rep.locator(".notice.error").inner_text()
    page = browser.page()
    page.goto(demo["url"])
    assert page.locator("a[href^='javascript:']").count() == 0
    assert "Click me" not in page.content()


def test_internal_items_are_absent_from_the_html(browser, demo):
    page = browser.page()
    page.goto(demo["url"])
    identify(page)
    html = page.content()
    assert "SECRET discount approval" not in html and demo["secret"]["id"] not in html
    assert "price-sensitive" not in html
    calendar = page.request.get(demo["url"] + "/calendar.ics").text()
    assert "SECRET" not in calendar and "BEGIN:VEVENT" in calendar


def _no_horizontal_overflow(page):
    return page.evaluate("""() => {
        const w = document.documentElement.clientWidth;
        const wide = [...document.querySelectorAll('body *')].filter(el => {
            const r = el.getBoundingClientRect();
            return r.width > 0 && (r.right > w + 1 || r.left < -1) && !el.closest('.skip');
        }).map(el => el.tagName + '.' + el.className);
        return {scroll: document.documentElement.scrollWidth, width: w, wide};
    }""")


def test_phone_layout_does_not_overflow_and_screenshots(browser, demo, tmp_path):
    phone = browser.page(viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True,
                         has_touch=True)
    phone.goto(demo["url"])
    shot = tmp_path / "buyer-phone.png"
    phone.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    result = _no_horizontal_overflow(phone)
    assert result["scroll"] <= result["width"] and result["wide"] == [], result
    identify(phone)
    phone.locator("li.ms details summary").first.click()
    result = _no_horizontal_overflow(phone)
    assert result["scroll"] <= result["width"] and result["wide"] == [], result
    rep = browser.page(viewport={"width": 375, "height": 812}, is_mobile=True)
    rep.goto(demo["editor"])
    assert rep.evaluate("document.documentElement.scrollWidth") <= 375


def _serious(results):
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def test_axe_finds_no_serious_violations(browser, demo):
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    page = browser.page()
    page.goto(demo["url"])
    assert _serious(axe.run(page)) == []
    identify(page)
    page.locator("li.ms details summary").first.click()
    assert _serious(axe.run(page)) == []
    rep = browser.page()
    rep.goto(demo["editor"])
    assert _serious(axe.run(rep)) == []


def test_works_with_javascript_off_and_prints_cleanly(browser, demo):
    page = browser.page(java_script_enabled=False)
    page.goto(demo["url"])
    assert page.get_by_role("button", name="Print / Save as PDF").count() == 0  # hidden without JS
    identify(page)
    milestone_item(page, "Identify problems to solve").get_by_role("button", name="Mark as done").click()
    assert "Marked as done" in page.locator(".notice.ok").inner_text()
    js = browser.page()
    js.goto(demo["url"])
    assert js.get_by_role("button", name="Print / Save as PDF").is_visible()
    js.emulate_media(media="print")
    assert not js.locator("header .tools").is_visible()
    assert not js.locator("#you").is_visible()
    assert js.locator("#ms-h").is_visible()
    pdf = js.pdf(format="A4")
    assert pdf[:4] == b"%PDF"


def test_headers_seen_by_the_browser(browser, demo):
    page = browser.page()
    response = page.goto(demo["url"])
    h = response.headers
    assert h["referrer-policy"] == "no-referrer" and "noindex" in h["x-robots-tag"]
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.reload()
    assert errors == []  # nothing blocked by our own CSP


def test_desktop_screenshot(browser, demo, tmp_path):
    """(docs/screenshots.py makes the README's screenshots from the demo plan.)"""
    page = browser.page(viewport={"width": 1280, "height": 900})
    page.goto(demo["url"])
    target = tmp_path / "buyer-desktop.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    assert _no_horizontal_overflow(page)["wide"] == []
