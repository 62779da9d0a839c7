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
import random
import uuid as uuid_mod
from dataclasses import replace
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from connector.base import (
    META_FIELDS,
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

from . import analytics, clock, content, mirror, onboarding, outbox, plans, providers, timeline
from .models import (
    Activity,
    Installation,
    Milestone,
    Mirror,
    OutboxEntry,
    Plan,
    Stage,
    StageMapping,
)
from .schemas import MilestoneIn, MilestonePatch, StageIn
from .web import today

log = logging.getLogger("mutualplan.sync")

PULL_OVERLAP = timedelta(seconds=30)
DEAL_DELETED = "deal deleted in the CRM"
NO_STAGE = "00000000-0000-4000-8000-000000000000"  # a placeholder while validating
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
        "phase": plan.phase or "sales",
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
        content_count=content.block_count(s, plan),
        milestones=tuple(docs),
        deleted_milestones=tuple(sorted(set(pushed) - set(fields) - {plan.id})),
        previous={d.uuid: pushed[d.uuid]["fields"] for d in docs
                  if (pushed.get(d.uuid) or {}).get("fields")},
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
    if (entry.payload or {}).get("op") == "remove":
        return _finish(s, entry, installation, lambda: _remove(installation, entry))
    plan = s.scalars(select(Plan).where(Plan.id == entry.plan_id, Plan.tenant_id == entry.tenant_id)
                     .options(selectinload(Plan.stages).selectinload(Stage.milestones))).one_or_none()
    # A plan closed with its lost deal is archived but still says so on the deal (mp_phase).
    if plan is None or (plan.archived_at is not None and plan.phase != "closed") or not plan.deal_id:
        outbox.finish(entry)
        s.commit()
        return "done"
    if installation.status != "active":
        entry.status = "parked"
        s.commit()
        return "parked"
    return _finish(s, entry, installation, lambda: _push(s, installation, plan))


def _remove(installation: Installation, entry: OutboxEntry) -> str:
    """A plan deleted here: remove its records in the CRM and clear the deal's summary."""
    connector = connector_for(installation)
    payload = entry.payload or {}
    if not hasattr(connector, "remove_plan"):
        return "done"  # a connector that keeps no plan records of its own
    connector.remove_plan(entry.plan_id, payload.get("deal_id") or "",
                          tuple(payload.get("milestones") or ()), payload.get("remote_ids") or {})
    return "done"


def _finish(s: Session, entry: OutboxEntry, installation: Installation, work) -> str:
    """Run the row's work and decide its fate (the one error policy of the relay)."""
    entry_id = entry.id
    if installation.status != "active":
        entry.status = "parked"
        s.commit()
        return "parked"
    try:
        result = work()
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
                   if k not in ("uuid", "milestones", "deleted_milestones", "remote_ids", "activities")}
    plan_changed = (state.pushed_hashes or {}).get(plan.id, {}).get("hash") != content_hash(plan_fields)
    adopting = bool((state.remote_ids or {}).get("adopted"))  # UUIDs to write onto records
    activity = timeline.pending(s, plan, installation)  # buyer actions for the deal's timeline
    if not (doc.milestones or doc.deleted_milestones or deal_update or plan_changed or adopting
            or activity):
        state.mismatch = decision.mismatch
        return "unchanged"
    result = connector.push_plan(replace(doc, remote_ids=dict(state.remote_ids or {}),
                                         activities=timeline.documents(activity)), deal_update)
    timeline.mark_pushed(s, [row.id for row in activity])  # same transaction as the mirror's
    if len(activity) == timeline.BATCH:  # more are waiting: they go with a push of their own
        outbox.record(s, plan)
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


def push_everything(s: Session, installation: Installation) -> int:
    """Queue a full push of every live plan on this account's deals: the mirror forgets the
    records it wrote (ids and hashes; the deal values it wrote stay), so every record is written
    again. For an account whose shape changed, e.g. a HubSpot portal now with custom objects."""
    rows = s.scalars(select(Plan).where(Plan.tenant_id == installation.tenant_id,
                                        Plan.deal_provider == installation.provider,
                                        Plan.deal_account_id == installation.account_id,
                                        Plan.archived_at.is_(None))).all()
    for plan in rows:
        state = s.get(Mirror, plan.id)
        if state is not None:
            state.pushed_hashes, state.remote_ids = {}, {}
        outbox.record(s, plan)
    return len(rows)


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


PULL_BACKOFF_BASE = 30.0  # seconds before the first retry of a failed pull (then doubling)
PULL_BACKOFF_CAP = 3600.0


