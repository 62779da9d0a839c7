"""The CRM-neutral domain: commands on plans and the figures derived from them.

Each command changes rows in the caller's session and leaves the commit to
the caller, so one request (or job) is one transaction. Every change to a
plan goes through `touch`, which bumps the plan's version (optimistic
locking), writes the activity log and records the outbox row (outbox.record)
in the same transaction: the single place where the CRM mirror learns that
the plan must be pushed. Other domain modules (sharing.py, sync.py) call
`touch` for their own changes. No CRM is named here.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from . import clock, dependencies, outbox, plan_templates
from .domain_errors import Conflict, Invalid, LimitReached, NotFound, VersionConflict
from .models import Activity, Milestone, Plan, Slip, Stage, Stakeholder, new_id
from .schemas import (
    MilestoneIn,
    MilestonePatch,
    PlanCreate,
    PlanPatch,
    StageIn,
    StagePatch,
    StakeholderIn,
    StakeholderPatch,
)

RISK_ORDER = {"on_track": 0, "at_risk": 1, "off_track": 2}

# What one plan may hold (README "Limits"). A plan is read whole by the buyer page, the
# editor and the card: without a bound, 10,000 milestones made a 61 MB editor page.
# Resources and the stakeholders of a new plan are bounded by their schemas (schemas.py).
LIMITS = {
    "milestones_per_plan": (100, "milestones"),
    "stages_per_plan": (20, "stages"),
    "stakeholders_per_plan": (100, "stakeholders"),
    "live_share_links_per_plan": (50, "live buyer links"),
    "comments_per_milestone": (200, "comments on one milestone"),
}


def check_limit(name: str, count: int) -> None:
    """Refuse a command that would take a count past its limit (LimitReached, a 422)."""
    maximum, what = LIMITS[name]
    if count > maximum:
        raise LimitReached(name, maximum, what)


# ---- loading -------------------------------------------------------------


def get_plan(s: Session, tenant_id: str, plan_id: str, *, full: bool = True) -> Plan:
    query = select(Plan).where(Plan.tenant_id == tenant_id, Plan.id == plan_id)
    if full:
        query = query.options(
            selectinload(Plan.stages).selectinload(Stage.milestones),
            selectinload(Plan.stakeholders),
        )
    plan = s.scalars(query).one_or_none()
    if plan is None:
        raise NotFound("No plan with this id.")
    return plan


def _get_child(s: Session, model, tenant_id: str, child_id: str, what: str):
    row = s.scalars(select(model).where(model.tenant_id == tenant_id, model.id == child_id)).one_or_none()
    if row is None:
        raise NotFound(f"No {what} with this id.")
    return row


def get_milestone(s: Session, tenant_id: str, milestone_id: str) -> Milestone:
    return _get_child(s, Milestone, tenant_id, milestone_id, "milestone")


def get_stage(s: Session, tenant_id: str, stage_id: str) -> Stage:
    return _get_child(s, Stage, tenant_id, stage_id, "stage")


def get_stakeholder(s: Session, tenant_id: str, stakeholder_id: str) -> Stakeholder:
    return _get_child(s, Stakeholder, tenant_id, stakeholder_id, "stakeholder")


def list_plans(s: Session, tenant_id: str, *, provider=None, account_id=None, deal_id=None,
               limit: int = 50, offset: int = 0) -> list[Plan]:
    query = select(Plan).where(Plan.tenant_id == tenant_id)
    for column, value in ((Plan.deal_provider, provider), (Plan.deal_account_id, account_id),
                          (Plan.deal_id, deal_id)):
        if value is not None:
            query = query.where(column == value)
    query = query.order_by(Plan.updated_at.desc(), Plan.id).limit(limit).offset(offset)
    query = query.options(selectinload(Plan.stages).selectinload(Stage.milestones))
    return list(s.scalars(query))


def check_version(expected: int | None, actual: int) -> None:
    if expected is not None and expected != actual:
        raise VersionConflict(expected, actual)


def _flush_versioned(s: Session, row, expected: int | None) -> None:
    """Send the pending UPDATEs now, each `WHERE version = <the version we read>`.

    check_version compared with the row as this session read it; a concurrent writer
    may have committed since. The database decides: when the UPDATE matches no row,
    someone else won, and this writer gets a VersionConflict naming the version now
    committed (read on a fresh connection: this session's transaction is dead and the
    caller rolls it back).
    """
    model, row_id, loaded = type(row), row.id, row.version  # the row expires if the flush fails
    try:
        s.flush()
    except StaleDataError:
        with s.get_bind().connect() as conn:
            current = conn.scalar(select(model.version).where(model.id == row_id))
        if current is None:
            raise NotFound("This record was deleted meanwhile.") from None
        raise VersionConflict(loaded if expected is None else expected, current) from None


# ---- derived figures ----------------------------------------------------


def ordered_milestones(plan: Plan) -> list[Milestone]:
    return [m for stage in plan.stages for m in stage.milestones]


def is_overdue(m: Milestone, today: date) -> bool:
    return m.status != "done" and m.due_date is not None and m.due_date < today


def effective_risk(m: Milestone, today: date) -> str:
    if is_overdue(m, today) and RISK_ORDER[m.risk] < RISK_ORDER["at_risk"]:
        return "at_risk"
    return m.risk


def derive(milestones: list[Milestone], today: date) -> dict:
    """Progress, overall risk, next milestone and overdue count of a plan.

    Overall risk is the worst risk of the open milestones, where an overdue
    milestone counts as at risk at least. The next milestone is the open one
    due soonest (undated ones after dated ones, plan order breaking ties).
    """
    total = len(milestones)
    done = sum(1 for m in milestones if m.status == "done")
    open_ = [m for m in milestones if m.status != "done"]
    risk = max((effective_risk(m, today) for m in open_), key=RISK_ORDER.get, default="on_track")
    upcoming = sorted(enumerate(open_), key=lambda im: (im[1].due_date is None, im[1].due_date or date.max, im[0]))
    return {
        "progress": {"done": done, "total": total, "percent": round(100 * done / total) if total else 0},
        "risk": risk,
        "next_milestone": upcoming[0][1] if upcoming else None,
        "overdue_count": sum(1 for m in open_ if is_overdue(m, today)),
    }


def slip_figures(s: Session, plan: Plan) -> tuple[int, int]:
    """(slip count, days slipped): due dates moved later, and by how much in total."""
    rows = s.execute(select(Slip.old_date, Slip.new_date).where(
        Slip.tenant_id == plan.tenant_id, Slip.plan_id == plan.id)).all()
    deltas = [(new - old).days for old, new in rows if old and new and new > old]
    return len(deltas), sum(deltas)


# ---- commands ------------------------------------------------------------


def _jsonable(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def touch(s: Session, plan: Plan, actor: str, action: str, subject_id=None, detail=None,
          expected: int | None = None) -> None:
    """Record a change of `plan`: new version, an activity entry, and the outbox row.

    When the plan's own fields changed, its UPDATE is conditional on the version read
    (a concurrent plan edit makes this one a VersionConflict). When only a child
    changed (whose own row was version-checked), the plan's version is bumped
    unconditionally in SQL: two people editing two different milestones both win.
    """
    now = clock.now()
    if s.is_modified(plan, include_collections=False):
        plan.updated_at = now  # also bumps plan.version (version_id_col)
        _flush_versioned(s, plan, expected)
    elif plan.id is not None:
        table = Plan.__table__
        version = s.execute(update(table).where(table.c.id == plan.id).values(
            version=table.c.version + 1, updated_at=now).returning(table.c.version)).scalar_one()
        set_committed_value(plan, "version", version)
        set_committed_value(plan, "updated_at", now)
    s.add(Activity(tenant_id=plan.tenant_id, plan_id=plan.id, actor=actor, action=action,
                   subject_id=subject_id, detail=_jsonable(detail or {})))
    outbox.record(s, plan)
    from . import notifications, timeline  # a buyer's action alerts the rep, in this same transaction

    timeline.on_change(s, plan, actor, action, subject_id, detail or {})  # queued for the CRM's timeline
    notifications.on_change(s, plan, actor, action, subject_id, detail or {})
    from . import webhooks  # outgoing webhooks: queued in this same transaction

    webhooks.on_change(s, plan, actor, action, subject_id, detail or {})


def _apply(row, changes: dict) -> dict:
    """Set attributes; return {field: [old, new]} for what really changed."""
    diff = {}
    for field, value in changes.items():
        old = getattr(row, field)
        if old != value:
            diff[field] = [old, value]
            setattr(row, field, value)
    return diff


def default_title(data: PlanCreate) -> str:
    """A new plan is named like its deal unless the rep typed a title."""
    return data.title or (data.deal and data.deal.name) or "Mutual action plan"


def create_plan(s: Session, tenant_id: str, data: PlanCreate, actor: str, today: date,
                plan_id: str | None = None) -> Plan:
    """plan_id: the id to use (a plan born in a CRM keeps the UUID its record carries)."""
    deal = data.deal
    if deal is not None:
        existing = s.scalars(select(Plan.id).where(
            Plan.tenant_id == tenant_id, Plan.deal_provider == deal.provider,
            Plan.deal_account_id == deal.account_id, Plan.deal_id == deal.deal_id)).first()
        if existing:
            raise Conflict("This deal already has a plan.", plan_id=existing)
    start = data.start_date or today
    constraints = data.constraints.model_dump(mode="json")
    go_live = data.go_live_date or data.constraints.go_live_date
    plan = Plan(
        id=plan_id or new_id(), tenant_id=tenant_id, title=default_title(data),
        value_summary=data.value_summary,
        objectives=data.objectives.model_dump(mode="json"), constraints=constraints,
        resources=[r.model_dump(mode="json") for r in data.resources], template=data.template,
        start_date=start, deal_provider=deal and deal.provider,
        deal_account_id=deal and deal.account_id, deal_id=deal and deal.deal_id,
        deal_name=deal and deal.name or None,
    )
    s.add(plan)
    if data.template:
        go_live = _add_template(plan, plan_templates.TEMPLATES[data.template], start, go_live)
    if go_live:
        plan.constraints = {**constraints, "go_live_date": go_live.isoformat()}
    for i, person in enumerate(data.stakeholders):
        plan.stakeholders.append(Stakeholder(tenant_id=tenant_id, position=i, **person.model_dump()))
    _check_plan_size(plan)
    s.flush()
    touch(s, plan, actor, "plan.created", plan.id, {"template": data.template})
    return plan


def _check_plan_size(plan: Plan) -> None:
    check_limit("stages_per_plan", len(plan.stages))
    check_limit("milestones_per_plan", sum(len(st.milestones) for st in plan.stages))


def _add_template(plan: Plan, template: dict, start: date, go_live: date | None) -> date:
    """Append the template's stages and milestones after the plan's own; returns the
    go-live date the template's dates were computed from."""
    go_live, stages = plan_templates.expand_template(template, start, go_live)
    offset = len(plan.stages)
    for si, stage in enumerate(stages):
        st = Stage(tenant_id=plan.tenant_id, name=stage["name"], position=offset + si)
        plan.stages.append(st)
        for mi, fields in enumerate(stage["milestones"]):
            st.milestones.append(
                Milestone(tenant_id=plan.tenant_id, plan=plan, position=mi, **fields))
    return go_live


