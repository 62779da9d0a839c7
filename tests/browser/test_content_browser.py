"""Content blocks on the buyer page and the rep's content page, in headless Chromium.

Every request the page makes is routed through Playwright: a video host's request is
answered with a tiny page (the machine may have no internet), so what is asserted is
whether, and when, the browser asked."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from webapp import content, sharing
from webapp.blueprints.content import store_of
from webapp.db import session
from webapp.models import ContentEvent, Plan

VIDEO_HOSTS = {urlsplit(h).hostname for h in content.VIDEO_HOSTS}


@pytest.fixture
def rich(app, api, plan, live_server, tmp_path):
    pid = plan["id"]
    app.config["STORAGE_URL"] = f"file://{tmp_path / 'files'}"  # not the real instance/ folder
    app.extensions.pop("mutualplan.storage", None)
    with app.app_context():
        s = session()
        p = s.get(Plan, pid)
        content.seed_demo(s, p, store_of(app))
        keys = sharing.Keys.from_config(app.config)
        _, url = sharing.create_link(s, p, "tests", keys)
        s.commit()
        editor_url, _ = sharing.editor_link(p.tenant_id, pid, "rep@seller", keys)
    return {"url": url, "editor": editor_url, "base": live_server, "plan": plan}


def watch(page):
    """Record every request's host; answer third-party ones with a small page."""
    seen = []

    def handle(route):
        host = urlsplit(route.request.url).hostname
        seen.append(host)
        if host == "127.0.0.1":
            route.continue_()
        else:
            route.fulfill(status=200, content_type="text/html", body="<title>player</title>ok")
    page.route("**/*", handle)
    return seen


def test_no_request_to_a_video_host_before_the_click_then_the_player_loads(app, browser, rich):
    page = browser.page()
    seen = watch(page)
    page.goto(rich["url"])
    page.wait_for_load_state("networkidle")
    assert set(seen) == {"127.0.0.1"}, seen
    assert page.locator("iframe").count() == 0
    placeholder = page.locator(".video-start", has_text="Product demo")
    with page.expect_response(lambda r: r.url.endswith("/played")) as beacon:
        placeholder.click()
    assert beacon.value.status == 204
    frame = page.locator("iframe[src^='https://www.youtube-nocookie.com/embed/']")
    frame.wait_for()
    assert frame.get_attribute("title") == "Product demo (12 min)"
    page.wait_for_load_state("networkidle")
    assert "www.youtube-nocookie.com" in seen
    assert not {"player.vimeo.com", "www.loom.com"} & set(seen)  # only the one clicked
    # the click was counted first-party (a beacon to our own origin)
    with app.app_context():
        kinds = [e.kind for e in session().scalars(select(ContentEvent))]
    assert kinds == ["played"]


def test_csp_blocks_an_iframe_from_any_other_host(browser, rich):
    page = browser.page()
    seen = watch(page)
    page.goto(rich["url"])
    blocked = page.evaluate("""() => new Promise(resolve => {
        const out = [];
        document.addEventListener('securitypolicyviolation', e => {
            out.push(e.blockedURI + ' ' + e.effectiveDirective);
        });
        for (const src of ['https://evil.example/frame', 'https://player.vimeo.com/video/1?dnt=1']) {
            const f = document.createElement('iframe'); f.src = src; document.body.appendChild(f);
        }
        setTimeout(() => resolve(out), 500);
    })""")
    assert any("evil.example" in b and "frame-src" in b for b in blocked), blocked
    assert not any("vimeo" in b for b in blocked)
    assert "evil.example" not in seen


def test_without_javascript_a_video_is_a_plain_link(browser, rich):
    page = browser.page(java_script_enabled=False)
    watch(page)
    page.goto(rich["url"])
    link = page.get_by_role("link", name="Product demo")
    assert "/blocks/" in link.get_attribute("href") and page.locator("iframe").count() == 0


def test_internal_blocks_are_absent_from_the_html(browser, rich):
    page = browser.page()
    page.goto(rich["url"])
    html = page.content()
    assert "Meeting notes: kick-off" in html and "Security review is the gate" in html
    assert "discount floor" not in html and "18% off" not in html