def pull_installation(s: Session, installation_id: str) -> int:
    """Apply everything changed in the CRM since the last pull; returns changes applied.

    The one pull error policy, for every provider: a pull never raises a CRM error. RateLimited
    reschedules at its retry_after, Transient (and any other CRM failure) backs off
    exponentially with jitter, NeedsReauth parks the installation; the failure is kept on the
    installation (last_pull_error, pull_failures, next_pull_at), which the clock's `is_due`
    respects, so a failed pull is visible and always retried. Pages applied before the
    failure stay applied (checkpointed)."""
    try:
        return _pull(s, installation_id)
    except NeedsReauth as exc:
        s.rollback()
        row = s.get(Installation, installation_id)
        outbox.park_installation(s, row, exc.detail)
        _pull_failed(row, exc, None)
    except RateLimited as exc:
        s.rollback()
        _pull_failed(s.get(Installation, installation_id), exc, exc.retry_after)
    except CrmError as exc:
        s.rollback()
        row = s.get(Installation, installation_id)
        delay = min(PULL_BACKOFF_CAP, PULL_BACKOFF_BASE * 2 ** (row.pull_failures or 0))
        _pull_failed(row, exc, delay * (0.5 + random.random() / 2))
    s.commit()
    return 0


def _pull_failed(row: Installation, exc: CrmError, retry_in: float | None) -> None:
    row.last_pull_error = f"{exc.__class__.__name__}: {exc.detail}"[:2000]
    row.pull_failures = (row.pull_failures or 0) + 1
    row.next_pull_at = clock.now() + timedelta(seconds=retry_in) if retry_in is not None else None
    log.warning("pull of %s failed (%s); next try in %s s", row.id, row.last_pull_error,
                None if retry_in is None else round(retry_in, 1))


def _pull(s: Session, installation_id: str) -> int:
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
    installation.last_pull_error, installation.pull_failures = "", 0
    installation.next_pull_at = None
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
    """One remote record. A record born in the CRM (no UUID of ours, `born_in_crm`) is found
    by its CRM id once imported, and imported otherwise (`_import_plan`, `_import_milestone`)."""
    if change.kind == "deal":
        return _apply_deal(s, installation, change)
    if change.kind == "milestone":
        return _apply_milestone(s, installation, change)
    if change.kind == "plan":
        return _apply_plan(s, installation, change)
    return 0


def _actor(installation: Installation, change: RemoteChange) -> str:
    """Who made a remote change: "salesforce:Dana Rep" (the CRM's last modifier), else the CRM."""
    name = (change.fields or {}).get("modified_by")
    return f"{installation.provider}:{name}"[:200] if name else f"crm:{installation.provider}"


def _mirror(s: Session, installation: Installation, plan: Plan) -> Mirror:
    state = s.get(Mirror, plan.id)
    if state is None:
        state = Mirror(plan_id=plan.id, tenant_id=plan.tenant_id, installation_id=installation.id,
                       remote_ids={}, pushed_hashes={}, pushed_deal={})
        s.add(state)
    return state


def _plan_by_remote_id(s: Session, installation: Installation, remote_id: str) -> Plan | None:
    """The plan whose CRM record is `remote_id` (before our UUID is on that record)."""
    if not remote_id:
        return None
    for state in s.scalars(select(Mirror).where(Mirror.installation_id == installation.id)):
        if (state.remote_ids or {}).get(state.plan_id) == remote_id:
            return s.get(Plan, state.plan_id)
    return None


def _find_plan(s: Session, installation: Installation, uuid: str, remote_id: str) -> Plan | None:
    plan = s.scalars(select(Plan).where(Plan.tenant_id == installation.tenant_id,
                                        Plan.id == uuid)).one_or_none() if uuid else None
    return plan or _plan_by_remote_id(s, installation, remote_id)


def _usable_uuid(s: Session, model, key: str) -> str | None:
    """The record's UUID if it is one and not taken here; None: we give it a new one."""
    try:
        if not key or str(uuid_mod.UUID(key)) != key.lower():
            return None
    except ValueError:
        return None
    return None if s.get(model, key.lower()) is not None else key.lower()


def _adopt(state: Mirror, local_id: str, remote_id: str, uuid_on_record: bool) -> None:
    """Remember the CRM record of a local row; a record without our UUID is "adopted": the
    next push writes the UUID onto it by its CRM id (connector's job, any CRM)."""
    ids = dict(state.remote_ids or {})
    ids[local_id] = remote_id
    if not uuid_on_record:
        ids["adopted"] = {**ids.get("adopted", {}), local_id: remote_id}
    state.remote_ids = ids


