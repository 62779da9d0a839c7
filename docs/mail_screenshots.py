"""A screenshot of each e-mail the app sends, for the README's Notifications section.

    .venv/bin/python docs/mail_screenshots.py

Nothing is rendered by hand: the demo plan is seeded in a throw-away SQLite database and the
real code paths queue each message (the clock's reminder round, a buyer proposing a date, the
daily digest and stalled round, a verified-link code); the HTML part of each queued
`notifications` row is then opened in headless Chromium and saved as docs/mail-<kind>.png.
"""
from __future__ import annotations

import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select

from webapp import access, create_app, migrate, notifications, plans, sharing, users
from webapp.cli import seed_demo
from webapp.db import make_engine, session
from webapp.models import Notification
from webapp.schemas import MilestonePatch, Owner

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TODAY = date(2026, 11, 26)  # a Thursday
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
KINDS = {"reminder": "mail-reminder.png", "alert": "mail-rep-alert.png", "digest": "mail-digest.png",
         "stalled": "mail-stalled.png", "access_code": "mail-access-code.png"}


def queue_every_kind(s, app) -> None:
    _, plan = seed_demo(s)
    rep = users.upsert_user(s, plan.tenant_id, "hubspot", "riley", email="riley@mutualplan.example",
                            name="Riley Chen", role="rep")
    plan.owner_user_id = rep.id
    ms = {m.title: m for m in plans.ordered_milestones(plan)}
    dana = [Owner(name="Dana Whitfield", email="dana@acme.example")]
    plans.update_milestone(s, ms["Follow-up demo with executive team"],
                           MilestonePatch(owners=dana, due_date=TODAY + timedelta(days=2)), "docs")
    plans.update_milestone(s, ms["Legal and compliance review"],
                           MilestonePatch(owners=dana, due_date=TODAY - timedelta(days=9)), "docs")
    s.commit()
    notifications.reminders(s, NOW)  # "due in 2 days" and "overdue" in one message
    buyer = sharing.Buyer("Dana Whitfield", "dana@acme.example")
    m = ms["Follow-up demo with executive team"]
    sharing.propose_date(s, plan, m, TODAY + timedelta(days=12), "Our CFO is travelling that week.",
                         buyer, None, TODAY)  # the rep's instant alert
    s.commit()
    notifications.digests(s, NOW)  # the daily digest and, 9 days overdue, the stalled alert
    link, _ = sharing.create_link(s, plan, "docs", sharing.Keys.from_config(app.config),
                                  access_mode="verified", allowed_domains=["acme.example"])
    access.send_code(s, link, "Dana Whitfield", "dana@acme.example", app.config["SECRET_KEY"])
    s.commit()


def main() -> None:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp())
    url = f"sqlite:///{tmp}/docs.db"
    migrate.upgrade(make_engine(url))
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "docs", "LOG_LEVEL": "WARNING",
                      "JOBS_MODE": "manual", "TODAY": lambda: TODAY, "CLOCK": lambda: NOW,
                      "PUBLIC_BASE_URL": "https://plans.example.com"})
    pages = {}
    with app.app_context():
        s = session()
        queue_every_kind(s, app)
        for row in s.scalars(select(Notification).where(Notification.channel == "email")
                             .order_by(Notification.created_at)):
            pages.setdefault(row.kind, row.html_body)
    missing = set(KINDS) - set(pages)
    if missing:
        raise SystemExit(f"no message of kind {sorted(missing)} was queued")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 640, "height": 400})
        for kind, name in KINDS.items():
            path = tmp / f"{kind}.html"
            path.write_text(pages[kind], encoding="utf-8")
            page.goto(path.as_uri())
            page.screenshot(path=str(ROOT / "docs" / name), full_page=True)
            print(f"docs/{name}")
        browser.close()


if __name__ == "__main__":
    main()
