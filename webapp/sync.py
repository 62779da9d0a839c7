"""Push and pull: the only code that talks to a connector.

push_entry: one outbox row -> the plan's current state, the stage decision,
one connector.push_plan call, the mirror bookkeeping, and the row's fate
(done / deferred / retried / dead-lettered / parked), in one transaction.

pull_installation: changed records one page at a time, each page applied
and checkpointed; remote edits merge field by field, last writer wins; our
own writes coming back (same content hash) are ignored.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from connector.base import (
    DealUpdate,
    MilestoneDoc,
    PipelineStage,
    PlanDoc,
    RemoteChange,
    content_hash,
    milestone_fields,
)
from connector.errors import (
    AuthExpired,
    CrmError,
    NeedsReauth,
    NotFound,
    RateLimited,
    Rejected,
    Transient,
)

from . import analytics, clock, mirror, outbox, plans, providers
from .models import Installation, Milestone, Mirror, OutboxEntry, Plan, Stage, StageMapping
from .schemas import MilestonePatch
from .web import today

log = logging.getLogger("mutualplan.sync")

PULL_OVERLAP = timedelta(seconds=30)
SYNCED_FIELDS = ("title", "description", "owner_side", "due_date", "status", "risk", "internal")


# ---- connectors ---------------------------------------------------------------


def connector_for(installation: Installation):
    """The connector of an installation, from its Provider (webapp/providers.py)."""
    try:
        provider = providers.get(installation.provider)
    except NotFound:
        raise Rejected(f"no connector for provider {installation.provider!r}") from None
    return provider.connector_for(installation)


def pipeline_stages(s: Session, installation: Installation, connector, pipeline: str) -> list[PipelineStage]:
    """The pipeline's stages, cached on the installation (read once per portal/org)."""
    cache = dict(installation.settings or {}).get("pipelines", {})
    if pipeline not in cache:
        stages = connector.pipeline_stages(pipeline)
        cache = {**cache, pipeline: [vars(st) for st in stages]}
        installation.settings = {**(installation.settings or {}), "pipelines": cache}
    return [PipelineStage(**st) for st in cache[pipeline]]


def stage_map(s: Session, installation: Installation, pipeline: str, stages) -> mirror.StageMap:
    row = s.scalars(select(StageMapping).where(StageMapping.installation_id == installation.id,
                                               StageMapping.pipeline_id == pipeline)).one_or_none()
    if row is None:
        return mirror.default_mapping(stages)
    return mirror.StageMap(gates={mirror.key(k): v for k, v in (row.gates or {}).items()},
                           close_milestones=tuple(mirror.key(t) for t in ([row.close_milestone] if row.close_milestone else [])),
                           allow_closed=row.allow_closed)


# ---- documents ------------------------------------------------------------------


def summary_properties(plan: Plan, figures: dict, slip_days: int, buyer_link: str) -> dict:
    nxt = figures["next_milestone"]
    return {
        "progress_percent": str(figures["progress"]["percent"]),
        "next_milestone": nxt.title if nxt else "",
        "next_milestone_due": nxt.due_date.isoformat() if nxt and nxt.due_date else "",
        "risk": figures["risk"],
        "overdue_count": str(figures["overdue_count"]),
        "slip_days": str(slip_days),
        "buyer_link": buyer_link,
    }


def _text_list(items: list) -> str:
    return "\n".join(f"- {item}" for item in items or [])