def create_from_template(s: Session, tenant_id: str, data: PlanCreate, key: str, actor: str,
                         today: date) -> Plan:
    """A new plan from a built-in template or one of the tenant's own (by id), checked first so
    that an unknown key creates nothing."""
    if key in plan_templates.TEMPLATES:
        return create_plan(s, tenant_id, data.model_copy(update={"template": key}), actor, today)
    if plan_templates.resolve(s, tenant_id, key) is None:
        raise Invalid("template", "pick one of the templates")
    plan = create_plan(s, tenant_id, data.model_copy(update={"template": None}), actor, today)
    return apply_template(s, plan, key, actor, today)


def apply_template(s: Session, plan: Plan, key: str, actor: str, today: date) -> Plan:
    """Append a template's stages and milestones to an existing plan (one activity entry).

    Dates count from the plan's start date (today when it has none) and its go-live
    date; a plan without a go-live date gets the template's default one.
    """
    template = plan_templates.resolve(s, plan.tenant_id, key)
    if template is None:
        raise Invalid("template", "pick one of the templates")
    constraints = plan.constraints or {}
    go_live = constraints.get("go_live_date")
    go_live = date.fromisoformat(go_live) if go_live else None
    new_go_live = _add_template(plan, template, plan.start_date or today, go_live)
    if go_live is None and new_go_live:
        plan.constraints = {**constraints, "go_live_date": new_go_live.isoformat()}
    if not plan.template:
        plan.template = key
    _check_plan_size(plan)
    s.flush()
    touch(s, plan, actor, "template.applied", plan.id, {"template": key})
    return plan


