"""Notifications, measured (issue 13). Prints:

1. time from a buyer proposing a date to the rep's e-mail arriving in the local SMTP catcher,
   with one worker (the embedded job thread, woken after the commit): p50, p99;
2. messages sent for the demo plan over a simulated 30 days with nobody acting on them
   (the clock's rounds every hour): the most any recipient got in one day (goal <= 1);
3. duplicate sends when a worker is killed between the SMTP send and the "sent" mark, 50 times,
   then the work re-run (before and after the lease): goal 0.

    .venv/bin/python bench/notifications.py     # PostgreSQL when reachable (bench/_setup.py)
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from _setup import make_app
from sqlalchemy import func, select

from webapp import create_app, notifications, plans, sharing
from webapp.auth import ensure_tenant
from webapp.db import database, session
from webapp.mail import Catcher
from webapp.models import Notification, Plan, User
from webapp.schemas import MilestonePatch, Owner, PlanCreate, StakeholderIn

START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # a Monday


def demo_plan(s, tenant_id: str, day: date, rep: User | None = None) -> Plan:
    plan = plans.create_plan(s, tenant_id, PlanCreate(title="Acme rollout", template="enterprise",
                                                      start_date=day), "bench", day)
    sharing.seed_demo_story(s, plan, day)
    for name, email in (("Dana Whitfield", "dana@acme.example"), ("Sam Ortega", "sam@acme.example")):
        plans.add_stakeholder(s, plan, StakeholderIn(name=name, email=email, side="buyer"), "bench")
    plans.add_stakeholder(s, plan, StakeholderIn(name="Riley Chen", side="seller"), "bench")
    # Every open buyer-side step gets a buyer owner with an address: the most reminders possible.
    for i, m in enumerate(plans.ordered_milestones(plan)):
        if m.owner_side in ("buyer", "both") and m.status != "done":
            who = [Owner(name="Dana Whitfield")] if i % 2 else [Owner(name="Sam Ortega")]
            plans.update_milestone(s, m, MilestonePatch(owners=who), "bench")
    if rep is not None:
        plan.owner_user_id = rep.id
    s.flush()
    return plan


URL = {}


def app_on_one_database(**config):
    """The first call makes the bench database (bench/_setup.py); later ones reuse it."""
    if not URL:
        app, URL["url"] = make_app(**config)
        return app
    return create_app({"DATABASE_URL": URL["url"], "LOG_LEVEL": "WARNING", "JOBS_MODE": "manual",
                       "SECRET_KEY": "bench",
                       "TOKEN_ENCRYPTION_KEYS": "Toeo6joCMtQIZXRkJlZkrQ8fPDCsKW90rlq6kQKHLKw=",
                       **config})


def latency(runs: int = 50) -> tuple[float, float]:
    catcher = Catcher().start()
    app = app_on_one_database(JOBS_MODE="thread", SMTP_URL=catcher.url, OUTBOX_DEBOUNCE=0)
    try:
        with app.app_context():
            s = session()
            tenant = ensure_tenant(s, "latency")
            rep = User(tenant_id=tenant.id, provider="local", crm_user_id="rep", email="rep@x.example")
            s.add(rep)
            s.flush()
            plan = demo_plan(s, tenant.id, date.today(), rep)
            s.commit()
            m = next(m for m in plans.ordered_milestones(plan) if m.owner_side == "buyer")
            buyer = sharing.Buyer("Dana", "dana@acme.example")
            timings = []
            for i in range(runs):
                started = time.perf_counter()
                sharing.propose_date(s, plan, m, date.today() + timedelta(days=30 + i),
                                     "bench", buyer, None, date.today())
                s.commit()  # the after-commit hook wakes the worker thread
                catcher.wait_for(i + 1, timeout=30)
                timings.append(time.perf_counter() - started)
        return statistics.median(timings), sorted(timings)[int(0.99 * (len(timings) - 1))]
    finally:
        catcher.stop()
        database(app).engine.dispose()


def thirty_days() -> tuple[int, int, int]:
    catcher = Catcher().start()
    box = {"now": START}
    app = app_on_one_database(SMTP_URL=catcher.url, CLOCK=lambda: box["now"],
                              TODAY=lambda: box["now"].date())
    try:
        with app.app_context():
            s = session()
            tenant = ensure_tenant(s, "thirty")
            demo_plan(s, tenant.id, START.date() - timedelta(days=21))  # some steps late
            s.commit()
            for hour in range(30 * 24):
                box["now"] = START + timedelta(hours=hour)
                notifications.reminders(s)
                notifications.deliver(s)
        messages = catcher.wait_for(0)
        per_day = Counter((m["to"][0], m["headers"]["Date"][:16]) for m in messages)
        return len(messages), len({m["to"][0] for m in messages}), max(per_day.values(), default=0)
    finally:
        catcher.stop()
        database(app).engine.dispose()


class Killed(BaseException):
    """What a killed worker looks like to the code after the send: nothing more runs."""


def kills(times: int = 50) -> tuple[int, int, int]:
    catcher = Catcher().start()
    box = {"now": START + timedelta(hours=4)}
    app = app_on_one_database(SMTP_URL=catcher.url, CLOCK=lambda: box["now"])

    def die(_row):
        raise Killed

    try:
        with app.app_context():
            s = session()
            tenant = ensure_tenant(s, "kills")
            for i in range(times):
                notifications.queue(s, key=f"bench-kill:{i}", tenant_id=tenant.id, plan_id=None,
                                    kind="nudge", recipient=f"p{i}@acme.example",
                                    template="stalled", context={
                                        "brand": {"name": "kills"}, "user": User(name="Rep"),
                                        "plan": Plan(title="Acme"), "reason": "bench",
                                        "prefs_url": "http://localhost/app/notifications"})
                s.commit()
                try:
                    notifications.deliver(s, limit=1, after_send=die)
                except Killed:
                    s.rollback()
                notifications.deliver(s)  # a new worker, right away
            box["now"] += notifications.LEASE * 2
            notifications.deliver(s)  # and after the lease
            failed = s.scalar(select(func.count()).select_from(Notification).where(
                Notification.status == "failed"))
        messages = catcher.wait_for(times, timeout=10)
        ids = Counter(m["headers"]["Message-ID"] for m in messages)
        return len(messages), sum(n - 1 for n in ids.values()), failed
    finally:
        catcher.stop()
        database(app).engine.dispose()


def main() -> None:
    p50, p99 = latency()
    print(f"buyer proposes a date -> rep's e-mail in the catcher, one worker: "
          f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (50 proposals)")
    total, people, most = thirty_days()
    print(f"demo plan, 30 simulated days, nobody acting: {total} messages to {people} recipients; "
          f"most to one recipient in one day: {most} (goal <= 1)")
    sent, dupes, lost = kills()  # lost: rows marked failed
    print(f"worker killed between send and mark, 50 times: {sent} messages, {dupes} duplicates "
          f"(goal 0); {lost} rows marked failed ('interrupted': sent or not, never re-sent)")


if __name__ == "__main__":
    main()
