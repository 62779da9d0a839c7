"""The analytics rollup: per-plan and per-milestone figures kept on write, so that the charts
(webapp/analytics.py) aggregate two narrow tables instead of ordering every milestone of a
tenant with window functions on each request.

- plan_rollups: a plan's outcome and CRM stage probability (the deal's stage looked up in the
  installation's cached pipelines) and its furthest milestone reached (step and title).
- milestone_steps: each milestone's step in plan order (stage, then position), the days it
  took once done (since the previous completion, or the plan's creation), whether its stage
  is complete (the first timed milestone of a complete stage carries the stage's days), and,
  copied from the plan, whether the plan reached it and the plan's outcome.
- win_rate_cache: a tenant's closed-plan history for the forecast (won / lost per milestone
  reached); dropped in the transaction that changes a closed plan or an outcome, refilled by
  the hourly refresh_summaries job, computed from the rollup on a miss.

Kept by session events, in the writer's transaction: after each flush the plans whose
milestones, stages, deal (mirror) or creation time changed are recomputed (a handful of rows
each); an installation whose cached pipelines change has its plans' outcomes recomputed.
Core bulk inserts bypass the events: their callers call refresh() (webapp/history.py), and
the migration backfills every plan.
"""
from __future__ import annotations

from sqlalchemy import bindparam, event, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import clock
from .models import (
    Installation,
    Milestone,
    MilestoneStep,
    Mirror,
    Plan,
    PlanRollup,
    Stage,
    WinRateCache,
)

CHUNK = 500  # plan ids per statement (SQLite's bound-parameter limit)
_PLANS, _INSTALLATIONS, _STALE = "rollups.plans", "rollups.installations", "rollups.stale_tenants"


def stage_outcomes(settings: dict | None) -> dict[tuple[str, str], tuple[str, float | None]]:
    """(pipeline, stage id) -> (won | lost | open, probability) from cached pipelines."""
    out = {}
    for pipeline, stages in ((settings or {}).get("pipelines") or {}).items():
        for st in stages:
            outcome = ("won" if st.get("won") else "lost") if st.get("closed") else "open"
            prob = st.get("probability")
            out[(str(pipeline), str(st.get("id")))] = (outcome, float(prob) if prob is not None
                                                       else None)
    return out


def refresh(s: Session, plan_ids) -> set[str]:
    """Recompute the rollup of these plans (gone plans are skipped). Returns the tenants whose
    closed-plan history changed (their cached win rates are stale)."""
    stale: set[str] = set()
    ids = sorted(set(plan_ids))
    conn = s.connection()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        # The plans' rows locked first (in id order): two writers of one plan recompute its
        # rollup one after the other, the second from what the first committed.
        plans = conn.execute(
            select(Plan.id, Plan.tenant_id, Plan.created_at, Mirror.installation_id,
                   Mirror.deal_pipeline, Mirror.deal_stage)
            .outerjoin(Mirror, Mirror.plan_id == Plan.id).where(Plan.id.in_(chunk))
            .order_by(Plan.id).with_for_update(of=Plan)).all()
        old = {row.plan_id: row for row in conn.execute(
            select(PlanRollup).where(PlanRollup.plan_id.in_(chunk)))}
        milestones = conn.execute(
            select(Milestone.id, Milestone.plan_id, Milestone.title, Milestone.status,
                   Milestone.completed_at, Stage.name, Stage.position, Milestone.position)
            .join(Stage, Stage.id == Milestone.stage_id)
            .where(Milestone.plan_id.in_(chunk))).all()
        by_plan: dict[str, list] = {}
        for m in milestones:
            by_plan.setdefault(m.plan_id, []).append(m)
        outcomes = _Outcomes(conn)
        rollups, steps = [], []
        for p in plans:
            outcome, p_stage = outcomes.of(p.installation_id, p.deal_pipeline, p.deal_stage)
            furthest, title = _steps(p, by_plan.get(p.id, []), outcome, steps)
            rollups.append({"plan_id": p.id, "tenant_id": p.tenant_id, "outcome": outcome,
                            "p_stage": p_stage, "furthest_step": furthest,
                            "furthest_title": title})
            before = old.get(p.id)
            if before is None or (before.outcome, before.furthest_title) != (outcome, title):
                if outcome != "open" or (before is not None and before.outcome != "open"):
                    stale.add(p.tenant_id)
        # Upserts: rows of deleted milestones and plans go by their foreign keys' cascade.
        if rollups:
            conn.execute(_upsert_rows(conn, PlanRollup, "plan_id"), rollups)
        if steps:
            conn.execute(_upsert_rows(conn, MilestoneStep, "milestone_id"), steps)
    return stale