def update_plan(s: Session, plan: Plan, patch: PlanPatch, actor: str) -> Plan:
    check_version(patch.version, plan.version)
    changes = {}
    for field in patch.model_fields_set - {"version"}:
        value = getattr(patch, field)
        if field in ("objectives", "constraints"):
            value = value.model_dump(mode="json")
        elif field == "resources":
            value = [r.model_dump(mode="json") for r in value]
        changes[field] = value
    diff = _apply(plan, changes)
    if diff:
        touch(s, plan, actor, "plan.updated", plan.id, diff, expected=patch.version)
    return plan


def delete_plan(s: Session, plan: Plan) -> None:
    """Delete the plan; its CRM records go too (an outbox row carries what the CRM holds)."""
    from .models import Mirror

    state = s.get(Mirror, plan.id)
    if plan.deal_id and state is not None:
        outbox.record_removal(s, plan, removal_of(plan, state))
    s.delete(plan)


def removal_of(plan: Plan, state) -> dict:
    """What the CRM holds of a plan (the outbox payload of its removal): the deal, the
    milestones ever pushed or still here, and the CRM record ids the mirror knows."""
    milestones = set(state.pushed_hashes or {}) | {m.id for m in plan.milestones}
    return {"deal_id": plan.deal_id, "milestones": sorted(milestones - {plan.id}),
            "remote_ids": {k: v for k, v in (state.remote_ids or {}).items() if isinstance(v, str)}}


