"""Analytics across plans: engagement, health, bottlenecks, win rates and the forecast.

Every figure is computed by the database: GROUP BY over the rollup that webapp/rollups.py keeps
on write (each plan's outcome and furthest milestone, each milestone's step and days), so no
request orders a tenant's milestones; Python only shapes the rows. tests/test_analytics.py
checks each figure against a plain-Python reference computed from the raw milestones.

Definitions (the README's "Analytics and forecast" section says the same):

- A plan's *outcome* is its deal's stage as last seen (mirrors.deal_stage) looked up in the
  installation's cached pipeline stages (installation.settings["pipelines"], which carry
  closed/won flags and the stage probability): won, lost, or open. Plans without a deal are open.
- A plan's *step* numbering is its milestones in plan order (stage, then position); the
  *furthest milestone reached* is the last done one in that order, and a plan *reached* every
  milestone up to it. Milestones are grouped across plans by title (templates share titles).
- *Days per milestone*: from the previous completion in the plan (or the plan's creation) to
  this completion; median and p75 by nearest rank. *Days per stage*: the same, summed over a
  stage whose milestones are all done.
- *Health*: stalled when an open milestone is 7+ days overdue or the buyer has not been seen
  (page view or action) for 14 days (counted from the plan's creation when never seen); at
  risk when an open milestone is overdue or marked at risk/off track, or the buyer has been
  quiet for 7 days; else on track.
- *Forecast*: P(win) = (won + K * p_stage) / (reached + K), where won/reached are the
  tenant's closed plans that reached the plan's furthest milestone (all closed plans when it
  has none), p_stage the CRM stage probability of the deal (the tenant's baseline win rate
  when the CRM gives none), K = MIN_SAMPLE. With few closed plans the CRM's figure dominates;
  with many, the tenant's own history does.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import case, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import clock, rollups
from .models import (
    Activity,
    BuyerView,
    Milestone,
    MilestoneStep,
    Mirror,
    Plan,
    PlanRollup,
    Slip,
    Stakeholder,
    new_id,
)

MIN_SAMPLE = 10  # K: the forecast's prior weight, in plans
STALLED_OVERDUE_DAYS = 7
QUIET_DAYS = 14
AT_RISK_QUIET_DAYS = 7
COVERAGE_DAYS = 14
COVERAGE_ROLES = {
    "decision_maker": "Decision maker", "champion": "Champion", "economic_buyer": "Economic buyer",
    "technical": "Technical", "legal": "Legal", "security": "Security",
}
HEALTH = {"on_track": "On track", "at_risk": "At risk", "stalled": "Stalled"}
PERIODS = {"30": 30, "90": 90, "365": 365, "all": None}
ENGAGEMENT_BUCKETS = ((0, 0, "None"), (1, 5, "1–5"), (6, 20, "6–20"), (21, None, "21+"))


@dataclass(frozen=True)
class Filters:
    """Which plans a figure covers: always one tenant; a rep only their own plans."""

    tenant_id: str
    owner_id: str | None = None  # forced to the rep for reps
    pipeline: str | None = None
    template: str | None = None
    period_days: int | None = None  # plans created in the last N days
    extra: dict = field(default_factory=dict, compare=False)


# ---- engagement: recorded by the buyer page --------------------------------------------


def record_view(s: Session, link, buyer, *, views: int = 1, first_seen: datetime | None = None,
                last_seen: datetime | None = None, also=None) -> tuple[datetime | None, object]:
    """Count `views` buyer page views for (link, viewer), seen from first_seen to last_seen
    (webapp/view_counter.py buffers them and flushes here); the caller commits. One statement,
    which returns when this viewer last saw the page before (None: never) and, with `also` (a
    scalar SQL expression, e.g. whether the tenant has a webhook for views, webapp/webhooks.py),
    its value."""
    now = clock.now()
    email = (buyer.email.lower() if buyer else "")[:254]
    name = (buyer.name if buyer else "")[:200]
    postgres = s.get_bind().dialect.name == "postgresql"
    insert = postgresql.insert if postgres else sqlite.insert
    statement = insert(BuyerView).values(
        id=new_id(), tenant_id=link.tenant_id, plan_id=link.plan_id, link_id=link.id,
        viewer_email=email, viewer_name=name, views=views, first_seen=first_seen or now,
        last_seen=last_seen or now)
    new = statement.excluded
    latest = (func.greatest if postgres else func.max)(BuyerView.last_seen, new.last_seen)
    statement = statement.on_conflict_do_update(
        index_elements=["link_id", "viewer_email"],
        set_={"views": BuyerView.views + new.views, "last_seen": latest,
              "viewer_name": new.viewer_name,
              "previous_seen": BuyerView.last_seen})  # SET reads the row before the update
    if also is None:
        return s.scalar(statement.returning(BuyerView.previous_seen)), None
    previous, wanted = s.execute(statement.returning(BuyerView.previous_seen, also)).one()
    return previous, wanted


def engagement(s: Session, tenant_id: str, plan_id: str) -> dict:
    """Per link and per person: views (first seen, last seen, count); actions per person."""
    views = s.execute(
        select(BuyerView.link_id, BuyerView.viewer_email, BuyerView.viewer_name, BuyerView.views,
               BuyerView.first_seen, BuyerView.last_seen)
        .where(BuyerView.tenant_id == tenant_id, BuyerView.plan_id == plan_id)
        .order_by(BuyerView.last_seen.desc())).all()
    actions = s.execute(
        select(Activity.actor, func.count(), func.min(Activity.at), func.max(Activity.at))
        .where(Activity.tenant_id == tenant_id, Activity.plan_id == plan_id,
               Activity.actor.like("buyer:%"))
        .group_by(Activity.actor)).all()
    by_link: dict[str, dict] = {}
    for link_id, _email, _name, n, first, last in views:
        row = by_link.setdefault(link_id, {"link_id": link_id, "views": 0, "first_seen": first,
                                           "last_seen": last})
        row["views"] += n
        row["first_seen"] = min(_aware(row["first_seen"]), _aware(first))
        row["last_seen"] = max(_aware(row["last_seen"]), _aware(last))
    people: dict[str, dict] = {}
    for _link, email, name, n, first, last in views:
        if not email:
            continue
        p = people.setdefault(email, {"email": email, "name": name, "views": 0, "actions": 0,
                                      "first_seen": _aware(first), "last_seen": _aware(last)})
        p["views"] += n
        p["first_seen"] = min(p["first_seen"], _aware(first))
        p["last_seen"] = max(p["last_seen"], _aware(last))
    for actor, n, first, last in actions:
        name, email = _parse_actor(actor)
        p = people.setdefault(email, {"email": email, "name": name, "views": 0, "actions": 0,
                                      "first_seen": _aware(first), "last_seen": _aware(last)})
        p["actions"] += n
        p["first_seen"] = min(p["first_seen"], _aware(first))
        p["last_seen"] = max(p["last_seen"], _aware(last))
    from .content import engagement_by_plan  # the buyers' opens, plays and downloads of content

    return {"links": list(by_link.values()),
            "people": sorted(people.values(), key=lambda p: p["last_seen"], reverse=True),
            "content": engagement_by_plan(s, tenant_id, [plan_id]).get(plan_id)}


def _parse_actor(actor: str) -> tuple[str, str]:
    """'buyer:Name <email>' (sharing.Buyer.actor) -> (name, email)."""
    body = actor[len("buyer:"):]
    if body.endswith(">") and "<" in body:
        name, _, email = body[:-1].rpartition("<")
        return name.strip(), email.strip().lower()
    return body.strip(), ""


def coverage(s: Session, tenant_id: str, plan_id: str, now: datetime | None = None) -> dict:
    """Which buyer-side roles engaged (viewed or acted) in the last COVERAGE_DAYS days."""
    since = (now or clock.now()) - timedelta(days=COVERAGE_DAYS)
    email = func.lower(Stakeholder.email)
    viewed = select(BuyerView.id).where(
        BuyerView.plan_id == plan_id, BuyerView.viewer_email == email, BuyerView.last_seen >= since)
    acted = select(Activity.id).where(
        Activity.plan_id == plan_id, Activity.at >= since,
        func.lower(Activity.actor).like(literal("buyer:%<") + email + literal(">")))
    rows = s.execute(
        select(Stakeholder.role, func.max(case((viewed.exists() | acted.exists(), 1), else_=0)))
        .where(Stakeholder.tenant_id == tenant_id, Stakeholder.plan_id == plan_id,
               Stakeholder.side == "buyer", Stakeholder.email != "",
               Stakeholder.role.in_(list(COVERAGE_ROLES)))
        .group_by(Stakeholder.role)).all()
    present = {role: bool(engaged) for role, engaged in rows}
    roles = [{"role": r, "label": label, "present": r in present, "engaged": present.get(r, False)}
             for r, label in COVERAGE_ROLES.items()]
    return {"days": COVERAGE_DAYS, "roles": roles,
            "decision_maker_alert": not present.get("decision_maker", False)}


# ---- the plans a figure covers ---------------------------------------------------------


def _plans(s: Session, f: Filters, plan_ids: list[str] | None = None):
    """Live plans under the filters with their rollup (webapp/rollups.py): outcome, CRM stage
    probability, furthest step and title (a CTE)."""
    where = [Plan.tenant_id == f.tenant_id, Plan.archived_at.is_(None)]
    query = (select(Plan.id.label("plan_id"), Plan.created_at, Plan.owner_user_id,
                    func.coalesce(PlanRollup.outcome, "open").label("outcome"),
                    PlanRollup.p_stage, func.coalesce(PlanRollup.furthest_step, 0).label("f"),
                    PlanRollup.furthest_title)
             .outerjoin(PlanRollup, PlanRollup.plan_id == Plan.id))
    if f.owner_id:
        where.append(Plan.owner_user_id == f.owner_id)
    if f.pipeline:
        query = query.join(Mirror, Mirror.plan_id == Plan.id)
        where.append(Mirror.deal_pipeline == f.pipeline)
    if f.template:
        where.append(Plan.template == f.template)
    if f.period_days:
        where.append(Plan.created_at >= clock.now() - timedelta(days=f.period_days))
    if plan_ids is not None:
        where.append(Plan.id.in_(plan_ids))
    return query.where(*where).cte("p")


def _rate(won: int, lost: int) -> float | None:
    return round(won / (won + lost), 4) if won + lost else None


# ---- the charts ----------------------------------------------------------------------------


def win_rates(s: Session, f: Filters) -> dict:
    """Funnel and win rate by milestone reached (one GROUP BY over the rollup), and the baseline."""
    plans = _plans(s, f)
    steps = MilestoneStep
    rows = s.execute(
        select(steps.title, func.count().label("reached"),
               func.sum(case((steps.outcome == "won", 1), else_=0)),
               func.sum(case((steps.outcome == "lost", 1), else_=0)),
               func.avg(steps.step).label("order"))
        .where(steps.tenant_id == f.tenant_id, steps.reached,
               steps.plan_id.in_(select(plans.c.plan_id)))
        .group_by(steps.title)
        .order_by(func.avg(steps.step), steps.title)).all()
    total, won, lost = s.execute(select(
        func.count(), func.coalesce(func.sum(case((plans.c.outcome == "won", 1), else_=0)), 0),
        func.coalesce(func.sum(case((plans.c.outcome == "lost", 1), else_=0)), 0))).one()
    return {
        "plans": total, "won": int(won), "lost": int(lost), "open": total - int(won) - int(lost),
        "baseline_win_rate": _rate(int(won), int(lost)),
        "milestones": [{"title": t, "reached": n, "won": int(w), "lost": int(lo),
                        "open": n - int(w) - int(lo), "win_rate": _rate(int(w), int(lo))}
                       for t, n, w, lo, _ in rows],
    }


def _date_days(s: Session, later, earlier):
    if s.get_bind().dialect.name == "sqlite":
        return func.julianday(later) - func.julianday(earlier)
    return later - earlier


def _percentiles(s: Session, source, key, value) -> list[tuple]:
    """(key, n, median, p75, order) per key, by nearest rank: PostgreSQL's percentile_disc
    (which is nearest rank: the first value whose cumulative share reaches q), window
    functions on SQLite, which has no percentile_disc (on PostgreSQL they took 2-3x longer)."""
    if s.get_bind().dialect.name == "postgresql":
        v = source.c[value]
        return s.execute(
            select(source.c[key], func.count(),
                   func.percentile_disc(0.5).within_group(v),
                   func.percentile_disc(0.75).within_group(v), func.avg(source.c.ord))
            .group_by(source.c[key]).order_by(func.avg(source.c.ord), source.c[key])).all()
    rank = func.row_number().over(partition_by=source.c[key], order_by=source.c[value])
    n = func.count().over(partition_by=source.c[key])
    ranked = select(source.c[key].label("k"), source.c[value].label("v"), source.c.ord,
                    rank.label("r"), n.label("n")).subquery("ranked")
    # `//` is integer division on both databases (`/` is true division in SQLAlchemy 2,
    # and PostgreSQL rounds a numeric cast to integer where SQLite truncates).
    median_rank = (ranked.c.n + 1) // 2  # ceil(n/2)
    p75_rank = (ranked.c.n * 3 + 3) // 4  # ceil(3n/4)
    return s.execute(
        select(ranked.c.k, func.max(ranked.c.n),
               func.max(case((ranked.c.r == median_rank, ranked.c.v))),
               func.max(case((ranked.c.r == p75_rank, ranked.c.v))),
               func.avg(ranked.c.ord))
        .group_by(ranked.c.k).order_by(func.avg(ranked.c.ord), ranked.c.k)).all()


def durations(s: Session, f: Filters) -> dict:
    """Median and p75 days per milestone and per stage, over completed milestones (the days
    each took are in the rollup)."""
    plans = _plans(s, f)
    steps = MilestoneStep
    per_milestone = (select(steps.title, steps.days, steps.step.label("ord"))
                     .where(steps.tenant_id == f.tenant_id, steps.days.is_not(None),
                            steps.plan_id.in_(select(plans.c.plan_id)))
                     .subquery("pm"))
    milestones = _percentiles(s, per_milestone, "title", "days")
    per_stage = (select(steps.stage, steps.stage_days.label("days"), steps.step.label("ord"))
                 .where(steps.tenant_id == f.tenant_id, steps.stage_days.is_not(None),
                        steps.plan_id.in_(select(plans.c.plan_id)))
                 .subquery("ps"))
    stages = _percentiles(s, per_stage, "stage", "days")
    shape = lambda rows, name: [{name: k, "plans": n, "median_days": _round(m),
                                 "p75_days": _round(p)} for k, n, m, p, _ in rows]
    return {"milestones": shape(milestones, "title"), "stages": shape(stages, "stage")}


def _round(value) -> float | None:
    return None if value is None else round(float(value), 1)


def slips(s: Session, f: Filters) -> dict:
    """Slip days by milestone (the ledger, later dates only): the bottlenecks, worst first."""
    plans = _plans(s, f)
    later = Slip.new_date > Slip.old_date
    days = case((later, _date_days(s, Slip.new_date, Slip.old_date)), else_=0)
    rows = s.execute(
        select(Milestone.title, func.count(Slip.id), func.count(func.distinct(Slip.plan_id)),
               func.sum(days))
        .join(Milestone, Milestone.id == Slip.milestone_id)
        .join(plans, plans.c.plan_id == Slip.plan_id)
        .where(Slip.tenant_id == f.tenant_id)
        .group_by(Milestone.title)
        .order_by(func.sum(days).desc(), Milestone.title)).all()
    return {"milestones": [{"title": t, "slips": n, "plans": p, "slip_days": int(d or 0),
                            "days_per_plan": round(float(d or 0) / p, 1) if p else 0.0}
                           for t, n, p, d in rows]}


def _bucket(count):
    whens = []
    for lo, hi, label in ENGAGEMENT_BUCKETS:
        whens.append(((count <= hi) if hi is not None else (count >= lo), label))
    return case(*whens[:-1], else_=whens[-1][1])


def engagement_outcomes(s: Session, f: Filters) -> dict:
    """Buyer engagement (page views + actions per plan) against outcome, by bucket."""
    plans = _plans(s, f)
    views = (select(BuyerView.plan_id, func.sum(BuyerView.views).label("n"))
             .where(BuyerView.tenant_id == f.tenant_id).group_by(BuyerView.plan_id).subquery("v"))
    actions = (select(Activity.plan_id, func.count().label("n"))
               .where(Activity.tenant_id == f.tenant_id, Activity.actor.like("buyer:%"))
               .group_by(Activity.plan_id).subquery("a"))
    touches = func.coalesce(views.c.n, 0) + func.coalesce(actions.c.n, 0)
    per_plan = (select(plans.c.outcome, _bucket(touches).label("bucket"))
                .outerjoin(views, views.c.plan_id == plans.c.plan_id)
                .outerjoin(actions, actions.c.plan_id == plans.c.plan_id).subquery("pp"))
    rows = {b: (n, int(w), int(lo)) for b, n, w, lo in s.execute(
        select(per_plan.c.bucket, func.count(),
               func.sum(case((per_plan.c.outcome == "won", 1), else_=0)),
               func.sum(case((per_plan.c.outcome == "lost", 1), else_=0)))
        .group_by(per_plan.c.bucket))}
    out = []
    for _lo, _hi, label in ENGAGEMENT_BUCKETS:
        n, w, lo = rows.get(label, (0, 0, 0))
        out.append({"touches": label, "plans": n, "won": w, "lost": lo, "open": n - w - lo,
                    "win_rate": _rate(w, lo)})
    return {"buckets": out}


# ---- health and forecast ---------------------------------------------------------------------


def health_by_plan(s: Session, tenant_id: str, plan_ids: list[str] | None, today: date,
                   now: datetime | None = None) -> dict[str, str]:
    """plan id -> on_track | at_risk | stalled (three grouped queries, any number of plans)."""
    now = now or clock.now()
    is_open = Milestone.status != "done"
    where = [Milestone.tenant_id == tenant_id]
    plan_where = [Plan.tenant_id == tenant_id, Plan.archived_at.is_(None)]
    if plan_ids is not None:
        where.append(Milestone.plan_id.in_(plan_ids))
        plan_where.append(Plan.id.in_(plan_ids))
    late = s.execute(
        select(Milestone.plan_id,
               func.max(case((is_open & (Milestone.due_date <= today - timedelta(
                   days=STALLED_OVERDUE_DAYS)), 1), else_=0)),
               func.max(case((is_open & ((Milestone.due_date < today)
                                         | Milestone.risk.in_(("at_risk", "off_track"))), 1),
                             else_=0)))
        .where(*where).group_by(Milestone.plan_id)).all()
    late = {p: (bool(stalled), bool(risky)) for p, stalled, risky in late}
    seen = _last_buyer_seen(s, tenant_id, plan_ids)
    out = {}
    for plan_id, created in s.execute(select(Plan.id, Plan.created_at).where(*plan_where)):
        stalled, risky = late.get(plan_id, (False, False))
        quiet = now - (seen.get(plan_id) or _aware(created))
        if stalled or quiet >= timedelta(days=QUIET_DAYS):
            out[plan_id] = "stalled"
        elif risky or quiet >= timedelta(days=AT_RISK_QUIET_DAYS):
            out[plan_id] = "at_risk"
        else:
            out[plan_id] = "on_track"
    return out


def _last_buyer_seen(s: Session, tenant_id: str, plan_ids: list[str] | None) -> dict:
    acts = select(Activity.plan_id, func.max(Activity.at).label("at")).where(
        Activity.tenant_id == tenant_id, Activity.actor.like("buyer:%"))
    views = select(BuyerView.plan_id, func.max(BuyerView.last_seen).label("at")).where(
        BuyerView.tenant_id == tenant_id)
    if plan_ids is not None:
        acts = acts.where(Activity.plan_id.in_(plan_ids))
        views = views.where(BuyerView.plan_id.in_(plan_ids))
    both = acts.group_by(Activity.plan_id).union_all(views.group_by(BuyerView.plan_id)).subquery()
    return {p: _aware(at) for p, at in s.execute(
        select(both.c.plan_id, func.max(both.c.at)).group_by(both.c.plan_id))}


def history_rates(s: Session, tenant_id: str) -> dict:
    """The tenant's closed-plan history the forecast rests on: {"titles": {title: [won, lost]},
    "won", "lost"}; the per-tenant cache (webapp/rollups.py) when fresh, else from the rollup."""
    cached = rollups.cached_rates(s, tenant_id)
    return cached if cached is not None else _history_rates(s, tenant_id)


def _history_rates(s: Session, tenant_id: str) -> dict:
    data = win_rates(s, Filters(tenant_id))
    return {"titles": {m["title"]: [m["won"], m["lost"]] for m in data["milestones"]
                       if m["won"] or m["lost"]},
            "won": data["won"], "lost": data["lost"]}


def refresh_win_rates(s: Session, tenant_id: str | None = None) -> int:
    """Recompute the cached history of every tenant with CRM deals (the hourly job, which
    commits it on its own before queuing pushes). Returns tenants refreshed."""
    tenants = [tenant_id] if tenant_id else _crm_tenants(s)
    for tenant in tenants:
        rollups.store_rates(s, tenant, lambda tenant=tenant: _history_rates(s, tenant))
    return len(tenants)


def _crm_tenants(s: Session) -> list[str]:
    return [t for (t,) in s.execute(select(Mirror.tenant_id).distinct())]


def forecast(s: Session, tenant_id: str, plan_ids: list[str] | None = None,
             open_only: bool = False) -> dict[str, dict]:
    """plan id -> {"outcome", "furthest", "win_probability" (0..1), "reached", "won", "p_stage"}.

    History is the tenant's closed plans (no filters); won plans answer 1, lost 0."""
    history = history_rates(s, tenant_id)
    base_won = history["won"]
    baseline = _rate(base_won, history["lost"])
    plans = _plans(s, Filters(tenant_id), plan_ids)
    query = select(plans.c.plan_id, plans.c.outcome, plans.c.p_stage, plans.c.furthest_title)
    out = {}
    for plan_id, outcome, p_stage, title in s.execute(
            query.where(plans.c.outcome == "open") if open_only else query):
        won, lost = history["titles"].get(title, (0, 0)) if title else (base_won, history["lost"])
        n = won + lost
        prior = p_stage if p_stage is not None else (baseline if baseline is not None else 0.5)
        p = (won + MIN_SAMPLE * prior) / (n + MIN_SAMPLE)
        if outcome != "open":
            p = 1.0 if outcome == "won" else 0.0
        out[plan_id] = {"outcome": outcome, "furthest": title, "reached": n, "won": won,
                        "p_stage": prior, "win_probability": round(p, 4)}
    return out


