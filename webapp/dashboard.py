"""The rep's home (`/app`): one row per plan the person owns (admins: every plan of the tenant).

Five queries whatever the number of plans (tests/test_dashboard.py counts them): the plans
with their mirror (the deal's stage as last seen) and installation (its cached pipelines,
for the stage label); per-plan milestone aggregates and the next open milestone (a window
function), computed by the database with plans.derive's rules (a test compares the two);
the slip ledger summed per plan; the last buyer activity per plan. The page shows PAGE
rows at a time (filters and sort apply to all of them first).

Ownership: `plans.owner_user_id`, set to the person who created the plan from the card or
this page (users.claim_plan). The CRM's deal owner is not read here: it would cost a CRM
call per deal, and rule 1 (DESIGN §2) says pages never wait on a CRM.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from .models import Activity, Installation, Milestone, Mirror, Plan, Slip, Stage, User

QUIET_DAYS = 14
FILTERS = {
    "at_risk": "At risk",
    "overdue": "Overdue",
    "due_this_week": "Due this week",
    "slipped": "Slipped",
    "quiet": f"No buyer activity for {QUIET_DAYS} days",
}
SORTS = {
    "next_due": "Next due date", "risk": "Risk", "progress": "Progress",
    "slipped": "Days slipped", "activity": "Last buyer activity", "title": "Name",
}
PAGE = 50
RISK_RANK = {"off_track": 0, "at_risk": 1, "on_track": 2}


@dataclass
class Row:
    id: str
    title: str
    deal_provider: str | None
    deal_id: str | None
    stage_label: str | None
    progress: dict
    risk: str
    next_title: str | None
    next_due: date | None
    overdue_count: int
    slip_days: int
    last_buyer_at: datetime | None
    owner_name: str | None

    def matches(self, name: str, today: date) -> bool:
        if name == "at_risk":
            return self.risk in ("at_risk", "off_track")
        if name == "overdue":
            return self.overdue_count > 0
        if name == "due_this_week":
            return self.next_due is not None and today <= self.next_due <= today + timedelta(days=7)
        if name == "slipped":
            return self.slip_days > 0
        if name == "quiet":
            return self.last_buyer_at is None or (
                self.last_buyer_at.date() < today - timedelta(days=QUIET_DAYS))
        return True


def _stage_label(installation: Installation | None, mirror: Mirror | None) -> str | None:
    if mirror is None or not mirror.deal_stage:
        return None
    pipelines = ((installation.settings or {}).get("pipelines") or {}) if installation else {}
    for stage in pipelines.get(mirror.deal_pipeline or "", []):
        if stage.get("id") == mirror.deal_stage:
            return stage.get("label") or mirror.deal_stage
    return mirror.deal_stage


def rows_for(s: Session, user: User, today: date) -> list[Row]:
    """Every live plan the user may see, with its figures (4 queries)."""
    where = [Plan.tenant_id == user.tenant_id, Plan.archived_at.is_(None)]
    if user.role != "admin":
        where.append(Plan.owner_user_id == user.id)
    found = s.execute(
        select(Plan.id, Plan.title, Plan.deal_provider, Plan.deal_id, Mirror, Installation,
               User.name, User.email)
        .outerjoin(Mirror, Mirror.plan_id == Plan.id)
        .outerjoin(Installation, Installation.id == Mirror.installation_id)
        .outerjoin(User, User.id == Plan.owner_user_id)
        .where(*where)).all()
    ids = [r[0] for r in found]
    if not ids:
        return []
    figures = _figures(s, user.tenant_id, ids, today)
    slipped = dict(s.execute(
        select(Slip.plan_id, func.sum(case(
            (Slip.new_date > Slip.old_date, _days(s, Slip.new_date, Slip.old_date)), else_=0)))
        .where(Slip.tenant_id == user.tenant_id, Slip.plan_id.in_(ids))
        .group_by(Slip.plan_id)).all())
    buyer = dict(s.execute(
        select(Activity.plan_id, func.max(Activity.at))
        .where(Activity.tenant_id == user.tenant_id, Activity.plan_id.in_(ids),
               Activity.actor.like("buyer:%"))
        .group_by(Activity.plan_id)).all())
    rows = []
    for plan_id, title, provider, deal_id, mirror, installation, owner_name, owner_email in found:
        total, done, overdue, worst, next_title, next_due = figures.get(plan_id, EMPTY)
        rows.append(Row(
            id=plan_id, title=title, deal_provider=provider, deal_id=deal_id,
            stage_label=_stage_label(installation, mirror),
            progress={"done": done, "total": total,
                      "percent": round(100 * done / total) if total else 0},
            risk=RISKS[worst], next_title=next_title, next_due=next_due, overdue_count=overdue,
            slip_days=int(slipped.get(plan_id) or 0),
            last_buyer_at=_aware(buyer.get(plan_id)), owner_name=owner_name or owner_email))
    return rows


RISKS = ("on_track", "at_risk", "off_track")
EMPTY = (0, 0, 0, 0, None, None)


def _figures(s: Session, tenant_id: str, ids: list[str], today: date) -> dict:
    """Per plan: (total, done, overdue, worst risk 0..2, next title, next due), computed by
    the database in two queries (aggregates; the first open milestone by a window), the
    same rules as plans.derive: an overdue open milestone counts as at risk at least; the
    next milestone is the open one due soonest, undated ones last, plan order breaking ties."""
    is_open = Milestone.status != "done"
    overdue = is_open & (Milestone.due_date < today)
    risk = case((Milestone.risk == "off_track", 2),
                ((Milestone.risk == "at_risk") | (Milestone.due_date < today), 1), else_=0)
    aggregates = s.execute(
        select(Milestone.plan_id, func.count(),
               func.sum(case((Milestone.status == "done", 1), else_=0)),
               func.sum(case((overdue, 1), else_=0)),
               func.max(case((is_open, risk), else_=0)))
        .where(Milestone.tenant_id == tenant_id, Milestone.plan_id.in_(ids))
        .group_by(Milestone.plan_id)).all()
    rank = func.row_number().over(
        partition_by=Milestone.plan_id,
        order_by=(Milestone.due_date.is_(None), Milestone.due_date, Stage.position,
                  Milestone.position)).label("rank")
    ranked = (select(Milestone.plan_id, Milestone.title, Milestone.due_date, rank)
              .join(Stage, Stage.id == Milestone.stage_id)
              .where(Milestone.tenant_id == tenant_id, Milestone.plan_id.in_(ids), is_open)
              .subquery())
    upcoming = {row[0]: (row[1], row[2]) for row in s.execute(
        select(ranked.c.plan_id, ranked.c.title, ranked.c.due_date).where(ranked.c.rank == 1))}
    return {plan_id: (total, int(done or 0), int(late or 0), int(worst or 0),
                      *upcoming.get(plan_id, (None, None)))
            for plan_id, total, done, late, worst in aggregates}


def _days(s: Session, later, earlier):
    """Whole days between two DATE columns, in the dialect at hand."""
    if s.get_bind().dialect.name == "sqlite":
        return func.julianday(later) - func.julianday(earlier)
    return later - earlier  # PostgreSQL: date - date is an integer


def _aware(value):
    from . import clock

    return clock.aware(value) if isinstance(value, datetime) else (
        clock.aware(datetime.fromisoformat(value)) if isinstance(value, str) else None)


def view(rows: list[Row], today: date, *, filters: set[str], sort: str, q: str) -> list[Row]:
    """Filter (every chosen filter must hold), search (name or deal id) and sort."""
    q = q.strip().lower()
    chosen = [f for f in filters if f in FILTERS]
    out = [r for r in rows if all(r.matches(f, today) for f in chosen)
           and (not q or q in r.title.lower() or q in (r.deal_id or "").lower())]
    far = date.max
    keys = {
        "next_due": lambda r: (r.next_due or far, r.title.lower()),
        "risk": lambda r: (RISK_RANK.get(r.risk, 3), r.next_due or far),
        "progress": lambda r: (r.progress["percent"], r.title.lower()),
        "slipped": lambda r: (-r.slip_days, r.title.lower()),
        "activity": lambda r: (r.last_buyer_at is None,
                               -(r.last_buyer_at.timestamp() if r.last_buyer_at else 0)),
        "title": lambda r: r.title.lower(),
    }
    return sorted(out, key=keys.get(sort, keys["next_due"]))