# stages

def _place(items: list, item, position: int | None) -> None:
    """Move `item` to `position` in `items` (appending when None) and renumber."""
    if item in items:
        items.remove(item)
    position = len(items) if position is None else min(position, len(items))
    items.insert(position, item)
    for i, row in enumerate(items):
        row.position = i


def add_stage(s: Session, plan: Plan, data: StageIn, actor: str) -> Stage:
    check_limit("stages_per_plan", len(plan.stages) + 1)
    stage = Stage(tenant_id=plan.tenant_id, plan=plan, name=data.name, position=0)
    stages = list(plan.stages)
    _place(stages, stage, data.position)
    s.add(stage)
    s.flush()
    touch(s, plan, actor, "stage.created", stage.id, {"name": stage.name})
    return stage


def update_stage(s: Session, stage: Stage, patch: StagePatch, actor: str) -> Stage:
    check_version(patch.version, stage.version)
    plan = stage.plan
    diff = {}
    with s.no_autoflush:  # no UPDATE before the version is bumped: _flush_versioned sends it
        if "name" in patch.model_fields_set:
            diff |= _apply(stage, {"name": patch.name})
        if "position" in patch.model_fields_set and patch.position != stage.position:
            diff["position"] = [stage.position, patch.position]
            _place(list(plan.stages), stage, patch.position)
    if diff:
        stage.version += 1
        _flush_versioned(s, stage, patch.version)
        touch(s, plan, actor, "stage.updated", stage.id, diff)
    return stage


def delete_stage(s: Session, stage: Stage, actor: str) -> None:
    plan = stage.plan
    if stage.milestones:
        raise Conflict("Move or delete this stage's milestones first.")
    rest = [st for st in plan.stages if st is not stage]
    s.delete(stage)
    for i, row in enumerate(rest):
        row.position = i
    touch(s, plan, actor, "stage.deleted", stage.id, {"name": stage.name})


# milestones

def _count(s: Session, model, plan: Plan) -> int:
    """Rows of `model` in `plan`, counted in the database (not the loaded collection)."""
    return s.scalar(select(func.count()).select_from(model).where(
        model.tenant_id == plan.tenant_id, model.plan_id == plan.id))


def _stage_of_plan(s: Session, plan: Plan, stage_id: str) -> Stage:
    stage = next((st for st in plan.stages if st.id == stage_id), None)
    if stage is None:
        raise Invalid("stage_id", "no stage with this id in this plan")
    return stage