def plan_document(s: Session, plan: Plan, gates: dict, pushed: dict, day: date) -> tuple[PlanDoc, dict]:
    """The PlanDoc to push (only records whose content changed) and all current field sets."""
    ordered = plans.sorted_stages(plan)
    milestones = [(st, m) for st, ms in ordered for m in ms]
    figures = plans.derive([m for _, m in milestones], day)
    _, slip_days = plans.slip_figures(s, plan)
    objectives = plan.objectives or {}
    constraints = plan.constraints or {}
    nxt = figures["next_milestone"]
    docs, fields = [], {}
    for st, m in milestones:
        owner = (m.owners or [{}])[0]
        doc = MilestoneDoc(
            uuid=m.id, plan_uuid=plan.id, title=m.title, stage_name=st.name, position=m.position,
            description=m.description, owner_side=m.owner_side, owner_name=owner.get("name", ""),
            owner_email=owner.get("email", ""), due_date=m.due_date, status=m.status, risk=m.risk,
            internal=m.internal, completed_at=m.completed_at, gate_stage=gates.get(mirror.key(m.title)))
        fields[m.id] = milestone_fields(doc)
        if pushed.get(m.id, {}).get("hash") != content_hash(fields[m.id]):
            docs.append(doc)
    buyer_link = _buyer_link(s, plan)
    plan_doc = PlanDoc(
        uuid=plan.id, title=plan.title, deal_id=plan.deal_id or "", value_summary=plan.value_summary,
        objectives="\n\n".join(f"{label}:\n{_text_list(objectives.get(k))}" for k, label in (
            ("challenges", "Challenges"), ("ideal_results", "Ideal results"), ("deliverables", "Deliverables"))
            if objectives.get(k)),
        constraints="\n".join(f"{c['label']}: {c['date']}" for c in constraints.get("dates", [])),
        progress_percent=figures["progress"]["percent"], risk=figures["risk"],
        next_milestone=nxt.title if nxt else "", next_milestone_due=nxt.due_date if nxt else None,
        overdue_count=figures["overdue_count"], slip_days=slip_days, buyer_link=buyer_link,
        go_live_date=date.fromisoformat(constraints["go_live_date"]) if constraints.get("go_live_date") else None,
        budget=constraints.get("budget") or "",
        milestones=tuple(docs),
        deleted_milestones=tuple(sorted(set(pushed) - set(fields) - {plan.id})),
    )
    summary = summary_properties(plan, figures, slip_days, buyer_link)
    summary.update(analytics.summary_fields(s, plan, day))  # health, win_probability
    return plan_doc, {"milestones": [m for _, m in milestones], "fields": fields, "summary": summary}


def _buyer_link(s: Session, plan: Plan) -> str:
    """The plan's newest active, non-expiring buyer link ("" when there is none).

    Read only: a push never creates links (that would be a change to push).
    """
    from . import sharing

    for link in sharing.list_links(s, plan):
        if sharing.is_active(link) and link.expires_at is None:
            url = sharing.link_url(link, sharing.Keys.from_config(current_app.config))
            if url:
                return url
    return ""


# ---- push ------------------------------------------------------------------------


def push_entry(s: Session, entry_id: str) -> str:
    """Process one claimed outbox row; returns what became of it."""
    entry = s.get(OutboxEntry, entry_id)
    if entry is None or entry.status != "in_flight":
        return "gone"
    installation = s.get(Installation, entry.installation_id)
    plan = s.scalars(select(Plan).where(Plan.id == entry.plan_id, Plan.tenant_id == entry.tenant_id)
                     .options(selectinload(Plan.stages).selectinload(Stage.milestones))).one_or_none()
    if plan is None or plan.archived_at is not None or not plan.deal_id:
        outbox.finish(entry)
        s.commit()
        return "done"
    if installation.status != "active":
        entry.status = "parked"
        s.commit()
        return "parked"
    try:
        result = _push(s, installation, plan)
    except RateLimited as exc:
        s.rollback()
        entry = s.get(OutboxEntry, entry_id)
        outbox.defer(entry, exc.retry_after, f"rate limited ({exc.scope}): {exc.detail}")
        outcome = "deferred"
    except NeedsReauth as exc:
        s.rollback()
        outbox.park_installation(s, s.get(Installation, entry.installation_id), exc.detail)
        outcome = "parked"
    except (Rejected, NotFound) as exc:
        s.rollback()
        outbox.dead_letter(s.get(OutboxEntry, entry_id), f"{exc.__class__.__name__}: {exc.detail}")
        outcome = "dead"
    except (Transient, AuthExpired, CrmError) as exc:
        s.rollback()
        outbox.fail(s.get(OutboxEntry, entry_id), f"{exc.__class__.__name__}: {exc.detail}")
        outcome = "retry"
    except Exception as exc:  # a bug or an unclassified failure: retry, then dead-letter, never lose
        log.exception("push failed")
        s.rollback()
        outbox.fail(s.get(OutboxEntry, entry_id), f"unexpected: {exc!r}")
        outcome = "retry"
    else:
        outbox.finish(entry)
        outcome = result
    s.commit()
    return outcome


