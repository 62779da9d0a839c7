"""Analytics (webapp/analytics.py): every SQL figure against a plain-Python reference over a
generated history (webapp/history.py), health, coverage, the forecast, views recorded by the
buyer page, the page, the CSV downloads and the API."""
from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from datetime import timedelta

import pytest
from conftest import path_of, signed_in
from sqlalchemy import select

from webapp import analytics, clock, history, jobs, view_counter
from webapp.auth import ensure_tenant
from webapp.db import session
from webapp.models import (
    Activity,
    BuyerView,
    Installation,
    Milestone,
    Mirror,
    Plan,
    ShareLink,
    Slip,
    Stage,
)


@pytest.fixture
def seeded(app):
    with app.app_context():
        s = session()
        tenant = ensure_tenant(s, "acme")
        made = history.seed(s, tenant.id, closed=120, open_plans=15, seed=3)
        s.commit()
        return tenant.id, made


def _reference(s, tenant_id):
    """Everything the SQL computes, recomputed in Python from plain rows."""
    stages = {}
    for inst in s.scalars(select(Installation).where(Installation.tenant_id == tenant_id)):
        for pipe, sts in (inst.settings.get("pipelines") or {}).items():
            for st in sts:
                stages[(inst.id, pipe, st["id"])] = (
                    ("won" if st["won"] else "lost") if st["closed"] else "open")
    outcome = {}
    for plan in s.scalars(select(Plan).where(Plan.tenant_id == tenant_id)):
        m = s.get(Mirror, plan.id)
        outcome[plan.id] = stages.get((m.installation_id, m.deal_pipeline, m.deal_stage), "open") \
            if m else "open"
    ordered = defaultdict(list)
    rows = s.execute(select(Milestone, Stage.position, Stage.name)
                     .join(Stage, Stage.id == Milestone.stage_id)
                     .where(Milestone.tenant_id == tenant_id)).all()
    for m, stage_pos, stage_name in rows:
        ordered[m.plan_id].append((stage_pos, m.position, m, stage_name))
    for v in ordered.values():
        v.sort(key=lambda r: (r[0], r[1]))
    return outcome, ordered


def _nearest(values, q):
    values = sorted(values)
    return values[math.ceil(q * len(values)) - 1]


def test_win_rates_and_funnel_match_a_python_reference(app, seeded):
    tenant_id, _ = seeded
    with app.app_context():
        s = session()
        outcome, ordered = _reference(s, tenant_id)
        reached, won, lost = defaultdict(int), defaultdict(int), defaultdict(int)
        for plan_id, ms in ordered.items():
            furthest = max((i for i, r in enumerate(ms, 1) if r[2].status == "done"), default=0)
            for r in ms[:furthest]:
                reached[r[2].title] += 1
                won[r[2].title] += outcome[plan_id] == "won"
                lost[r[2].title] += outcome[plan_id] == "lost"
        data = analytics.win_rates(s, analytics.Filters(tenant_id))
    got = {m["title"]: (m["reached"], m["won"], m["lost"]) for m in data["milestones"]}
    assert got == {t: (reached[t], won[t], lost[t]) for t in reached}
    w, lo = sum(o == "won" for o in outcome.values()), sum(o == "lost" for o in outcome.values())
    assert data["baseline_win_rate"] == round(w / (w + lo), 4) and w and lo
    assert [m["title"] for m in data["milestones"]][:3] == [
        t for _, t in history.template_milestones()[:3]]
    # the history's truth shows through: further means likelier to win
    rates = [m["win_rate"] for m in data["milestones"] if m["win_rate"] is not None]
    assert rates[-1] > rates[0]