def add_milestone(s: Session, plan: Plan, data: MilestoneIn, actor: str,
                  milestone_id: str | None = None) -> Milestone:
    """milestone_id: as for create_plan (a milestone born in a CRM keeps its record's UUID)."""
    check_limit("milestones_per_plan", _count(s, Milestone, plan) + 1)
    stage = _stage_of_plan(s, plan, data.stage_id)
    fields = data.model_dump(exclude={"stage_id", "position"})
    fields["depends_on"] = dependencies.check(plan, None, data.depends_on)
    with s.no_autoflush:  # the new row joins plan.milestones before it is in the session
        milestone = Milestone(id=milestone_id or new_id(), tenant_id=plan.tenant_id, plan=plan,
                              stage=stage, position=0, **fields)
        if milestone.status == "done":
            milestone.completed_at, milestone.completed_by = clock.now(), actor
        _place(list(stage.milestones), milestone, data.position)
    s.add(milestone)
    s.flush()
    _follow_dependencies(s, milestone, actor, {"depends_on"} if data.depends_on else set())
    touch(s, plan, actor, "milestone.created", milestone.id, {"title": milestone.title})
    return milestone


def record_slip(s: Session, m: Milestone, old: date | None, new: date | None, actor: str, reason: str) -> None:
    s.add(Slip(tenant_id=m.tenant_id, plan_id=m.plan_id, milestone_id=m.id, old_date=old,
               new_date=new, actor=actor, reason=reason or ""))


def update_milestone(s: Session, m: Milestone, patch: MilestonePatch, actor: str) -> Milestone:
    check_version(patch.version, m.version)
    with s.no_autoflush:  # no UPDATE before the version is bumped: _flush_versioned sends it
        diff = _change_milestone(s, m, patch, actor)
    if diff:
        m.version += 1
        m.updated_at = clock.now()
        _flush_versioned(s, m, patch.version)
        moved = _follow_dependencies(s, m, actor, set(diff))
        if moved:
            diff["moved"] = moved
        touch(s, m.plan, actor, "milestone.updated", m.id, diff)
    return m


def _follow_dependencies(s: Session, m: Milestone, actor: str, changed: set[str]) -> list[str]:
    """Move the milestones that depend on `m` (and `m` itself when its dependencies
    changed) after a change of its status, completion or due date (dependencies.py);
    returns the titles moved, for the activity entry."""
    if not changed & {"status", "due_date", "depends_on"}:
        return []
    moved = dependencies.recalculate(s, m.plan, actor, {m.id},
                                     include_roots="depends_on" in changed)
    return [x.title for x in moved]


def _change_milestone(s: Session, m: Milestone, patch: MilestonePatch, actor: str) -> dict:
    fields = patch.model_fields_set - {"version", "reason", "stage_id", "position"}
    if "reason" in patch.model_fields_set and "due_date" not in fields:
        raise Invalid("reason", "a reason goes with a due_date change")
    changes = {f: getattr(patch, f) for f in fields}
    if "owners" in changes:
        changes["owners"] = [o.model_dump() for o in patch.owners]
    if "depends_on" in changes:
        changes["depends_on"] = dependencies.check(m.plan, m, patch.depends_on)
    old_due = m.due_date
    diff = _apply(m, changes)
    if "status" in diff:
        done = m.status == "done"
        m.completed_at = clock.now() if done else None
        m.completed_by = actor if done else None
    if "due_date" in diff:
        record_slip(s, m, old_due, m.due_date, actor, patch.reason or "")
        if patch.reason:
            diff["reason"] = patch.reason
    return diff | _move_milestone(s, m, patch)


def _move_milestone(s: Session, m: Milestone, patch: MilestonePatch) -> dict:
    target = m.stage
    if "stage_id" in patch.model_fields_set and patch.stage_id != m.stage_id:
        target = _stage_of_plan(s, m.plan, patch.stage_id)
    position = patch.position if "position" in patch.model_fields_set else None
    if target is m.stage and (position is None or position == m.position):
        return {}
    before = (m.stage_id, m.position)
    if target is not m.stage:
        old_siblings = [x for x in m.stage.milestones if x is not m]
        for i, row in enumerate(old_siblings):
            row.position = i
        m.stage = target
    _place(list(target.milestones), m, position)
    return {"placement": [list(before), [target.id, m.position]]}


def delete_milestone(s: Session, m: Milestone, actor: str) -> None:
    plan, stage = m.plan, m.stage
    siblings = [x for x in stage.milestones if x is not m]
    dependencies.forget(plan, m)
    s.delete(m)
    for i, row in enumerate(siblings):
        row.position = i
    touch(s, plan, actor, "milestone.deleted", m.id, {"title": m.title})


# stakeholders

