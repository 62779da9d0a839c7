"""Analytics (webapp/analytics.py): chart latency over a large tenant, forecast calibration,
and the CRM calls the forecast costs.

    .venv/bin/python bench/analytics.py        # PostgreSQL when reachable (bench/_setup.py)

1. Latency: one tenant with PLANS plans (default 10,000; the enterprise template's eleven milestones
   plus one business review each, so 120,000 milestones; slips, buyer views and actions) from webapp/history.py. Each chart's API
   (`GET /api/v1/analytics/<chart>`) and the whole `/analytics` page are requested ROUNDS
   times in-process (Flask test client: routing, SQL, JSON/template; no network).
   Goal (issue 14): p95 < 300 ms per chart. The charts read the rollup (webapp/rollups.py);
   the forecast reads the per-tenant win-rate cache, refreshed here as the hourly job does.
   Also what one push spends on health and forecast (analytics.summary_fields).
2. Calibration: a second tenant, CAL_CLOSED closed plans and CAL_OPEN open ones drawn from a
   process with known P(won | reached milestone) (history.p_reached). The Brier score of our
   forecast for the open plans against their drawn outcomes, next to the Brier score of the
   known probabilities. Goal: within 0.02.
3. CRM calls: the calibration tenant's installation made active; every open plan marked as
   pushed with its current summary; then refresh_summaries (the hourly clock task) runs with
   nothing changed (pushes queued = extra CRM calls), and again after one deal closes.
   Goal: 0 per plan per day when nothing changed.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _setup import make_app
from sqlalchemy import func, select

from webapp import analytics, history, users
from webapp.auth import create_key, ensure_tenant
from webapp.db import session
from webapp.models import Installation, Mirror, OutboxEntry
from webapp.web import today

PLANS = int(os.environ.get("BENCH_PLANS", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))
CAL_CLOSED = int(os.environ.get("BENCH_CAL_CLOSED", "3000"))
CAL_OPEN = int(os.environ.get("BENCH_CAL_OPEN", "3000"))


def _times(fn, rounds: int) -> list[float]:
    fn()  # warm: first-request work (template compile, connection) is not what we measure
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def latency(app) -> None:
    with app.app_context():
        s = session()
        tenant = ensure_tenant(s, "big")
        started = time.perf_counter()
        made = history.seed(s, tenant.id, closed=int(PLANS * 0.8), open_plans=PLANS - int(PLANS * 0.8),
                            seed=11, reviews=1)
        user = users.upsert_user(s, tenant.id, "local", "admin", email="a@big.example", name="Admin",
                                 role="admin")
        _row, token = users.start_session(s, tenant_id=tenant.id, actor=users.actor_of(user), user=user)
        key = create_key(s, tenant, "bench")
        s.commit()
        print(f"seeded {made['closed'] + made['open']} plans, {made['milestones']} milestones "
              f"in {time.perf_counter() - started:.1f} s")
        if s.get_bind().dialect.name == "postgresql":
            from sqlalchemy import text
            s.execute(text("ANALYZE"))
            s.commit()
        started = time.perf_counter()
        analytics.refresh_win_rates(s, tenant.id)  # what the hourly job does
        s.commit()
        print(f"win-rate cache refreshed in {(time.perf_counter() - started) * 1000:.0f} ms")
        _push_path(s, tenant.id)
    client = app.test_client()
    client.set_cookie(users.COOKIE, token)
    headers = {"Authorization": f"Bearer {key}"}
    print(f"{'chart':28} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}   ({ROUNDS} rounds)")
    for chart in (*analytics.CHARTS, "forecast"):
        def call(chart=chart):
            response = client.get(f"/api/v1/analytics/{chart}", headers=headers)
            assert response.status_code == 200, response.text
        t = _times(call, ROUNDS)
        print(f"{'GET /api/v1/analytics/' + chart:28} {statistics.median(t):8.1f} {_p95(t):8.1f} "
              f"{max(t):8.1f}")
    filtered = _times(lambda: client.get("/api/v1/analytics/win-rates?period=90&template=enterprise",
                                         headers=headers), ROUNDS)
    print(f"{'win-rates, filtered':28} {statistics.median(filtered):8.1f} {_p95(filtered):8.1f} "
          f"{max(filtered):8.1f}")

    def page():
        response = client.get("/analytics")
        assert response.status_code == 200
    t = _times(page, ROUNDS)
    print(f"{'GET /analytics (5 charts)':28} {statistics.median(t):8.1f} {_p95(t):8.1f} {max(t):8.1f}")


def _push_path(s, tenant_id: str) -> None:
    """What a push adds for the forecast and health (sync.summary_properties): per plan."""
    from webapp.models import Plan

    plans = list(s.scalars(select(Plan).where(Plan.tenant_id == tenant_id).limit(ROUNDS + 1)))
    t = []
    for plan in plans:
        started = time.perf_counter()
        analytics.summary_fields(s, plan, today())
        t.append((time.perf_counter() - started) * 1000)
    t = t[1:]  # the first call warms up
    print(f"{'push: summary_fields':28} {statistics.median(t):8.1f} {_p95(t):8.1f} {max(t):8.1f}"
          "   (cached win rates)")


def calibration(app) -> None:
    with app.app_context():
        s = session()
        tenant = ensure_tenant(s, "calibration")
        made = history.seed(s, tenant.id, closed=CAL_CLOSED, open_plans=CAL_OPEN, seed=5,
                            buyer_activity=False)
        s.commit()
        got = analytics.forecast(s, tenant.id, list(made["known"]))
        won = made["outcomes"]
        ours = statistics.fmean((got[p]["win_probability"] - won[p]) ** 2 for p in won)
        known = statistics.fmean((made["known"][p] - won[p]) ** 2 for p in won)
        stage_only = statistics.fmean((got[p]["p_stage"] - won[p]) ** 2 for p in won)
        print(f"calibration over {CAL_OPEN} open plans, history of {CAL_CLOSED} closed "
              f"(K = {analytics.MIN_SAMPLE}):")
        print(f"  Brier, forecast            {ours:.4f}")
        print(f"  Brier, known probabilities {known:.4f}   difference {ours - known:+.4f} "
              f"(goal within 0.02)")
        print(f"  Brier, CRM stage prob only {stage_only:.4f}")
        _crm_calls(s, tenant.id)


def _crm_calls(s, tenant_id: str) -> None:
    installation = s.scalars(select(Installation).where(Installation.tenant_id == tenant_id)).one()
    installation.status = "active"
    day = today()
    health = analytics.health_by_plan(s, tenant_id, None, day)
    probabilities = analytics.forecast(s, tenant_id)
    for state in s.scalars(select(Mirror).where(Mirror.tenant_id == tenant_id)):
        p = probabilities[state.plan_id]["win_probability"]
        state.pushed_deal = {"properties": {"health": health[state.plan_id],
                                            "win_probability": str(round(100 * p))}}
    s.commit()
    plans = len(health)

    def queued() -> int:
        n = analytics.refresh_summaries(s, tenant_id, day)
        pending = s.scalar(select(func.count()).select_from(OutboxEntry)
                           .where(OutboxEntry.tenant_id == tenant_id))
        s.rollback()  # measure, do not keep
        return pending if n else 0
    print(f"CRM calls from the forecast over {plans} plans (one hourly refresh = 24 a day):")
    idle = queued()
    print(f"  nothing changed:         {idle} pushes, {24 * idle / plans:.4f} per plan per day")
    open_mirror = s.scalars(select(Mirror).where(Mirror.tenant_id == tenant_id,
                                                 Mirror.deal_stage != "closedwon",
                                                 Mirror.deal_stage != "closedlost")).first()
    open_mirror.deal_stage = "closedwon"
    s.flush()
    n = analytics.refresh_summaries(s, tenant_id, day)
    print(f"  after one deal closes:   {n} pushes (the plans whose rounded % moved), once")
    s.rollback()


def main() -> None:
    app, url = make_app()
    print(f"database: {url.split('@')[-1]}")
    if PLANS:
        latency(app)
    calibration(app)


if __name__ == "__main__":
    main()