def test_durations_match_a_python_reference(app, seeded):
    tenant_id, _ = seeded
    with app.app_context():
        s = session()
        _, ordered = _reference(s, tenant_id)
        created = dict(s.execute(select(Plan.id, Plan.created_at)).all())
        per_title, per_stage = defaultdict(list), defaultdict(list)
        for plan_id, ms in ordered.items():
            previous = clock.aware(created[plan_id])
            stage_days, stage_done = defaultdict(float), defaultdict(lambda: True)
            for _, _, m, stage_name in ms:
                if m.status != "done":
                    stage_done[stage_name] = False
                    continue
                days = max(0.0, (clock.aware(m.completed_at) - previous).total_seconds() / 86400)
                previous = clock.aware(m.completed_at)
                per_title[m.title].append(days)
                stage_days[stage_name] += days
            for name, days in stage_days.items():
                if stage_done[name]:
                    per_stage[name].append(days)
        data = analytics.durations(s, analytics.Filters(tenant_id))
    for row in data["milestones"]:
        ref = per_title[row["title"]]
        assert row["plans"] == len(ref)
        assert row["median_days"] == pytest.approx(_nearest(ref, 0.5), abs=0.06)
        assert row["p75_days"] == pytest.approx(_nearest(ref, 0.75), abs=0.06)
    assert {r["title"] for r in data["milestones"]} == set(per_title)
    for row in data["stages"]:
        ref = per_stage[row["stage"]]
        assert row["plans"] == len(ref)
        assert row["median_days"] == pytest.approx(_nearest(ref, 0.5), abs=0.1)
    slow = max(data["milestones"], key=lambda r: r["median_days"])
    assert slow["title"] == "Legal and compliance review"


def test_slips_and_engagement_match_a_python_reference(app, seeded):
    tenant_id, _ = seeded
    with app.app_context():
        s = session()
        outcome, _ = _reference(s, tenant_id)
        titles = dict(s.execute(select(Milestone.id, Milestone.title)).all())
        days, plans = defaultdict(int), defaultdict(set)
        for slip in s.scalars(select(Slip)):
            days[titles[slip.milestone_id]] += max(0, (slip.new_date - slip.old_date).days)
            plans[titles[slip.milestone_id]].add(slip.plan_id)
        touches = defaultdict(int)
        for v in s.scalars(select(BuyerView)):
            touches[v.plan_id] += v.views
        for a in s.scalars(select(Activity).where(Activity.actor.like("buyer:%"))):
            touches[a.plan_id] += 1
        slips = analytics.slips(s, analytics.Filters(tenant_id))
        engaged = analytics.engagement_outcomes(s, analytics.Filters(tenant_id))
    assert {r["title"]: (r["slip_days"], r["plans"]) for r in slips["milestones"]} == {
        t: (days[t], len(plans[t])) for t in days}
    assert slips["milestones"][0]["title"] == "Legal and compliance review"

    def bucket(n):
        return "None" if n == 0 else "1–5" if n <= 5 else "6–20" if n <= 20 else "21+"
    ref = defaultdict(lambda: [0, 0, 0])
    for plan_id, o in outcome.items():
        r = ref[bucket(touches[plan_id])]
        r[0] += 1
        r[1] += o == "won"
        r[2] += o == "lost"
    assert {b["touches"]: [b["plans"], b["won"], b["lost"]] for b in engaged["buckets"]
            if b["plans"]} == dict(ref)


def test_forecast_is_the_smoothed_history_rate(app, seeded):
    tenant_id, made = seeded
    with app.app_context():
        s = session()
        rates = {m["title"]: m for m in analytics.win_rates(s, analytics.Filters(tenant_id))[
            "milestones"]}
        got = analytics.forecast(s, tenant_id)
    open_ids = list(made["known"])
    assert all(got[p]["outcome"] == "open" for p in open_ids)
    for plan_id in open_ids:
        f = got[plan_id]
        if f["furthest"] is None:
            continue
        m = rates[f["furthest"]]
        n = m["won"] + m["lost"]
        expected = (m["won"] + analytics.MIN_SAMPLE * f["p_stage"]) / (n + analytics.MIN_SAMPLE)
        assert f["win_probability"] == pytest.approx(expected, abs=1e-4)
    closed = [p for p, f in got.items() if f["outcome"] != "open"]
    assert {got[p]["win_probability"] for p in closed} <= {0.0, 1.0}