def add_stakeholder(s: Session, plan: Plan, data: StakeholderIn, actor: str) -> Stakeholder:
    check_limit("stakeholders_per_plan", _count(s, Stakeholder, plan) + 1)
    person = Stakeholder(tenant_id=plan.tenant_id, plan=plan, position=len(plan.stakeholders),
                         **data.model_dump())
    s.add(person)
    s.flush()
    touch(s, plan, actor, "stakeholder.created", person.id, {"name": person.name})
    return person


def update_stakeholder(s: Session, person: Stakeholder, patch: StakeholderPatch, actor: str) -> Stakeholder:
    check_version(patch.version, person.version)
    diff = _apply(person, {f: getattr(patch, f) for f in patch.model_fields_set - {"version"}})
    if diff:
        person.version += 1
        _flush_versioned(s, person, patch.version)
        touch(s, person.plan, actor, "stakeholder.updated", person.id, diff)
    return person


def delete_stakeholder(s: Session, person: Stakeholder, actor: str) -> None:
    plan = person.plan
    s.delete(person)
    touch(s, plan, actor, "stakeholder.deleted", person.id, {"name": person.name})


def activity(s: Session, plan: Plan, limit: int = 200) -> list[Activity]:
    return list(s.scalars(select(Activity).where(
        Activity.tenant_id == plan.tenant_id, Activity.plan_id == plan.id
    ).order_by(Activity.at.desc(), Activity.id).limit(limit)))


def slips(s: Session, plan: Plan) -> list[Slip]:
    return list(s.scalars(select(Slip).where(
        Slip.tenant_id == plan.tenant_id, Slip.plan_id == plan.id).order_by(Slip.at)))


# ---- documents -------------------------------------------------------------


def milestone_document(m: Milestone, today: date) -> dict:
    return {
        "id": m.id, "stage_id": m.stage_id, "title": m.title, "description": m.description,
        "owner_side": m.owner_side, "owners": m.owners or [], "due_date": m.due_date,
        "status": m.status, "risk": m.risk, "internal": m.internal, "position": m.position,
        "completed_at": m.completed_at, "completed_by": m.completed_by,
        "overdue": is_overdue(m, today), "version": m.version,
        "depends_on": m.depends_on or [], "waiting_on": dependencies.waiting_on(m),
    }


def sorted_stages(plan: Plan) -> list[tuple[Stage, list[Milestone]]]:
    # Sort by position rather than trusting in-memory list order after moves.
    return [(st, sorted(st.milestones, key=lambda m: m.position))
            for st in sorted(plan.stages, key=lambda st: st.position)]


def _deal(plan: Plan) -> dict | None:
    if not plan.deal_provider:
        return None
    return {"provider": plan.deal_provider, "account_id": plan.deal_account_id, "deal_id": plan.deal_id}


def summary_document(plan: Plan, today: date) -> dict:
    stages = sorted_stages(plan)
    figures = derive([m for _, ms in stages for m in ms], today)
    nxt = figures["next_milestone"]
    return {
        "id": plan.id, "title": plan.title, "deal": _deal(plan), "progress": figures["progress"],
        "risk": figures["risk"], "next_milestone": nxt and milestone_document(nxt, today),
        "overdue_count": figures["overdue_count"], "version": plan.version, "updated_at": plan.updated_at,
    }


def document(s: Session, plan: Plan, today: date) -> dict:
    """The plan as the API returns it: nested stages -> milestones, with derived figures."""
    stages = sorted_stages(plan)
    slip_count, slip_days = slip_figures(s, plan)
    doc = summary_document(plan, today)
    doc.update({
        "value_summary": plan.value_summary, "objectives": plan.objectives or {},
        "constraints": plan.constraints or {}, "resources": plan.resources or [],
        "stakeholders": [
            {"id": p.id, "name": p.name, "title": p.title, "email": p.email, "side": p.side,
             "role": p.role, "version": p.version}
            for p in sorted(plan.stakeholders, key=lambda p: p.position)
        ],
        "stages": [
            {"id": st.id, "name": st.name, "position": st.position, "version": st.version,
             "milestones": [milestone_document(m, today) for m in ms]}
            for st, ms in stages
        ],
        "template": plan.template, "start_date": plan.start_date,
        "phase": plan.phase or "sales", "cs_owner": plan.cs_owner,
        "slip_count": slip_count, "slip_days": slip_days, "created_at": plan.created_at,
    })
    return doc