def _upsert_rows(conn, model, key: str):
    statement = _insert(conn.dialect.name, model)
    return statement.on_conflict_do_update(
        index_elements=[key], set_={c.name: statement.excluded[c.name]
                                    for c in model.__table__.columns if c.name != key})


def _steps(plan, milestones: list, outcome: str, out: list) -> tuple[int, str | None]:
    """Append the plan's milestone_steps rows to `out`; return (furthest step, its title)."""
    milestones = sorted(milestones, key=lambda m: (m[6], m[7], m.id))  # stage, position
    complete: dict[str, bool] = {}
    for m in milestones:
        complete[m.name] = complete.get(m.name, True) and m.status == "done"
    previous = clock.aware(plan.created_at)
    furthest, title = 0, None
    rows = []
    for step, m in enumerate(milestones, start=1):
        days = None
        if m.status == "done":
            furthest, title = step, m.title
            if m.completed_at is not None:
                done = clock.aware(m.completed_at)
                days = max(0.0, (done - previous).total_seconds() / 86400)
                previous = done
        rows.append({"milestone_id": m.id, "tenant_id": plan.tenant_id, "plan_id": plan.id,
                     "title": m.title, "stage": m.name, "step": step, "days": days,
                     "stage_complete": complete[m.name], "outcome": outcome})
    first: dict[str, dict] = {}  # stage -> its first timed row, which carries the stage's days
    for row in rows:
        row["reached"] = row["step"] <= furthest
        row["stage_days"] = None
        if row["stage_complete"] and row["days"] is not None:
            head = first.setdefault(row["stage"], row)
            head["stage_days"] = (head["stage_days"] or 0.0) + row["days"]
    out.extend(rows)
    return furthest, title


class _Outcomes:
    """Installation settings read once per refresh."""

    def __init__(self, conn):
        self.conn, self.cache = conn, {}

    def of(self, installation_id, pipeline, stage) -> tuple[str, float | None]:
        if installation_id is None:
            return "open", None
        if installation_id not in self.cache:
            self.cache[installation_id] = stage_outcomes(self.conn.scalar(
                select(Installation.settings).where(Installation.id == installation_id)))
        return self.cache[installation_id].get((str(pipeline), str(stage)), ("open", None))


def refresh_outcomes(s: Session, installation_id: str) -> set[str]:
    """The installation's cached pipelines changed: recompute its plans' outcomes only."""
    conn = s.connection()
    outcomes = _Outcomes(conn)
    stale = set()
    rows = conn.execute(
        select(PlanRollup.plan_id, PlanRollup.tenant_id, PlanRollup.outcome, PlanRollup.p_stage,
               Mirror.deal_pipeline, Mirror.deal_stage)
        .join(Mirror, Mirror.plan_id == PlanRollup.plan_id)
        .where(Mirror.installation_id == installation_id)).all()
    changed = []
    for r in rows:
        outcome, p_stage = outcomes.of(installation_id, r.deal_pipeline, r.deal_stage)
        if (outcome, p_stage) != (r.outcome, r.p_stage):
            changed.append({"pid": r.plan_id, "o": outcome, "ps": p_stage})
            if outcome != r.outcome:
                stale.add(r.tenant_id)
    if changed:
        conn.execute(update(PlanRollup).where(PlanRollup.plan_id == bindparam("pid"))
                     .values(outcome=bindparam("o"), p_stage=bindparam("ps")), changed)
        conn.execute(update(MilestoneStep).where(MilestoneStep.plan_id == bindparam("pid"))
                     .values(outcome=bindparam("o")), [{"pid": c["pid"], "o": c["o"]}
                                                        for c in changed])
    return stale


# ---- the per-tenant win-rate cache -----------------------------------------------------


def cached_rates(s: Session, tenant_id: str) -> dict | None:
    """The tenant's cached history, or None (stale, never computed, or changed in this
    transaction and not yet committed)."""
    if tenant_id in s.info.get(_STALE, ()):
        return None
    return s.scalar(select(WinRateCache.rates).where(WinRateCache.tenant_id == tenant_id))