def test_buyer_uploads_a_file_and_the_rep_downloads_it_a_renamed_file_is_refused(browser, rich):
    from browser.test_buyer_browser import identify

    page = browser.page()
    page.goto(rich["url"])
    identify(page)
    item = page.locator("li.ms", has=page.locator("h4", has_text="Identify problems to solve"))
    item.locator("input[type=file]").set_input_files(
        files=[{"name": "questionnaire.pdf", "mimeType": "application/pdf",
                "buffer": b"GIF89a this is an image renamed"}])
    item.get_by_role("button", name="Upload").click()
    assert "content is not" in page.locator(".notice.error").inner_text()
    item = page.locator("li.ms", has=page.locator("h4", has_text="Identify problems to solve"))
    item.locator("input[type=file]").set_input_files(
        files=[{"name": "Signed questionnaire.pdf", "mimeType": "application/pdf",
                "buffer": content.tiny_pdf("Signed")}])
    item.get_by_role("button", name="Upload").click()
    assert "File added" in page.locator(".notice.ok").inner_text()

    rep = browser.page()
    rep.goto(rich["editor"])
    rep.get_by_role("link", name="Content").click()
    with rep.expect_download() as download:
        rep.get_by_role("link", name="Signed questionnaire.pdf").click()
    path = download.value.path()
    assert Path(path).read_bytes().startswith(b"%PDF-")


def test_the_rep_sees_what_the_buyer_opened(browser, rich):
    from browser.test_buyer_browser import identify

    page = browser.page()
    page.goto(rich["url"])
    identify(page, name="Dana")
    for _ in range(2):
        with page.context.expect_page() as popup:
            page.get_by_role("link", name="Security overview deck").click()
        popup.value.close()
    rep = browser.page()
    rep.goto(rich["editor"])
    assert "Dana opened Security overview deck twice" in rep.locator("#buyer").inner_text()
    rep.get_by_role("link", name="Content").click()
    assert "Dana opened Security overview deck twice" in rep.locator("main").inner_text()


def _serious(results):
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def test_axe_finds_no_serious_violations(browser, rich):
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    page = browser.page()
    watch(page)
    page.goto(rich["url"])
    assert _serious(axe.run(page)) == []
    rep = browser.page()
    rep.goto(rich["editor"])
    rep.get_by_role("link", name="Content").click()
    assert _serious(axe.run(rep)) == []


def test_branded_frame_owner_card_and_lazy_thumbnails(app, browser, rich):
    """The content framed by the accent and the tenant's card, decks with their first page
    loaded lazily from our origin only, and axe still clean (contrast with the accent)."""
    from axe_playwright_python.sync_playwright import Axe

    from webapp import branding

    with app.app_context():
        s = session()
        tenant_id = s.get(Plan, rich["plan"]["id"]).tenant_id
        branding.save(s, tenant_id, {"company_name": "Seller Inc", "accent": "#0f766e",
                                     "contact_name": "Riley Chen", "contact_title": "AE",
                                     "contact_email": "riley@seller.example"})
        s.commit()
    page = browser.page()
    seen = watch(page)
    thumbs = []
    page.on("response", lambda r: "/thumb" in r.url and thumbs.append(r))
    page.goto(rich["url"])
    page.wait_for_load_state("networkidle")
    assert thumbs == []  # below the fold: nothing loaded before the buyer scrolls
    section = page.locator("section.content-blocks")
    assert "Shared with you by Seller Inc" in section.inner_text()
    assert "Riley Chen" in section.locator("aside.contact-card").inner_text()
    colour = section.evaluate("el => getComputedStyle(el).borderTopColor")
    assert colour == "rgb(15, 118, 110)"  # the tenant's accent
    section.scroll_into_view_if_needed()
    page.locator("img.thumb").first.wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0)")
    assert len(thumbs) == 2 and all(r.status == 200 for r in thumbs)
    assert set(seen) == {"127.0.0.1"}
    assert _serious(Axe().run(page)) == []