def test_filters_narrow_every_figure(app, seeded):
    tenant_id, _ = seeded
    with app.app_context():
        s = session()
        everything = analytics.win_rates(s, analytics.Filters(tenant_id))
        none = analytics.win_rates(s, analytics.Filters(tenant_id, template="quick"))
        other = analytics.win_rates(s, analytics.Filters(tenant_id, pipeline="nope"))
        recent = analytics.win_rates(s, analytics.Filters(tenant_id, period_days=60))
    assert everything["plans"] == 135 and none["plans"] == 0 and other["plans"] == 0
    assert 0 < recent["plans"] < everything["plans"]


# ---- health and coverage ---------------------------------------------------------------


def _plan_with(api, **kw):
    response = api.post("/plans", json={"title": "Health", "template": "quick",
                                        "start_date": clock.now().date().isoformat(), **kw})
    assert response.status_code == 201, response.json
    return response.json


def test_health_stalled_by_overdue_or_quiet_at_risk_on_track(app, api):
    on_track = _plan_with(api)
    late = _plan_with(api)
    quiet = _plan_with(api)
    with app.app_context():
        s = session()
        today = clock.now().date()
        m = s.scalars(select(Milestone).where(Milestone.plan_id == late["id"])
                      .order_by(Milestone.position)).first()
        m.due_date = today - timedelta(days=7)
        s.get(Plan, quiet["id"]).created_at = clock.now() - timedelta(days=15)
        s.commit()
        health = analytics.health_by_plan(s, m.tenant_id, None, today)
        assert health == {on_track["id"]: "on_track", late["id"]: "stalled",
                          quiet["id"]: "stalled"}
        m.due_date = today - timedelta(days=6)
        s.add(Activity(tenant_id=m.tenant_id, plan_id=quiet["id"], actor="buyer:Dana <d@x.io>",
                       action="comment.add"))
        s.commit()
        health = analytics.health_by_plan(s, m.tenant_id, None, today)
    assert health[late["id"]] == "at_risk" and health[quiet["id"]] == "on_track"


def test_views_are_counted_per_link_and_person_and_drive_coverage(app, api, client):
    plan = _plan_with(api, stakeholders=[
        {"name": "Dana", "email": "dana@buyer.io", "side": "buyer", "role": "decision_maker"},
        {"name": "Sam", "email": "sam@buyer.io", "side": "buyer", "role": "champion"}])
    link = api.post(f"/plans/{plan['id']}/share-links", json={}).json
    page = path_of(link["url"])
    with app.app_context():
        s = session()
        cov = analytics.coverage(s, s.get(Plan, plan["id"]).tenant_id, plan["id"])
    assert cov["decision_maker_alert"] is True
    assert client.get(page).status_code == 200
    assert client.get(page).status_code == 200
    import re
    html = client.get(page).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    client.post(page + "/identify", data={"name": "Sam", "email": "Sam@Buyer.io", "csrf": csrf})
    client.get(page)
    with app.app_context():
        s = session()
        assert not list(s.scalars(select(BuyerView)))  # counted in a buffer, not per view
        assert view_counter.flush() == 2  # the clock's flush_views task
        tenant_id = s.get(Plan, plan["id"]).tenant_id
        rows = {v.viewer_email: v.views for v in s.scalars(select(BuyerView))}
        seen = analytics.engagement(s, tenant_id, plan["id"])
        cov = analytics.coverage(s, tenant_id, plan["id"])
    assert rows == {"": 3, "sam@buyer.io": 1}
    assert seen["links"][0]["views"] == 4 and seen["people"][0]["email"] == "sam@buyer.io"
    engaged = {r["role"]: r["engaged"] for r in cov["roles"]}
    assert engaged["champion"] is True and engaged["decision_maker"] is False
    assert cov["decision_maker_alert"] is True


