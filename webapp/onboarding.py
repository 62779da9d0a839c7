"""After the signature: the plan follows the deal's outcome (issue 15, item 4).

The CRM only tells us the deal's stage (webapp/sync.py reads it by webhook-triggered pull or
by poll); this module knows no CRM. The outcome of a stage is "won", "lost" or "open":

- won: the plan enters its onboarding phase. The sales stages fold as done (their open
  milestones are completed), the pipeline's onboarding template is appended with dates
  counted from the close date, and a customer-success owner is set. The buyer link stays.
- lost: the plan is archived and its live links are switched off, each marked as closed by
  the deal (ShareLink.revoked_reason), so the buyer sees "this plan is closed".
- open again after a loss: the plan comes back, and so do exactly the links the loss closed
  (a link a rep revoked on purpose stays revoked).

Every transition is a no-op when the plan is already there, so repeated webhooks and
overlapping polls change nothing the second time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import clock, plan_templates, plans
from .domain_errors import Invalid, LimitReached
from .models import Activity, Milestone, Plan, ShareLink, Stage
from .schemas import _EMAIL
from .sharing import CLOSED_WITH_DEAL, is_active

@dataclass(frozen=True)
class HandOff:
    """A pipeline's hand-off settings, kept in its installation's settings ("hand_off", per
    pipeline): the template whose stages are added, the deal field naming the
    customer-success owner, and the owner when that field is empty."""

    template: str | None = None
    cs_owner_field: str | None = None
    cs_owner_default: str | None = None


def hand_off(installation, pipeline: str) -> HandOff:
    saved = ((installation.settings or {}).get("hand_off") or {}).get(pipeline) or {}
    return HandOff(saved.get("template"), saved.get("cs_owner_field"), saved.get("cs_owner_default"))


def outcome(stage_id: str | None, stages) -> str:
    """"won", "lost" or "open" for a deal stage (PipelineStage flags); unknown stages are open."""
    st = next((st for st in stages if st.id == stage_id), None)
    if st is None or not st.closed:
        return "open"
    return "won" if st.won else "lost"


def apply_outcome(s: Session, plan: Plan, result: str, *, close_date: date | None,
                  cs_owner: str | None, template: str | None, actor: str, day: date) -> bool:
    """Move the plan to where the deal's outcome puts it; True when something changed."""
    if result == "won":
        return start_onboarding(s, plan, close_date or day, cs_owner, template, actor)
    if result == "lost":
        return close(s, plan, actor)
    return reopen(s, plan, actor)


def start_onboarding(s: Session, plan: Plan, close_date: date, cs_owner: str | None,
                     template: str | None, actor: str) -> bool:
    if plan.phase == "onboarding":
        return False
    if plan.phase == "closed":
        _restore(s, plan)
    now = clock.now()
    for st in plan.stages:
        for m in st.milestones:
            if m.status != "done":
                m.status, m.completed_at, m.completed_by = "done", now, actor
                m.version, m.updated_at = m.version + 1, now
    added = _add_onboarding_stages(s, plan, template, close_date, cs_owner)
    plan.phase, plan.cs_owner = "onboarding", (cs_owner or None)
    s.flush()
    plans.touch(s, plan, actor, "plan.onboarding", plan.id,
                {"template": template if added else None, "close_date": close_date.isoformat(),
                 "cs_owner": cs_owner or ""})
    return True


def _add_onboarding_stages(s: Session, plan: Plan, key: str | None, close_date: date,
                           cs_owner: str | None) -> int:
    """The template's stages after the plan's own, dated from the close date ("start" is the
    close date, "go_live" the close date plus the template's default go-live days). A
    template that would pass the plan's size limits is left out rather than half added."""
    template = plan_templates.resolve(s, plan.tenant_id, key) if key else None
    if template is None:
        return 0
    _, stages = plan_templates.expand_template(template, close_date, None)
    count = sum(len(st.milestones) for st in plan.stages)
    try:
        plans.check_limit("stages_per_plan", len(plan.stages) + len(stages))
        plans.check_limit("milestones_per_plan", count + sum(len(st["milestones"]) for st in stages))
    except LimitReached:  # the hand-off still happens, without the template
        return 0
    owners = [{"name": cs_owner.split("@")[0], "email": cs_owner}] if cs_owner and "@" in cs_owner else []
    offset = max((st.position for st in plan.stages), default=-1) + 1
    for si, stage in enumerate(stages):
        st = Stage(tenant_id=plan.tenant_id, name=stage["name"], position=offset + si, phase="onboarding")
        plan.stages.append(st)
        for mi, fields in enumerate(stage["milestones"]):
            st.milestones.append(Milestone(
                tenant_id=plan.tenant_id, plan=plan, position=mi,
                owners=owners if fields["owner_side"] != "buyer" else [], **fields))
    return len(stages)


