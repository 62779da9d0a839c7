"""The rep's dashboard (/app): response time for a rep who owns 500 plans, and SQL statements
per page.

    .venv/bin/python bench/dashboard.py        # PostgreSQL when reachable (bench/_setup.py)

Seeds one tenant with PLANS plans from the enterprise template (10 milestones each, a
slip and buyer activity on some), all owned by one signed-in rep, then requests /app
ROUNDS times in-process (Flask test client: routing, the queries, the template; no
network) and prints p50/p95/max and the statements per page for 50 and for PLANS plans.
Goal (issue 12): p95 < 150 ms with PLANS=500, statements constant.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _setup import make_app
from sqlalchemy import event

from webapp import plans, users
from webapp.auth import ensure_tenant
from webapp.db import database, session
from webapp.models import Activity, Slip
from webapp.schemas import PlanCreate

PLANS = int(os.environ.get("BENCH_PLANS", "500"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "100"))
TODAY = date(2026, 11, 26)


def seed(app, count: int, start: int, rep_id: str, tenant_id: str) -> None:
    with app.app_context():
        s = session()
        rep = s.get(users.User, rep_id)
        for i in range(start, start + count):
            plan = plans.create_plan(s, tenant_id, PlanCreate(
                title=f"Deal {i:04d}", template="enterprise", start_date=TODAY - timedelta(days=i % 40)),
                "bench", TODAY)
            users.claim_plan(s, plan, rep, "bench")
            m = plan.milestones[0]
            if i % 3 == 0:
                s.add(Slip(tenant_id=tenant_id, plan_id=plan.id, milestone_id=m.id,
                           old_date=TODAY, new_date=TODAY + timedelta(days=5), actor="bench"))
            if i % 2 == 0:
                s.add(Activity(tenant_id=tenant_id, plan_id=plan.id, actor="buyer:B <b@x>",
                               action="comment.added"))
        s.commit()


def analyze(app) -> None:
    """Table statistics, as autovacuum would have gathered them on a database in use: right
    after a bulk seed PostgreSQL has none and may plan the page's joins badly."""
    engine = database(app).engine
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")


def statements(app, client) -> int:
    count = 0

    def counter(*_args):
        nonlocal count
        count += 1

    engine = database(app).engine
    event.listen(engine, "before_cursor_execute", counter)
    client.get("/app")
    event.remove(engine, "before_cursor_execute", counter)
    return count


def main() -> None:
    app, url = make_app(TODAY=lambda: TODAY)
    client = app.test_client()
    with app.test_request_context():
        s = session()
        tenant = ensure_tenant(s, "bench")
        rep = users.upsert_user(s, tenant.id, "hubspot", "1", email="rep@bench.example", name="Rep")
        _row, token = users.start_session(s, tenant_id=tenant.id, actor="Rep", user=rep)
        s.commit()
        rep_id, tenant_id = rep.id, tenant.id
    client.set_cookie(users.COOKIE, token)
    seed(app, 50, 0, rep_id, tenant_id)
    few = statements(app, client)
    seed(app, PLANS - 50, 50, rep_id, tenant_id)
    analyze(app)
    many = statements(app, client)
    for _ in range(5):  # warm up
        assert client.get("/app").status_code == 200
    times = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        response = client.get("/app")
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200
    times.sort()
    p95 = times[int(0.95 * len(times)) - 1]
    print(f"database: {url.split('@')[-1]}")
    print(f"dashboard /app, rep with {PLANS} plans ({ROUNDS} requests, in-process): "
          f"p50 {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms "
          f"(goal p95 < 150 ms)")
    print(f"SQL statements per page: {few} with 50 plans, {many} with {PLANS} plans")
    print(f"HTML bytes with {PLANS} plans: {len(client.get('/app').data):,}")


if __name__ == "__main__":
    main()