def test_buffered_views_arrive_and_add_up_across_flushes(app, api, client):
    """Views are counted in Redis (REDIS_URL) or in memory and written by the clock's
    flush_views task: counts add to the stored ones, first seen stays, last seen moves on,
    and a link deleted before the flush takes its views with it."""
    plan = _plan_with(api)
    link = api.post(f"/plans/{plan['id']}/share-links", json={}).json
    gone = api.post(f"/plans/{plan['id']}/share-links", json={}).json
    start = clock.now()
    now = [start]
    app.config["CLOCK"] = lambda: now[0]

    def view(path, minutes):
        now[0] = start + timedelta(minutes=minutes)
        assert client.get(path).status_code == 200

    for minute in (1, 2, 3):
        view(path_of(link["url"]), minute)
    view(path_of(gone["url"]), 4)
    with app.app_context():
        s = session()
        s.delete(s.get(ShareLink, gone["id"]))
        s.commit()
        assert jobs.TASKS["flush_views"]() == 1
        row = s.scalars(select(BuyerView)).one()
        assert (row.link_id, row.views, row.viewer_email) == (link["id"], 3, "")
        assert (row.first_seen, row.last_seen) == (start + timedelta(minutes=1),
                                                   start + timedelta(minutes=3))
    view(path_of(link["url"]), 5)
    view(path_of(link["url"]), 6)
    with app.app_context():
        assert view_counter.flush() == 1 and view_counter.flush() == 0  # nothing twice
        s = session()
        row = s.scalars(select(BuyerView)).one()
        assert row.views == 5
        assert (row.first_seen, row.last_seen) == (start + timedelta(minutes=1),
                                                   start + timedelta(minutes=6))


def test_views_wait_in_the_buffer_when_the_database_refuses_them(app, api, client, monkeypatch):
    plan = _plan_with(api)
    page = path_of(api.post(f"/plans/{plan['id']}/share-links", json={}).json["url"])
    assert client.get(page).status_code == 200

    def broken(*_a, **_k):
        raise RuntimeError("database went away")

    with app.app_context():
        monkeypatch.setattr(analytics, "record_view", broken)
        assert view_counter.flush() == 0
        monkeypatch.undo()
        assert client.get(page).status_code == 200
        assert view_counter.flush() == 1
        assert session().scalars(select(BuyerView)).one().views == 2


# ---- the page, CSV and API --------------------------------------------------------------


def test_analytics_page_reps_see_their_own_admins_all(app, client, seeded):
    _ = seeded
    admin = signed_in(client, "acme", "admin")
    html = client.get("/analytics").text
    assert "<svg" in html and "Win rate by furthest milestone reached" in html
    assert "<strong>135</strong> plans" in html
    rep_client = app.test_client()
    signed_in(rep_client, "acme", "rep")
    assert "<strong>0</strong> plans" in rep_client.get("/analytics").text
    assert app.test_client().get("/analytics").status_code in (302, 401)
    assert admin