def _push(s: Session, installation: Installation, plan: Plan) -> str:
    connector = connector_for(installation)
    state = s.get(Mirror, plan.id) or Mirror(plan_id=plan.id, tenant_id=plan.tenant_id,
                                               installation_id=installation.id, remote_ids={},
                                               pushed_hashes={}, pushed_deal={})
    s.add(state)
    if state.deal_stage is None:
        deal = connector.get_deal(plan.deal_id)
        state.deal_pipeline, state.deal_stage, state.deal_close_date = deal.pipeline, deal.stage, deal.close_date
        # The CRM's own modification time: a rep's later change compares against the CRM's clock.
        state.deal_seen_at = deal.modified_at or clock.now()
    pipeline = state.deal_pipeline or installation.settings.get("default_pipeline", "default")
    stages = pipeline_stages(s, installation, connector, pipeline)
    mapping = stage_map(s, installation, pipeline, stages)
    doc, current = plan_document(s, plan, mapping.gates, state.pushed_hashes or {}, today())
    decision = _decide(current, mapping, stages, state)
    deal_update = None
    if not decision.is_empty():
        deal_update = DealUpdate(deal_id=plan.deal_id, stage=decision.stage,
                                 pipeline=pipeline if decision.stage else None,
                                 close_date=decision.close_date, properties=decision.properties)
    plan_fields = {k: v for k, v in vars(doc).items()
                   if k not in ("uuid", "milestones", "deleted_milestones", "remote_ids")}
    plan_changed = (state.pushed_hashes or {}).get(plan.id, {}).get("hash") != content_hash(plan_fields)
    if not (doc.milestones or doc.deleted_milestones or deal_update or plan_changed):
        state.mismatch = decision.mismatch
        return "unchanged"
    result = connector.push_plan(replace(doc, remote_ids=dict(state.remote_ids or {})), deal_update)
    hashes = {k: v for k, v in (state.pushed_hashes or {}).items() if k not in doc.deleted_milestones}
    for m in doc.milestones:
        hashes[m.uuid] = {"hash": content_hash(current["fields"][m.uuid]), "fields": _plain(current["fields"][m.uuid])}
    hashes[plan.id] = {"hash": content_hash(plan_fields)}
    state.pushed_hashes = hashes
    state.remote_ids = {**(state.remote_ids or {}), **result.remote_ids}
    last = dict(state.pushed_deal or {})
    if deal_update:
        if deal_update.stage:
            last["stage"] = state.deal_stage = deal_update.stage
        if deal_update.close_date:
            last["close_date"] = deal_update.close_date.isoformat()
            state.deal_close_date = deal_update.close_date
        last["properties"] = {**last.get("properties", {}), **deal_update.properties}
    state.pushed_deal = last
    state.mismatch = decision.mismatch
    state.pushed_at = clock.now()
    state.pushes = (state.pushes or 0) + 1
    return "done"


def _plain(fields: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, (date, datetime)) else v) for k, v in fields.items()}