def store_rates(s: Session, tenant_id: str, compute) -> dict:
    """Recompute and cache (the hourly job). An invalidation committed meanwhile wins: the
    row is written only if its generation is still the one read before computing."""
    generation = s.scalar(select(WinRateCache.generation)
                          .where(WinRateCache.tenant_id == tenant_id))
    rates = compute()
    if generation is None:
        s.execute(_upsert(s, tenant_id, rates, 0).on_conflict_do_nothing(
            index_elements=["tenant_id"]))
    else:
        s.execute(update(WinRateCache)
                  .where(WinRateCache.tenant_id == tenant_id,
                         WinRateCache.generation == generation)
                  .values(rates=rates, computed_at=clock.now()))
    return rates


def invalidate(s: Session, tenants) -> None:
    """Drop the tenants' cached win rates (same transaction as the change)."""
    for tenant_id in sorted(tenants):  # one lock order for every writer
        statement = _upsert(s, tenant_id, None, 1)
        s.connection().execute(statement.on_conflict_do_update(
            index_elements=["tenant_id"],
            set_={"generation": WinRateCache.generation + 1, "rates": None,
                  "computed_at": None}))


def _insert(dialect: str, model):
    return (postgresql if dialect == "postgresql" else sqlite).insert(model)


def _upsert(s: Session, tenant_id: str, rates: dict | None, generation: int):
    return _insert(s.get_bind().dialect.name, WinRateCache).values(
        tenant_id=tenant_id, generation=generation, rates=rates,
        computed_at=clock.now() if rates is not None else None)


# ---- session events: the rollup follows every ORM write -------------------------------


_MILESTONE_FIELDS = ("status", "completed_at", "position", "stage_id", "title")


@event.listens_for(Session, "after_flush")
def _collect(s: Session, _context) -> None:
    plans: set = s.info.setdefault(_PLANS, set())
    installations: set = s.info.setdefault(_INSTALLATIONS, set())
    stale: set = s.info.setdefault(_STALE, set())
    for obj in s.new:
        if isinstance(obj, (Milestone, Stage, Mirror)):
            plans.add(obj.plan_id)
        elif isinstance(obj, Plan):
            plans.add(obj.id)
    for obj in s.dirty:
        if isinstance(obj, Milestone) and _changed(obj, _MILESTONE_FIELDS):
            plans.add(obj.plan_id)
        elif isinstance(obj, Stage) and _changed(obj, ("name", "position")):
            plans.add(obj.plan_id)
        elif isinstance(obj, Mirror) and _changed(
                obj, ("deal_stage", "deal_pipeline", "installation_id")):
            plans.add(obj.plan_id)
        elif isinstance(obj, Plan) and _changed(obj, ("created_at", "archived_at")):
            plans.add(obj.id)
            if _changed(obj, ("archived_at",)):
                stale.add(obj.tenant_id)  # archived plans leave the history
        elif isinstance(obj, Installation) and _changed(obj, ("settings",)):
            installations.add(obj.id)
    for obj in s.deleted:
        if isinstance(obj, (Milestone, Stage, Mirror)):
            plans.add(obj.plan_id)
        elif isinstance(obj, Plan):
            stale.add(obj.tenant_id)


def _changed(obj, fields) -> bool:
    state = inspect(obj)
    return any(state.attrs[f].history.has_changes() for f in fields)


@event.listens_for(Session, "after_flush_postexec")
def _apply(s: Session, _context) -> None:
    plans, installations = s.info.pop(_PLANS, set()), s.info.pop(_INSTALLATIONS, set())
    stale: set = s.info.setdefault(_STALE, set())
    if plans:
        stale |= refresh(s, plans)
    for installation_id in sorted(installations):
        stale |= refresh_outcomes(s, installation_id)


@event.listens_for(Session, "before_commit")
def _invalidate(s: Session) -> None:
    if s.new or s.dirty or s.deleted:
        s.flush()  # the last changes' rollup, before the cache is dropped
    stale = s.info.pop(_STALE, set())
    if stale:
        invalidate(s, stale)  # the last lock the transaction takes: no lock-order cycles


@event.listens_for(Session, "after_rollback")
def _forget(s: Session) -> None:
    for key in (_PLANS, _INSTALLATIONS, _STALE):
        s.info.pop(key, None)


def backfill(s: Session) -> int:
    """Every plan's rollup (the migration; also repairs a drifted one). Returns plans done."""
    ids = list(s.scalars(select(Plan.id)))
    refresh(s, ids)
    return len(ids)