def close(s: Session, plan: Plan, actor: str) -> bool:
    if plan.phase == "closed":
        return False
    now = clock.now()
    revoked = []
    for link in _links(s, plan):
        if is_active(link, now):
            link.revoked_at, link.revoked_reason = now, CLOSED_WITH_DEAL
            revoked.append(link.id)
    archiving = plan.archived_at is None  # a plan archived for another reason stays so on reopen
    plan.phase = "closed"
    if archiving:
        plan.archived_at = now
    s.flush()
    plans.touch(s, plan, actor, "plan.closed", plan.id,
                {"reason": "deal lost", "links": revoked, "archived": archiving})
    return True


def reopen(s: Session, plan: Plan, actor: str) -> bool:
    """A lost deal open again. (A won deal moved back to an open stage keeps its onboarding:
    the stages added are the customer's plan now; a rep can remove them.)"""
    if plan.phase != "closed":
        return False
    restored = _restore(s, plan)
    s.flush()
    plans.touch(s, plan, actor, "plan.reopened", plan.id, {"reason": "deal reopened", "links": restored})
    return True


def _restore(s: Session, plan: Plan) -> list[str]:
    restored = []
    for link in _links(s, plan):
        if link.revoked_reason == CLOSED_WITH_DEAL:
            link.revoked_at, link.revoked_reason = None, None
            restored.append(link.id)
    last = s.scalars(select(Activity).where(Activity.tenant_id == plan.tenant_id,
                                            Activity.plan_id == plan.id, Activity.action == "plan.closed")
                     .order_by(Activity.at.desc()).limit(1)).first()
    if last is None or (last.detail or {}).get("archived", True):
        plan.archived_at = None
    plan.phase = "onboarding" if any(st.phase == "onboarding" for st in plan.stages) else "sales"
    return restored


def _links(s: Session, plan: Plan) -> list[ShareLink]:
    return list(s.scalars(select(ShareLink).where(ShareLink.tenant_id == plan.tenant_id,
                                                  ShareLink.plan_id == plan.id)))


# ---- settings (the API's and /settings's) ------------------------------------------------

_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}(\.[A-Za-z][A-Za-z0-9_]{0,79}){0,2}")


def save_hand_off(s: Session, installation, pipeline: str, template: str | None,
                  cs_owner_field: str | None, cs_owner_default: str | None) -> HandOff:
    """Validate and store a pipeline's hand-off settings (Invalid names the field)."""
    template = (template or "").strip() or None
    cs_owner_field = (cs_owner_field or "").strip() or None
    cs_owner_default = (cs_owner_default or "").strip() or None
    if template and plan_templates.resolve(s, installation.tenant_id, template) is None:
        raise Invalid("template", "pick one of the templates")
    if cs_owner_field and not _FIELD.fullmatch(cs_owner_field):
        raise Invalid("cs_owner_field", "a CRM field's API name, e.g. cs_owner_email or CS_Owner__c")
    if cs_owner_default and (len(cs_owner_default) > 254 or not _EMAIL.match(cs_owner_default)):
        raise Invalid("cs_owner_default", "an e-mail address, e.g. success@example.com")
    settings = dict(installation.settings or {})
    settings["hand_off"] = {**(settings.get("hand_off") or {}), pipeline: {
        "template": template, "cs_owner_field": cs_owner_field, "cs_owner_default": cs_owner_default}}
    installation.settings = settings
    return HandOff(template, cs_owner_field, cs_owner_default)
