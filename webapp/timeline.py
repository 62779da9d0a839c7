"""Buyer activity on the CRM timeline: what a buyer did, queued for the deal's timeline.

A buyer's completed milestone, proposed or confirmed date, comment, and the first opening of
the buyer link each day become a `CrmActivity` row, in the same transaction as the action
(plans.touch calls `on_change`; the buyer page calls `link_opened`). Nothing is sent from the
buyer's request: the row rides with the plan's next push through the outbox (webapp/sync.py),
so it is batched, rate-limited and retried like every other CRM write. HubSpot gets timeline
events on the deal (or notes, when the app has no timeline access), Salesforce completed Tasks
on the Opportunity inside the push's own Composite request (connector/*.py).

Per installation: `settings["timeline"]`, on unless switched off in /settings -> Connections
or through `PATCH /api/v1/installations/{id}`.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connector.base import ActivityDoc

from . import clock, outbox
from .models import CrmActivity, Installation, Milestone, Plan

BATCH = 200  # activities sent per push at most; the rest wait for the next push
OPENED_EVERY = timedelta(days=1)  # "opened the buyer link": at most once a day per viewer

# plans.touch action -> (kind, how the timeline says it)
ACTIONS = {
    "milestone.updated": "milestone_completed",
    "date.proposed": "date_proposed",
    "date.confirmed": "date_confirmed",
    "comment.added": "comment",
}


def switched_on(installation: Installation) -> bool:
    """The installation's setting (on unless an admin turned it off)."""
    return (installation.settings or {}).get("timeline", True) is not False


def enabled(installation: Installation | None) -> bool:
    """Does this CRM account take buyer activity? (Never a disconnected one: nothing is pushed.)"""
    return installation is not None and installation.status != "uninstalled" and switched_on(installation)


def set_enabled(installation: Installation, on: bool) -> None:
    installation.settings = {**(installation.settings or {}), "timeline": bool(on)}


def _who(actor: str) -> str:
    return actor.removeprefix("buyer:").strip() or "A buyer"


def _text(action: str, detail: dict) -> tuple[str, str]:
    """(subject, body) for a buyer action, in words a rep reads on the timeline."""
    milestone = str(detail.get("milestone") or "")
    if action == "milestone.updated":
        return f"Milestone completed: {milestone}", ""
    if action == "date.proposed":
        return (f"Date proposed: {milestone}",
                f"From {detail.get('from') or 'no date'} to {detail.get('to')}. "
                f"Reason: {detail.get('reason') or ''}".strip())
    if action == "date.confirmed":
        return f"Date confirmed: {milestone}", f"Due {detail.get('due_date')}"
    return f"Comment on {milestone}", str(detail.get("excerpt") or "")


def on_change(s: Session, plan: Plan, actor: str, action: str, subject_id, detail: dict) -> None:
    """Called by plans.touch (same transaction): queue a buyer's action for the timeline."""
    if not actor.startswith("buyer:") or action not in ACTIONS:
        return
    if action == "milestone.updated":
        status = (detail or {}).get("status")
        if not (isinstance(status, (list, tuple)) and status and status[-1] == "done"):
            return
        m = s.get(Milestone, subject_id)
        detail = {**detail, "milestone": m.title if m else ""}
    if not enabled(outbox.installation_for(s, plan)):
        return
    subject, body = _text(action, detail or {})
    _add(s, plan, ACTIONS[action], actor, subject, body)


def opened_again(last_seen) -> bool:
    """Is a view after `last_seen` (None: never) worth a "link opened" entry? Once a day."""
    return last_seen is None or clock.aware(last_seen) <= clock.now() - OPENED_EVERY


def link_opened(s: Session, link, buyer) -> None:
    """`link`'s page was opened by `buyer` (None: not identified) for the first time today:
    one timeline entry, and the plan's next push carries it (two reads: the plan, its CRM)."""
    plan = s.get(Plan, link.plan_id)
    installation = outbox.installation_for(s, plan) if plan is not None else None
    if not enabled(installation) or not plan.deal_id:
        return
    actor = buyer.actor if buyer else "buyer:"
    _add(s, plan, "link_opened", actor, "Buyer link opened", "")
    outbox.record(s, plan)


def _add(s: Session, plan: Plan, kind: str, actor: str, subject: str, body: str) -> None:
    s.add(CrmActivity(tenant_id=plan.tenant_id, plan_id=plan.id, kind=kind, actor=actor[:200],
                      subject=f"{_who(actor)}: {subject}"[:300], body=body[:2000]))


def pending(s: Session, plan: Plan, installation: Installation) -> list[CrmActivity]:
    """Rows the next push sends (oldest first). Switched off: none are sent, and the queued
    ones are dropped, so switching it back on does not replay old activity."""
    rows = list(s.scalars(select(CrmActivity).where(
        CrmActivity.plan_id == plan.id, CrmActivity.pushed_at.is_(None))
        .order_by(CrmActivity.at, CrmActivity.id).limit(BATCH)))
    if rows and not enabled(installation):
        mark_pushed(s, [r.id for r in rows])
        return []
    return rows


def documents(rows: list[CrmActivity]) -> tuple[ActivityDoc, ...]:
    return tuple(ActivityDoc(uuid=r.id, kind=r.kind, subject=r.subject, body=r.body,
                             at=clock.aware(r.at), actor=_who(r.actor)) for r in rows)


def mark_pushed(s: Session, ids: list[str]) -> None:
    if ids:
        s.execute(update(CrmActivity).where(CrmActivity.id.in_(ids)).values(pushed_at=clock.now()))