def test_csv_download_has_the_table(app, client, seeded):
    signed_in(client, "acme", "admin")
    response = client.get("/analytics/win-rates.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows[0]["title"] == "Discovery call" and int(rows[0]["reached"]) > 0
    assert client.get("/analytics/nope.csv").status_code == 404


def test_api_win_rates_json(app, client, seeded):
    tenant_id, _ = seeded
    from webapp.auth import create_key

    with app.app_context():
        s = session()
        key = create_key(s, s.get(type(ensure_tenant(s, "acme")), tenant_id), "t")
        s.commit()
    response = client.get("/api/v1/analytics/win-rates", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    body = response.json
    assert set(body) >= {"milestones", "baseline_win_rate"}
    assert set(body["milestones"][0]) >= {"title", "reached", "won", "lost", "win_rate"}
    assert client.get("/api/v1/analytics/win-rates").status_code == 401
    bad = client.get("/api/v1/analytics/win-rates?period=7",
                     headers={"Authorization": f"Bearer {key}"})
    assert bad.status_code == 422
    assert client.get("/api/v1/openapi.json").json["paths"]["/analytics/win-rates"]
    plans = client.get("/api/v1/analytics/forecast",
                       headers={"Authorization": f"Bearer {key}"}).json["plans"]
    assert len(plans) == 15  # the open ones only (the fixture's 120 closed plans are history)


def test_statistics_reference_helper_is_nearest_rank():
    assert _nearest([1, 2, 3, 4], 0.5) == 2 and statistics.median([1, 2, 3]) == 2


def test_demo_history_seeds_once_and_the_demo_plan_stays_the_demo_plan(app):
    from webapp.cli import demo

    runner = app.test_cli_runner()
    first = runner.invoke(demo, ["--history"])
    assert first.exit_code == 0, first.output
    assert "History: 337 plans added" in first.output
    again = runner.invoke(demo, ["--history"])
    assert "History: already seeded" in again.output
    with app.app_context():
        s = session()
        tenant = ensure_tenant(s, "demo")
        data = analytics.win_rates(s, analytics.Filters(tenant.id))
        assert data["won"] > 20 and data["lost"] > 20 and data["plans"] == 338
        assert s.scalar(select(Plan.title).where(Plan.deal_id == "demo-deal-1")).startswith("Acme")


# ---- the rollup (webapp/rollups.py) and the forecast's per-tenant cache -----------------


def _rollup_rows(s, plan_id):
    from webapp.models import MilestoneStep, PlanRollup

    plan = s.execute(select(PlanRollup.outcome, PlanRollup.p_stage, PlanRollup.furthest_step,
                            PlanRollup.furthest_title).where(PlanRollup.plan_id == plan_id)).one()
    steps = s.execute(select(MilestoneStep.milestone_id, MilestoneStep.step, MilestoneStep.days,
                             MilestoneStep.stage_complete)
                      .where(MilestoneStep.plan_id == plan_id)
                      .order_by(MilestoneStep.step)).all()
    return tuple(plan), [tuple(r) for r in steps]


def test_rollup_follows_every_write_in_the_same_transaction(app, api, plan):
    from conftest import milestones_of

    from webapp import rollups

    ms = milestones_of(plan)
    for m in (ms[0], ms[2]):
        assert api.patch(f"/milestones/{m['id']}", json={"status": "done"}).status_code == 200
    with app.app_context():
        s = session()
        (outcome, _, furthest, title), steps = _rollup_rows(s, plan["id"])
        assert (outcome, furthest, title) == ("open", 3, ms[2]["title"])
        assert [r[0] for r in steps] == [m["id"] for m in ms]  # plan order
        assert steps[0][2] is not None and steps[1][2] is None  # days: done ones only
    assert api.patch(f"/milestones/{ms[2]['id']}", json={"status": "not_started"}).status_code == 200
    with app.app_context():
        s = session()
        kept = _rollup_rows(s, plan["id"])
        assert kept[0][2:] == (1, ms[0]["title"])
        rollups.refresh(s, [plan["id"]])  # what the migration's backfill computes
        assert _rollup_rows(s, plan["id"]) == kept


def test_the_forecast_reads_the_cached_win_rates_and_an_outcome_change_drops_them(app, seeded):
    from webapp.models import WinRateCache

    tenant_id, made = seeded
    open_id = next(iter(made["known"]))
    with app.app_context():
        s = session()
        assert analytics.refresh_win_rates(s) == 1
        s.commit()
        real = analytics.forecast(s, tenant_id)
        titles = [t for _, t in history.template_milestones()]
        row = s.get(WinRateCache, tenant_id)
        assert row.rates == analytics._history_rates(s, tenant_id)
        # A planted history shows through: the forecast (and so each push) reads the cache.
        row.rates = {"titles": {t: [1000, 0] for t in titles}, "won": 1000, "lost": 0}
        s.commit()
        planted = analytics.forecast(s, tenant_id)
        moved = [p for p, f in planted.items() if f["outcome"] == "open" and f["furthest"]]
        assert moved and all(planted[p]["win_probability"] > 0.98 for p in moved)
        assert any(real[p]["win_probability"] < 0.9 for p in moved)
        generation = row.generation
        s.get(Mirror, open_id).deal_stage = "closedlost"  # the deal closed in the CRM
        assert analytics.forecast(s, tenant_id)[open_id]["win_probability"] == 0.0
        assert analytics.forecast(s, tenant_id) != planted  # stale within the transaction too
        s.commit()
        s.expire_all()
        row = s.get(WinRateCache, tenant_id)
        assert row.rates is None and row.generation == generation + 1
        assert analytics.forecast(s, tenant_id)[moved[0]] != planted[moved[0]]


def test_a_refresh_never_overwrites_an_invalidation_made_while_it_computed(app, seeded):
    from webapp import rollups
    from webapp.models import WinRateCache

    tenant_id, _ = seeded
    with app.app_context():
        s = session()
        analytics.refresh_win_rates(s, tenant_id)
        s.commit()

        def compute_while_a_deal_closes():
            rollups.invalidate(s, [tenant_id])
            return {"titles": {}, "won": 1, "lost": 1}
        rollups.store_rates(s, tenant_id, compute_while_a_deal_closes)
        s.commit()
        s.expire_all()
        assert s.get(WinRateCache, tenant_id).rates is None


def test_refresh_summaries_queues_nothing_when_nothing_changed(app, seeded):
    tenant_id, made = seeded
    with app.app_context():
        s = session()
        health = analytics.health_by_plan(s, tenant_id, None, clock.now().date())
        probabilities = analytics.forecast(s, tenant_id)
        for state in s.scalars(select(Mirror).where(Mirror.tenant_id == tenant_id)):
            p = probabilities[state.plan_id]["win_probability"]
            state.pushed_deal = {"properties": {"health": health[state.plan_id],
                                                "win_probability": str(round(100 * p))}}
        analytics.refresh_win_rates(s, tenant_id)
        s.commit()
        assert analytics.refresh_summaries(s, tenant_id, clock.now().date()) == 0
        s.get(Mirror, next(iter(made["known"]))).deal_stage = "closedwon"
        s.flush()
        assert analytics.refresh_summaries(s, tenant_id, clock.now().date()) > 0
        s.rollback()


def test_coverage_is_written_to_both_crms_as_one_line(app, api):
    from pathlib import Path

    from connector import hubspot, salesforce

    plan = _plan_with(api, stakeholders=[
        {"name": "Dana", "email": "dana@buyer.io", "side": "buyer", "role": "decision_maker"},
        {"name": "Sam", "email": "sam@buyer.io", "side": "buyer", "role": "champion"}])
    with app.app_context():
        s = session()
        row = s.get(Plan, plan["id"])
        s.add(Activity(tenant_id=row.tenant_id, plan_id=row.id, actor="buyer:Sam <sam@buyer.io>",
                       action="comment.add"))
        s.flush()
        text = analytics.summary_fields(s, row, clock.now().date())["coverage"]
    assert text == ("Last 14 days: Engaged: Champion; Quiet: Decision maker; "
                    "Not named: Economic buyer, Technical, Legal, Security")
    assert hubspot.DEAL_PROPERTIES["coverage"][0] == "mp_coverage"
    field = salesforce.OPPORTUNITY_SUMMARY["coverage"][0]
    assert (Path(__file__).parent.parent / "salesforce_package/force-app/main/default/objects/"
            f"Opportunity/fields/{field}.field-meta.xml").exists()  # the LWC reads it