def _decide(current: dict, mapping, stages, state: Mirror) -> mirror.Decision:
    last = state.pushed_deal or {}
    return mirror.decide(
        [mirror.MilestoneState(m.title, m.status == "done", m.due_date) for m in current["milestones"]],
        mapping, stages, mirror.DealState(state.deal_stage, state.deal_close_date),
        mirror.LastWrite(last.get("stage"),
                         date.fromisoformat(last["close_date"]) if last.get("close_date") else None,
                         last.get("properties", {})),
        current["summary"])


# ---- pull -------------------------------------------------------------------------


def pull_installation(s: Session, installation_id: str) -> int:
    """Apply everything changed in the CRM since the last pull; returns changes applied."""
    installation = s.get(Installation, installation_id)
    if installation is None or installation.status != "active":
        return 0
    provider = providers.get(installation.provider)
    connector = provider.connector_for(installation)
    started = clock.now()
    state = dict(installation.pull_state or {})
    since = datetime.fromisoformat(state["since"]) if state.get("since") else installation.created_at
    since = clock.aware(since)
    cursor, applied = state.get("cursor"), 0
    try:
        while True:
            page = connector.pull(since, cursor)
            # What the webhooks recorded (HubSpot's deal deletions) comes with the first page,
            # applied and marked handed-over in the same transaction.
            inbox = provider.inbox(s, installation) if provider.inbox and cursor is None else []
            for change in inbox + page.changes:
                applied += apply_change(s, installation, change)
            cursor = page.cursor
            # Checkpoint after each page: a crash resumes here, not from the start.
            installation.pull_state = {**state, "cursor": cursor}
            s.commit()
            if cursor is None:
                break
    except NeedsReauth as exc:
        s.rollback()
        outbox.park_installation(s, s.get(Installation, installation_id), exc.detail)
        s.commit()
        return applied
    # Never move past the moment this pull started (minus an overlap): changes
    # made while we paged are seen next time; re-seeing one is harmless.
    installation.pull_state = {"since": (started - PULL_OVERLAP).isoformat(), "cursor": None}
    installation.last_pulled_at = started
    # Activity (a change pulled, or a push since) makes an adaptive schedule pull sooner.
    pushed = s.scalar(select(func.max(Mirror.pushed_at))
                      .where(Mirror.installation_id == installation_id))
    seen = [clock.aware(t) for t in (installation.last_activity_at, pushed,
                                     started if applied else None) if t]
    if seen and max(seen) != installation.last_activity_at:
        installation.last_activity_at = max(seen)
    s.commit()
    return applied


def apply_change(s: Session, installation: Installation, change: RemoteChange) -> int:
    if change.kind == "deal":
        return _apply_deal(s, installation, change)
    if change.kind == "milestone":
        return _apply_milestone(s, installation, change)
    return 0  # plan records: our database is the source of truth for plan-level text


def _apply_deal(s: Session, installation: Installation, change: RemoteChange) -> int:
    rows = s.scalars(select(Plan).where(Plan.tenant_id == installation.tenant_id,
                                        Plan.deal_provider == installation.provider,
                                        Plan.deal_account_id == installation.account_id,
                                        Plan.deal_id == change.key)).all()
    for plan in rows:
        if change.deleted:
            if plan.archived_at is None:
                plan.archived_at = clock.now()
                plans.touch(s, plan, f"crm:{installation.provider}", "plan.archived",
                             plan.id, {"reason": "deal deleted in the CRM"})
            continue
        state = s.get(Mirror, plan.id)
        if state is None:
            state = Mirror(plan_id=plan.id, tenant_id=plan.tenant_id, installation_id=installation.id,
                           remote_ids={}, pushed_hashes={}, pushed_deal={})
            s.add(state)
        if state.deal_seen_at and change.modified_at and clock.aware(state.deal_seen_at) > change.modified_at:
            continue  # an older event arriving late
        fields = change.fields
        if "stage" in fields:
            state.deal_stage = fields["stage"]
        if "pipeline" in fields and fields["pipeline"]:
            state.deal_pipeline = fields["pipeline"]
        if "close_date" in fields:
            value = fields["close_date"]
            state.deal_close_date = date.fromisoformat(value) if isinstance(value, str) else value
        state.deal_seen_at = change.modified_at or clock.now()
        s.flush()
        _refresh_mismatch(s, installation, plan, state)
    return len(rows)