def report_problem(installation: Installation, change: RemoteChange, reason: str) -> None:
    """A CRM record we cannot import: listed in the installation's status (sync_problems)."""
    remote_id = (change.fields or {}).get("remote_id") or change.key
    problems = [p for p in (installation.settings or {}).get("sync_problems", [])
                if p.get("remote_id") != remote_id]
    problems.append({"kind": change.kind, "remote_id": remote_id, "reason": reason,
                     "at": clock.now().isoformat()})
    installation.settings = {**(installation.settings or {}), "sync_problems": problems[-50:]}
    log.warning("cannot import %s %s: %s", change.kind, remote_id, reason)


def _solved(installation: Installation, change: RemoteChange) -> None:
    remote_id = (change.fields or {}).get("remote_id")
    problems = (installation.settings or {}).get("sync_problems", [])
    if remote_id and any(p.get("remote_id") == remote_id for p in problems):
        installation.settings = {**installation.settings, "sync_problems": [
            p for p in problems if p.get("remote_id") != remote_id]}


def _apply_plan(s: Session, installation: Installation, change: RemoteChange) -> int:
    """A plan record changed in the CRM: deleted (archive here), restored (un-archive), or
    born there (import). Plan-level text stays ours: our database is the source of truth."""
    plan = _find_plan(s, installation, change.key, change.fields.get("remote_id", ""))
    actor = _actor(installation, change)
    if plan is None:
        return 0 if change.deleted else _import_plan(s, installation, change, actor)
    state = _mirror(s, installation, plan)
    if change.deleted:
        if plan.archived_at is not None or _not_current(state, plan.id, change):
            return 0
        state.remote_ids = {**(state.remote_ids or {}), "archived_by_crm": True}
        archive_plan(s, plan, actor, {"reason": "deleted in the CRM"})
        return 1
    if plan.archived_at is not None and (state.remote_ids or {}).get("archived_by_crm"):
        state.remote_ids = {k: v for k, v in state.remote_ids.items() if k != "archived_by_crm"}
        restore_plan(s, plan, actor, "restored in the CRM")
        return 1
    return 0


def archive_plan(s: Session, plan: Plan, actor: str, detail: dict) -> None:
    """Archive a plan here, and so in the CRM: the relay removes (Salesforce: deletes; HubSpot:
    archives) its plan and milestone records and clears the deal's summary fields, the same
    removal a delete queues (records already gone are fine). The mirror forgets what it pushed
    and the record ids it knew, so a restore writes the whole plan again (into new records where
    the old ones stay in the bin), and the bin's entries of the old records, read again by a pull,
    are not taken for deletions of the new ones (`_not_current`)."""
    plan.archived_at = clock.now()
    plans.touch(s, plan, actor, "plan.archived", plan.id, detail)
    state = s.get(Mirror, plan.id)
    if state is None or not plan.deal_id:
        return
    outbox.record_removal(s, plan, plans.removal_of(plan, state))
    state.pushed_hashes = {}
    state.remote_ids = {k: v for k, v in (state.remote_ids or {}).items() if k == "archived_by_crm"}
    state.pushed_deal = {**(state.pushed_deal or {}), "properties": {}}


def _not_current(state: Mirror, local_id: str, change: RemoteChange) -> bool:
    """Is a deleted record one this plan or milestone no longer has (archived with its plan,
    written anew since)? Only a deletion of the record the mirror knows is applied."""
    remote_id = (change.fields or {}).get("remote_id")
    return bool(remote_id) and (state.remote_ids or {}).get(local_id) != remote_id


def restore_plan(s: Session, plan: Plan, actor: str, reason: str) -> None:
    """Un-archive a plan: a full push follows (a removal not sent yet becomes that push)."""
    plan.archived_at = None
    plans.touch(s, plan, actor, "plan.restored", plan.id, {"reason": reason})
    pending = s.scalars(select(OutboxEntry).where(OutboxEntry.plan_id == plan.id,
                                                  OutboxEntry.status == "pending")).first()
    if pending is not None and (pending.payload or {}).get("op") == "remove":
        pending.payload = None