def summary_fields(s: Session, plan: Plan, today: date, cov: dict | None = None) -> dict:
    """The CRM summary values analytics adds (sync.summary_properties): strings, as the rest."""
    health = health_by_plan(s, plan.tenant_id, [plan.id], today).get(plan.id, "on_track")
    p = forecast(s, plan.tenant_id, [plan.id]).get(plan.id)
    return {"health": health,
            "win_probability": str(round(100 * p["win_probability"])) if p else "",
            "coverage": coverage_text(cov or coverage(s, plan.tenant_id, plan.id))}


def coverage_text(cov: dict) -> str:
    """Coverage in one line for a CRM text field (the LWC shows it): at most ~150 characters."""
    groups = {"Engaged": [], "Quiet": [], "Not named": []}
    for r in cov["roles"]:
        kind = "Engaged" if r["engaged"] else "Quiet" if r["present"] else "Not named"
        groups[kind].append(r["label"])
    return f"Last {cov['days']} days: " + "; ".join(
        f"{kind}: {', '.join(labels)}" for kind, labels in groups.items() if labels)


def card_fields(s: Session, plan: Plan, today: date) -> dict:
    """What the card and the editor show next to the plan: health, forecast, coverage."""
    cov = coverage(s, plan.tenant_id, plan.id)
    fields = summary_fields(s, plan, today, cov)
    return {"health": fields["health"],
            "win_probability": int(fields["win_probability"]) if fields["win_probability"] else None,
            "coverage": cov}