def _refresh_mismatch(s: Session, installation: Installation, plan: Plan, state: Mirror) -> None:
    """Recompute the mismatch flag; if the deal can move forward, queue a push."""
    try:
        connector = connector_for(installation)
        pipeline = state.deal_pipeline or installation.settings.get("default_pipeline", "default")
        stages = pipeline_stages(s, installation, connector, pipeline)
    except CrmError:
        return
    mapping = stage_map(s, installation, pipeline, stages)
    _, current = plan_document(s, plan, mapping.gates, state.pushed_hashes or {}, today())
    decision = _decide(current, mapping, stages, state)
    state.mismatch = decision.mismatch
    if decision.stage or decision.close_date:
        outbox.record(s, plan)


def _apply_milestone(s: Session, installation: Installation, change: RemoteChange) -> int:
    m = s.scalars(select(Milestone).where(Milestone.tenant_id == installation.tenant_id,
                                          Milestone.id == change.key)).one_or_none()
    if m is None:
        return 0
    state = s.get(Mirror, m.plan_id)
    pushed = ((state.pushed_hashes or {}).get(m.id) if state else None) or {}
    actor = f"crm:{installation.provider}"
    local_time = clock.aware(m.updated_at)
    if change.deleted:
        if change.modified_at > local_time:
            plans.delete_milestone(s, m, actor)
            return 1
        return 0
    if change.content_hash and change.content_hash == pushed.get("hash"):
        return 0  # our own write coming back
    before = pushed.get("fields", {})
    patch = {}
    for field in SYNCED_FIELDS:
        if field not in change.fields:
            continue
        remote = _plain({field: change.fields[field]})[field]
        if remote == before.get(field):
            continue  # the CRM still has what we wrote: not an edit there
        local = _plain({field: getattr(m, field)})[field]
        if local != before.get(field) and local_time > change.modified_at:
            continue  # both sides changed it; ours is newer
        if remote != local:
            patch[field] = remote
    if not patch:
        return 0
    try:
        plans.update_milestone(s, m, MilestonePatch.model_validate(patch), actor)
    except Exception as exc:  # a value our model refuses: keep ours, say so in the log
        log.warning("ignored remote edit of milestone %s: %s", m.id, exc)
        return 0
    return 1


# ---- status ------------------------------------------------------------------------


def status(s: Session, plan: Plan) -> dict:
    entries = s.scalars(select(OutboxEntry).where(OutboxEntry.tenant_id == plan.tenant_id,
                                                  OutboxEntry.plan_id == plan.id)
                        .order_by(OutboxEntry.created_at.desc()).limit(50)).all()
    state = s.get(Mirror, plan.id)
    installation = outbox.installation_for(s, plan)
    pending = [e for e in entries if e.status in ("pending", "in_flight", "parked")]
    dead = [e for e in entries if e.status == "dead"]
    if installation is None:
        summary = "not_connected"
    elif installation.status != "active":
        summary = "needs_reconnect"
    elif dead:
        summary = "failed"
    elif pending:
        summary = "pending"
    else:
        summary = "synced"
    retrying = next((e for e in pending if e.last_error), None)
    return {
        "state": summary,
        "connection": installation.status if installation else None,
        "last_pushed_at": state.pushed_at if state else None,
        "pending": len(pending),
        "last_error": retrying.last_error if retrying else None,
        "dead_letters": [{"id": e.id, "error": e.last_error, "at": e.created_at} for e in dead],
        "mismatch": state.mismatch if state else None,
        "deal_stage": state.deal_stage if state else None,
    }