def _import_plan(s: Session, installation: Installation, change: RemoteChange, actor: str) -> int:
    from . import sharing
    from .schemas import PlanCreate

    if change.key and _deleted_here(s, installation, change.key):
        return 0  # our own record, still there until the removal reaches the CRM
    deal_id = change.fields.get("deal_id") or ""
    if not deal_id:
        report_problem(installation, change, "the plan record has no deal/opportunity")
        return 0
    taken = s.scalars(select(Plan.id).where(
        Plan.tenant_id == installation.tenant_id, Plan.deal_provider == installation.provider,
        Plan.deal_account_id == installation.account_id, Plan.deal_id == deal_id)).first()
    if taken:
        report_problem(installation, change, f"the deal already has plan {taken}")
        return 0
    uuid = _usable_uuid(s, Plan, change.key)
    try:
        data = PlanCreate.model_validate({
            "title": change.fields.get("title") or "Mutual action plan",
            "value_summary": change.fields.get("value_summary") or "",
            "deal": {"provider": installation.provider, "account_id": installation.account_id,
                     "deal_id": deal_id}})
    except ValueError as exc:
        report_problem(installation, change, f"invalid values: {exc}")
        return 0
    plan = plans.create_plan(s, installation.tenant_id, data, actor, today(), plan_id=uuid)
    _adopt(_mirror(s, installation, plan), plan.id, change.fields["remote_id"], bool(uuid))
    # An ordinary plan from now on: a buyer link (written to the record by the next push).
    sharing.current_or_new_link(s, plan, actor, sharing.Keys.from_config(current_app.config))
    _solved(installation, change)
    return 1


def _deleted_here(s: Session, installation: Installation, plan_id: str) -> bool:
    """Was this plan deleted here? (Its removal row outlives it.) A pull that sees its record
    before the removal reaches the CRM must not bring it back as a plan born there."""
    rows = s.scalars(select(OutboxEntry).where(OutboxEntry.tenant_id == installation.tenant_id,
                                               OutboxEntry.plan_id == plan_id)).all()
    return any((row.payload or {}).get("op") == "remove" for row in rows)


def _import_milestone(s: Session, installation: Installation, change: RemoteChange) -> int:
    """A milestone record born in the CRM joins its plan (its stage made if new)."""
    f = change.fields
    plan = _find_plan(s, installation, f.get("plan_uuid") or "", f.get("plan_remote_id") or "")
    if plan is None:
        report_problem(installation, change, "its plan is not here (no deal, or not imported)")
        return 0
    pushed = s.get(Mirror, plan.id)
    if pushed is not None and change.key in (pushed.pushed_hashes or {}):
        return 0  # ours, deleted here: the next push removes its record
    actor = _actor(installation, change)
    stage_name = (f.get("stage_name") or "Milestones").strip()[:120] or "Milestones"
    stage = next((st for st in plan.stages if st.name == stage_name), None)
    try:  # validated before anything is written (a stage id is filled in below)
        data = MilestoneIn.model_validate({
            "stage_id": stage.id if stage else NO_STAGE, "title": f.get("title") or "Milestone",
            **{k: f[k] for k in ("description", "owner_side", "due_date", "status", "risk",
                                 "internal") if f.get(k) not in (None, "")}})
        new_stage = StageIn(name=stage_name)
    except ValueError as exc:
        report_problem(installation, change, f"invalid values: {exc}")
        return 0
    if stage is None:
        stage = plans.add_stage(s, plan, new_stage, actor)
        data = data.model_copy(update={"stage_id": stage.id})
    uuid = _usable_uuid(s, Milestone, change.key)
    m = plans.add_milestone(s, plan, data, actor, milestone_id=uuid)
    state = _mirror(s, installation, plan)
    _adopt(state, m.id, f["remote_id"], bool(uuid))
    if uuid:
        _remember_remote(state, m.id, change)
    _solved(installation, change)
    return 1


def _remember_remote(state: Mirror, milestone_id: str, change: RemoteChange) -> None:
    """After applying a remote record, what we "pushed" is what the CRM has: the next push
    writes only the fields that really differ (no echo of the rep's own edit)."""
    fields = {k: v for k, v in change.fields.items() if k not in META_FIELDS}
    state.pushed_hashes = {**(state.pushed_hashes or {}), milestone_id: {
        "hash": change.content_hash or content_hash(fields), "fields": _plain(fields)}}


def _apply_deal(s: Session, installation: Installation, change: RemoteChange) -> int:
    rows = s.scalars(select(Plan).where(Plan.tenant_id == installation.tenant_id,
                                        Plan.deal_provider == installation.provider,
                                        Plan.deal_account_id == installation.account_id,
                                        Plan.deal_id == change.key)).all()
    for plan in rows:
        if change.deleted:
            if plan.archived_at is None:
                archive_plan(s, plan, _actor(installation, change),
                             {"reason": DEAL_DELETED, "deleted_at": change.modified_at.isoformat()})
            continue
        if plan.archived_at is not None:
            _restore_if_deal_is_back(s, installation, plan, change)
        if not change.fields:
            continue  # "the deal exists" (a restore event): no values to compare
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
        if "stage" in fields:
            _follow_outcome(s, installation, plan, state, _actor(installation, change))
        _refresh_mismatch(s, installation, plan, state)
    return len(rows)


