"""The content-rich buyer page (issue 16) in docs/: desktop and phone, one video clicked.

    .venv/bin/python docs/content_screenshots.py

The demo plan with 3 videos, 2 decks, notes and a link (webapp/content.py seed_demo), framed
by the tenant's branding (accent colour) and the plan owner's own contact card; the decks show
their first-page thumbnails. The video host is never contacted: the clicked player's request
is answered locally.
"""
from __future__ import annotations

import sys
import tempfile
import threading
from datetime import date
from pathlib import Path

from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp import branding, content, create_app, migrate, sharing, users
from webapp.blueprints.content import store_of
from webapp.cli import seed_demo
from webapp.db import make_engine, session

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PLAYER = ("<meta charset=utf-8><body style='margin:0;background:#111;color:#eee;font:20px sans-serif;display:grid;"
          "place-items:center;height:100vh'>▶ video player</body>")


def main() -> None:
    from playwright.sync_api import sync_playwright

    tmp = tempfile.mkdtemp()
    url = f"sqlite:///{tmp}/docs.db"
    migrate.upgrade(make_engine(url))
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "docs", "LOG_LEVEL": "WARNING",
                      "JOBS_MODE": "manual", "STORAGE_URL": f"file://{tmp}/files",
                      "TODAY": lambda: date(2026, 11, 26)})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app.config["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with app.app_context():
        s = session()
        _, plan = seed_demo(s)
        content.seed_demo(s, plan, store_of(app))
        branding.save(s, plan.tenant_id, {"company_name": "Initech", "accent": "#0f766e"})
        rep = users.upsert_user(s, plan.tenant_id, "local", "riley", email="riley@initech.example",
                                name="Riley Chen")
        branding.save_card(s, rep, {"name": "Riley Chen", "title": "Account executive",
                                    "email": "riley@initech.example"})
        users.claim_plan(s, plan, rep, "docs")
        _, link = sharing.create_link(s, plan, "docs", sharing.Keys.from_config(app.config))
        s.commit()
    out = ROOT / "docs"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for name, options in (("content-desktop.png", {"viewport": {"width": 1280, "height": 900}}),
                              ("content-phone.png", {"viewport": {"width": 390, "height": 844},
                                                     "device_scale_factor": 2, "is_mobile": True,
                                                     "has_touch": True})):
            page = browser.new_page(**options)
            page.route("https://**/*", lambda route: route.fulfill(
                status=200, content_type="text/html", body=PLAYER))
            page.goto(link)
            page.locator(".video-start").nth(1).click()
            page.locator("iframe").wait_for()
            section = page.locator("section.content-blocks")
            section.scroll_into_view_if_needed()
            page.wait_for_function("() => [...document.querySelectorAll('img.thumb')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            section.screenshot(path=str(out / name))
        browser.close()
    server.shutdown()
    print("wrote docs/content-desktop.png, docs/content-phone.png")


if __name__ == "__main__":
    main()