def refresh_summaries(s: Session, tenant_id: str | None = None, today: date | None = None) -> int:
    """Queue a push for each mirrored plan whose health or win probability differs from what
    the CRM last got (mirrors.pushed_deal); unchanged plans cost nothing. Returns plans queued.

    Run by the clock (jobs.CLOCK) so that history changes (a deal closing moves every open
    plan's forecast) and the passing days (a quiet buyer makes a plan stalled) reach the CRM."""
    from . import outbox, web

    today = today or web.today()
    tenants = [tenant_id] if tenant_id else [t for (t,) in s.execute(
        select(Mirror.tenant_id).distinct())]
    queued = 0
    for tenant in tenants:
        health = health_by_plan(s, tenant, None, today)
        probabilities = forecast(s, tenant)
        for plan_id, pushed in s.execute(select(Mirror.plan_id, Mirror.pushed_deal)
                                          .where(Mirror.tenant_id == tenant)):
            if plan_id not in health:
                continue
            p = probabilities.get(plan_id)
            want = {"health": health[plan_id],
                    "win_probability": str(round(100 * p["win_probability"])) if p else ""}
            last = ((pushed or {}).get("properties") or {})
            if any(last.get(k) != v for k, v in want.items()):
                outbox.record(s, s.get(Plan, plan_id))
                queued += 1
    return queued