def _follow_outcome(s: Session, installation: Installation, plan: Plan, state: Mirror,
                    actor: str) -> None:
    """Closed won starts the onboarding, closed lost closes the plan, open again restores it
    (webapp/onboarding.py; each a no-op the second time)."""
    connector = connector_for(installation)
    pipeline = state.deal_pipeline or installation.settings.get("default_pipeline", "default")
    result = onboarding.outcome(state.deal_stage, pipeline_stages(s, installation, connector, pipeline))
    settings = onboarding.hand_off(installation, pipeline)
    cs_owner = None
    if result == "won" and plan.phase != "onboarding":
        cs_owner = _cs_owner(connector, plan, settings)
    onboarding.apply_outcome(s, plan, result, close_date=state.deal_close_date, cs_owner=cs_owner,
                             template=settings.template, actor=actor, day=today())


def _cs_owner(connector, plan: Plan, settings) -> str | None:
    """The customer-success owner: the deal's configured field when it has a value, else the
    pipeline's default. A CRM that does not answer leaves the default (the hand-off goes on)."""
    if settings.cs_owner_field and hasattr(connector, "deal_field"):
        try:
            value = (connector.deal_field(plan.deal_id, settings.cs_owner_field) or "").strip()
        except CrmError as exc:
            log.warning("could not read the customer-success owner field: %s", exc.detail)
            value = ""
        if value:
            return value[:254]
    return settings.cs_owner_default or None


def _restore_if_deal_is_back(s: Session, installation: Installation, plan: Plan,
                             change: RemoteChange) -> None:
    """A deal seen alive after its deletion archived the plan (restored from the CRM's recycle
    bin) brings the plan back. A plan archived for another reason stays archived, and so does
    one whose deal was seen before the deletion (an older page arriving late)."""
    last = s.scalars(select(Activity).where(Activity.tenant_id == plan.tenant_id,
                                            Activity.plan_id == plan.id,
                                            Activity.action.in_(("plan.archived", "plan.restored")))
                     .order_by(Activity.at.desc()).limit(1)).first()
    detail = (last.detail or {}) if last else {}
    if last is None or last.action != "plan.archived" or detail.get("reason") != DEAL_DELETED:
        return
    deleted_at = detail.get("deleted_at")
    if deleted_at and change.modified_at <= clock.aware(datetime.fromisoformat(deleted_at)):
        return
    restore_plan(s, plan, f"crm:{installation.provider}", "deal restored in the CRM")


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


def _find_milestone(s: Session, installation: Installation, change: RemoteChange):
    if change.key:
        m = s.scalars(select(Milestone).where(Milestone.tenant_id == installation.tenant_id,
                                              Milestone.id == change.key)).one_or_none()
        if m is not None:
            return m
    remote_id = change.fields.get("remote_id")
    plan = _find_plan(s, installation, change.fields.get("plan_uuid") or "",
                      change.fields.get("plan_remote_id") or "") if remote_id else None
    state = s.get(Mirror, plan.id) if plan else None
    local = next((k for k, v in ((state.remote_ids or {}) if state else {}).items()
                  if v == remote_id), None)
    return s.get(Milestone, local) if local else None


def _apply_milestone(s: Session, installation: Installation, change: RemoteChange) -> int:
    m = _find_milestone(s, installation, change)
    if m is None:
        return 0 if change.deleted else _import_milestone(s, installation, change)
    state = _mirror(s, installation, m.plan)
    pushed = (state.pushed_hashes or {}).get(m.id) or {}
    actor = _actor(installation, change)
    local_time = clock.aware(m.updated_at)
    if change.deleted:
        if m.plan.archived_at is not None or _not_current(state, m.id, change):
            return 0  # went with its deleted plan; comes back with the plan's restore
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
        _remember_remote(state, m.id, change)
        return 0
    try:
        plans.update_milestone(s, m, MilestonePatch.model_validate(patch), actor)
    except Exception as exc:  # a value our model refuses: keep ours, say so in the status
        log.warning("ignored remote edit of milestone %s (%s): %s", m.id, ", ".join(sorted(patch)),
                    type(exc).__name__)  # not the values: they are the CRM user's data
        report_problem(installation, change, f"invalid values: {exc}")
        return 0
    _remember_remote(state, m.id, change)
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
