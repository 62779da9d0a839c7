"""The transactional outbox: "this plan must be mirrored" rows.

A row is written by the same transaction as the change (plans.touch calls
`record`), so a change can never be committed without its row, nor a row
without its change. Rows coalesce: at most one pending row per plan, due one
debounce (OUTBOX_DEBOUNCE, 1 s) after the first edit, and the push sends the
plan's state at the time of the push, so 50 rapid edits cost one or two
pushes. Claiming uses FOR UPDATE SKIP LOCKED on PostgreSQL, so any
number of workers share the work and never take the same row twice; a row
whose worker died is given back after a lease.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, object_session

from .clock import aware as clock_aware
from .clock import now
from .models import Installation, OutboxEntry, Plan, new_id

DEBOUNCE = 1.0  # seconds a new row waits for more edits of the same plan
LEASE = timedelta(minutes=2)  # longer than any push takes, with its retries
MAX_ATTEMPTS = 8
BACKOFF_CAP = 3600.0


def installation_for(s: Session, plan: Plan) -> Installation | None:
    if not plan.deal_provider:
        return None
    return s.scalars(select(Installation).where(
        Installation.tenant_id == plan.tenant_id, Installation.provider == plan.deal_provider,
        Installation.account_id == plan.deal_account_id)).one_or_none()


def record(s: Session, plan: Plan) -> None:
    """Queue a push of `plan` in the current transaction (coalescing with a pending one)."""
    installation = installation_for(s, plan)
    if installation is None or installation.status == "uninstalled":
        return
    status = "pending" if installation.status == "active" else "parked"
    if status == "parked":
        if s.scalars(select(OutboxEntry.id).where(OutboxEntry.plan_id == plan.id,
                                                  OutboxEntry.status == "parked")).first():
            return
        s.add(OutboxEntry(tenant_id=plan.tenant_id, installation_id=installation.id, plan_id=plan.id,
                          status="parked", next_attempt_at=now()))
        return
    dialect = s.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # The row becomes due after a short debounce; edits until then coalesce into it.
    due = now() + timedelta(seconds=current_app.config.get("OUTBOX_DEBOUNCE", DEBOUNCE))
    statement = insert(OutboxEntry).values(
        id=new_id(), tenant_id=plan.tenant_id, installation_id=installation.id,
        plan_id=plan.id, status="pending", attempts=0, next_attempt_at=due, last_error="",
        created_at=now(),
    ).on_conflict_do_nothing(index_elements=["plan_id"], index_where=text("status = 'pending'"))
    s.execute(statement)
    s.info["outbox_written"] = True


def record_removal(s: Session, plan: Plan, removal: dict) -> None:
    """Queue the removal of a plan being deleted here from its CRM (same transaction as the
    delete). It replaces a pending push of the plan: there is nothing left to push."""
    installation = installation_for(s, plan)
    if installation is None or installation.status == "uninstalled":
        return
    payload = {"op": "remove", **removal}
    pending = s.scalars(select(OutboxEntry).where(OutboxEntry.plan_id == plan.id,
                                                  OutboxEntry.status == "pending")).first()
    if pending is not None:
        pending.payload, pending.next_attempt_at = payload, now()
    else:
        s.add(OutboxEntry(tenant_id=plan.tenant_id, installation_id=installation.id,
                          plan_id=plan.id, payload=payload, next_attempt_at=now(),
                          status="pending" if installation.status == "active" else "parked"))
    s.info["outbox_written"] = True


def claim(s: Session, worker: str, limit: int = 10) -> list[str]:
    """Take up to `limit` due rows for this worker; commits. Returns their ids."""
    query = (select(OutboxEntry.id).where(OutboxEntry.status == "pending", OutboxEntry.next_attempt_at <= now())
             .order_by(OutboxEntry.next_attempt_at).limit(limit))
    if s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for entry_id in s.scalars(query).all():
        # The status guard makes the claim safe where SKIP LOCKED does not exist (SQLite).
        result = s.execute(update(OutboxEntry).where(OutboxEntry.id == entry_id, OutboxEntry.status == "pending")
                           .values(status="in_flight", claimed_at=now(), claimed_by=worker))
        if result.rowcount == 1:
            claimed.append(entry_id)
    s.commit()
    return claimed


def finish(entry: OutboxEntry) -> None:
    entry.status, entry.done_at, entry.last_error = "done", now(), ""


def defer(entry: OutboxEntry, seconds: float, error: str) -> None:
    """Back to pending, later; not a failure (rate limits)."""
    _back_to_pending(entry, now() + timedelta(seconds=seconds), error)


def fail(entry: OutboxEntry, error: str) -> None:
    """A failed attempt: retry with exponential backoff and jitter, then dead-letter."""
    entry.attempts += 1
    entry.last_error = error[:2000]
    if entry.attempts >= MAX_ATTEMPTS:
        entry.status = "dead"
        return
    delay = min(BACKOFF_CAP, 2 ** entry.attempts) * (0.5 + random.random() / 2)
    _back_to_pending(entry, now() + timedelta(seconds=delay), entry.last_error)


def _back_to_pending(entry: OutboxEntry, due: datetime, error: str) -> None:
    """An in-flight row goes back to pending, or, when an edit made meanwhile already queued a
    newer pending row for the plan (at most one may exist), merges into that row: it keeps the
    later due time, the attempt count and the error, and this row is done ("merged")."""
    s = object_session(entry)
    newer = None
    if s is not None:
        with s.no_autoflush:
            newer = s.scalars(select(OutboxEntry).where(
                OutboxEntry.plan_id == entry.plan_id, OutboxEntry.status == "pending",
                OutboxEntry.id != entry.id)).first()
    if newer is None:
        entry.status, entry.next_attempt_at, entry.last_error = "pending", due, error
        return
    newer.next_attempt_at = max(clock_aware(newer.next_attempt_at), due)
    newer.attempts = max(newer.attempts or 0, entry.attempts or 0)
    newer.last_error = error
    entry.status, entry.done_at, entry.last_error = "done", now(), f"merged into {newer.id}"


def dead_letter(entry: OutboxEntry, error: str) -> None:
    entry.status, entry.last_error = "dead", error[:2000]
    entry.attempts += 1


def requeue(s: Session, entry: OutboxEntry) -> None:
    """Give a row back as pending, unless a pending row for the plan already covers it."""
    covered = s.scalars(select(OutboxEntry.id).where(
        OutboxEntry.plan_id == entry.plan_id, OutboxEntry.status == "pending",
        OutboxEntry.id != entry.id)).first()
    if covered:
        entry.status, entry.done_at, entry.last_error = "done", now(), "superseded"
    else:
        entry.status, entry.next_attempt_at, entry.claimed_by = "pending", now(), None


def park_installation(s: Session, installation: Installation, reason: str) -> None:
    installation.status, installation.status_reason = "needs_reconnect", reason
    s.execute(update(OutboxEntry).where(OutboxEntry.installation_id == installation.id,
                                        OutboxEntry.status.in_(("pending", "in_flight")))
              .values(status="parked", last_error=reason))


def unpark_installation(s: Session, installation: Installation) -> None:
    """After a reconnect: parked rows go back to the queue (one per plan)."""
    installation.status, installation.status_reason = "active", ""
    for entry in s.scalars(select(OutboxEntry).where(OutboxEntry.installation_id == installation.id,
                                                     OutboxEntry.status == "parked")):
        requeue(s, entry)
        s.flush()


def sweep(s: Session) -> int:
    """Give back rows whose worker died mid-push (claimed longer than the lease ago)."""
    stale = list(s.scalars(select(OutboxEntry).where(OutboxEntry.status == "in_flight",
                                                     OutboxEntry.claimed_at < now() - LEASE)))
    for entry in stale:
        requeue(s, entry)
        s.flush()
    s.commit()
    return len(stale)


def retry_dead(s: Session, tenant_id: str, plan_id: str) -> int:
    rows = list(s.scalars(select(OutboxEntry).where(OutboxEntry.tenant_id == tenant_id,
                                                    OutboxEntry.plan_id == plan_id,
                                                    OutboxEntry.status == "dead")))
    for entry in rows:
        entry.attempts = 0
        requeue(s, entry)
        s.flush()
    if rows:
        s.info["outbox_written"] = True
    return len(rows)


def next_due(s: Session) -> datetime | None:
    return s.scalars(select(OutboxEntry.next_attempt_at).where(OutboxEntry.status == "pending")
                     .order_by(OutboxEntry.next_attempt_at).limit(1)).first()