# ---- presentation helpers ------------------------------------------------------------------


CHARTS = ("funnel", "win-rates", "durations", "slips", "engagement")


def figures(s: Session, f: Filters, chart: str) -> dict:
    if chart in ("funnel", "win-rates"):
        data = win_rates(s, f)
        if chart == "funnel":
            return {"plans": data["plans"],
                    "milestones": [{"title": m["title"], "reached": m["reached"]}
                                   for m in data["milestones"]]}
        return data
    if chart == "durations":
        return durations(s, f)
    if chart == "slips":
        return slips(s, f)
    if chart == "engagement":
        return engagement_outcomes(s, f)
    raise KeyError(chart)


def csv_rows(chart: str, data: dict) -> list[dict]:
    """One flat table per chart (durations: milestones then stages, with a `kind` column)."""
    if chart == "durations":
        return ([{"kind": "milestone", "name": r["title"], **{k: v for k, v in r.items()
                                                               if k != "title"}}
                 for r in data["milestones"]] +
                [{"kind": "stage", "name": r["stage"], **{k: v for k, v in r.items()
                                                          if k != "stage"}}
                 for r in data["stages"]])
    if chart == "engagement":
        return data["buckets"]
    return data["milestones"]


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\r\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return out.getvalue()


def _csv_cell(value):
    # Spreadsheet formula injection: a title starting with = + - @ is written as text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


def _aware(value):
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return clock.aware(value) if isinstance(value, datetime) else value


__all__ = ["Filters", "coverage", "durations", "engagement", "engagement_outcomes", "forecast",
           "health_by_plan", "record_view", "refresh_summaries", "slips", "summary_fields",
           "win_rates"]
