"""The buyer page after the deal closed won (issue 15, the hand-off to onboarding), in docs/.

    .venv/bin/python docs/onboarding_screenshots.py

The demo plan, handed over as webapp/onboarding.py does when the pull sees the deal closed
won: its sales stages fold as done and an admin's onboarding template is added from the close
date, with a customer-success owner. The buyer link is the one the plan had.
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

from webapp import create_app, migrate, onboarding, sharing
from webapp.cli import seed_demo
from webapp.db import make_engine, session
from webapp.models import PlanTemplate

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

TEMPLATE = [
    {"name": "Kickoff", "milestones": [
        {"title": "Kickoff call with the implementation team", "owner_side": "both", "anchor": "start",
         "days": 5, "description": "Meet the team, confirm goals and the go-live date."},
        {"title": "Admin accounts and SSO", "owner_side": "seller", "anchor": "start", "days": 10,
         "description": ""}]},
    {"name": "Rollout", "milestones": [
        {"title": "Data import from the old CRM", "owner_side": "buyer", "anchor": "start", "days": 20,
         "description": ""},
        {"title": "Users trained", "owner_side": "both", "anchor": "start", "days": 35, "description": ""},
        {"title": "Go-live review", "owner_side": "both", "anchor": "go_live", "days": 0,
         "description": "The results promised in “why we are doing this”, measured."}]},
]


def main() -> None:
    from playwright.sync_api import sync_playwright

    url = f"sqlite:///{tempfile.mkdtemp()}/docs.db"
    migrate.upgrade(make_engine(url))
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "docs", "LOG_LEVEL": "WARNING",
                      "JOBS_MODE": "manual", "TODAY": lambda: date(2026, 11, 26)})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app.config["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with app.app_context():
        s = session()
        _, plan = seed_demo(s)
        _, link = sharing.create_link(s, plan, "docs", sharing.Keys.from_config(app.config))
        template = PlanTemplate(tenant_id=plan.tenant_id, name="Customer onboarding", stages=TEMPLATE,
                                default_go_live_days=45)
        s.add(template)
        s.flush()
        onboarding.start_onboarding(s, plan, date(2026, 11, 20), "sam.success@mutualplan.example",
                                    template.id, "crm:hubspot")
        s.commit()
    out = ROOT / "docs" / "buyer-onboarding.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(link)
        page.locator("#ms-h").scroll_into_view_if_needed()
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    server.shutdown()
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
