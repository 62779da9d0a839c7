"""Regenerate the screenshots in docs/ from the demo plan (headless system Chromium).

    .venv/bin/python docs/screenshots.py
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

from webapp import create_app, migrate, sharing, users
from webapp.cli import seed_demo, seed_history
from webapp.db import make_engine, session

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    url = f"sqlite:///{tempfile.mkdtemp()}/docs.db"
    migrate.upgrade(make_engine(url))
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "docs", "LOG_LEVEL": "WARNING",
                      "TODAY": lambda: date(2026, 11, 26)})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app.config["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with app.app_context():
        s = session()
        _, plan = seed_demo(s)
        keys = sharing.Keys.from_config(app.config)
        _, link = sharing.create_link(s, plan, "docs", keys)
        s.commit()
        editor, _ = sharing.editor_link(plan.tenant_id, plan.id, "riley@mutualplan.example", keys)
        seed_history(s, plan.tenant_id)  # the analytics page's closed plans
        admin = users.upsert_user(s, plan.tenant_id, "local", "docs-admin", email="dana@seller.example",
                                  name="Dana (sales leader)", role="admin")
        _, admin_token = users.start_session(s, tenant_id=plan.tenant_id,
                                             actor=users.actor_of(admin), user=admin)
        s.commit()
    out = ROOT / "docs"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        desktop = browser.new_page(viewport={"width": 1280, "height": 900})
        desktop.goto(link)
        desktop.screenshot(path=str(out / "buyer-desktop.png"), full_page=True)
        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                 is_mobile=True, has_touch=True)
        phone.goto(link)
        phone.screenshot(path=str(out / "buyer-phone.png"))
        rep = browser.new_page(viewport={"width": 1280, "height": 900})
        rep.goto(editor)
        rep.screenshot(path=str(out / "editor.png"))
        leader = browser.new_context(viewport={"width": 1280, "height": 900})
        leader.add_cookies([{"name": users.COOKIE, "value": admin_token,
                             "url": app.config["PUBLIC_BASE_URL"]}])
        page = leader.new_page()
        page.goto(app.config["PUBLIC_BASE_URL"] + "/analytics")
        page.screenshot(path=str(out / "analytics.png"), full_page=True)
        browser.close()
    server.shutdown()
    print("wrote docs/buyer-desktop.png, docs/buyer-phone.png, docs/editor.png, "
          "docs/analytics.png")


if __name__ == "__main__":
    main()
