"""The rep's home (`/app`): one row per plan the person owns (admins: every plan of the tenant).

Seven queries whatever the number of plans (tests/test_dashboard.py counts them): the plans
with their mirror (the deal's stage as last seen); the installations' cached pipelines (for
the stage label); per-plan milestone aggregates (progress, overdue, risk, next due date),
computed by the database with plans.derive's rules (a test compares the two); the slip
ledger summed per plan; the last buyer activity per plan; and, for the PAGE rows shown
only, the next milestone's title (a window function). Filters, sort and search apply to
every plan first. The figures' queries name the plans by a subquery of the same WHERE,
not by a list of ids (bench/dashboard.py: 500 bind parameters cost more than the queries).

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


def rows_for(s: Session, user: User, today: date) -> list[Row]:
    """Every live plan the user may see, with its figures but not the next milestone's title
    (`fill_next_titles` adds it to the rows shown). Six queries."""
    where = [Plan.tenant_id == user.tenant_id, Plan.archived_at.is_(None)]
    if user.role != "admin":
        where.append(Plan.owner_user_id == user.id)
    found = s.execute(
        select(Plan.id, Plan.title, Plan.deal_provider, Plan.deal_id, Mirror.deal_pipeline,
               Mirror.deal_stage, Mirror.installation_id, User.name, User.email)
        .outerjoin(Mirror, Mirror.plan_id == Plan.id)
        .outerjoin(User, User.id == Plan.owner_user_id)
        .where(*where)).all()
    if not found:
        return []
    ids = select(Plan.id).where(*where).scalar_subquery()
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
    labels = _StageLabels(dict(s.execute(  # a tenant has one installation per CRM account
        select(Installation.id, Installation.settings)
        .where(Installation.tenant_id == user.tenant_id)).all()))
    rows = []
    for plan_id, title, provider, deal_id, pipeline, stage, installation_id, owner_name, \
            owner_email in found:
        total, done, overdue, worst, next_due = figures.get(plan_id, EMPTY)
        rows.append(Row(
            id=plan_id, title=title, deal_provider=provider, deal_id=deal_id,
            stage_label=labels.label(installation_id, pipeline, stage),
            progress={"done": done, "total": total,
                      "percent": round(100 * done / total) if total else 0},
            risk=RISKS[worst], next_title=None, next_due=next_due, overdue_count=overdue,
            slip_days=int(slipped.get(plan_id) or 0),
            last_buyer_at=_aware(buyer.get(plan_id)), owner_name=owner_name or owner_email))
    return rows


class _StageLabels:
    """The CRM's label of a deal stage, from the installation's cached pipelines, looked up
    in a dict per (installation, pipeline) made once per page."""

    def __init__(self, settings: dict[str, dict | None]):
        self.settings = settings
        self.tables: dict[tuple, dict] = {}

    def label(self, installation_id: str | None, pipeline: str | None,
              stage: str | None) -> str | None:
        if not stage:
            return None
        key = (installation_id, pipeline or "")
        if key not in self.tables:
            pipelines = (self.settings.get(installation_id) or {}).get("pipelines") or {}
            self.tables[key] = {st.get("id"): st.get("label") for st in pipelines.get(key[1], [])}
        return self.tables[key].get(stage) or stage


RISKS = ("on_track", "at_risk", "off_track")
EMPTY = (0, 0, 0, 0, None)


def _figures(s: Session, tenant_id: str, ids, today: date) -> dict:
    """Per plan: (total, done, overdue, worst risk 0..2, next due), computed by the database
    in one grouped query with plans.derive's rules: an overdue open milestone counts as at
    risk at least; the next milestone is the open one due soonest (undated ones last), so
    its date is the earliest open due date. Its title is read for the rows shown only
    (`fill_next_titles`): ranking every open milestone of 500 plans cost more than the
    rest of the page's queries together."""
    is_open = Milestone.status != "done"
    overdue = is_open & (Milestone.due_date < today)
    risk = case((Milestone.risk == "off_track", 2),
                ((Milestone.risk == "at_risk") | (Milestone.due_date < today), 1), else_=0)
    aggregates = s.execute(
        select(Milestone.plan_id, func.count(),
               func.sum(case((Milestone.status == "done", 1), else_=0)),
               func.sum(case((overdue, 1), else_=0)),
               func.max(case((is_open, risk), else_=0)),
               func.min(case((is_open, Milestone.due_date))))
        .where(Milestone.tenant_id == tenant_id, Milestone.plan_id.in_(ids))
        .group_by(Milestone.plan_id)).all()
    return {plan_id: (total, int(done or 0), int(late or 0), int(worst or 0), _date(due))
            for plan_id, total, done, late, worst, due in aggregates}


def _date(value) -> date | None:
    """MIN over a DATE column: a date (PostgreSQL) or its ISO text (SQLite)."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def fill_next_titles(s: Session, tenant_id: str, rows: list[Row]) -> list[Row]:
    """Set next_title on `rows` (the page shown): per plan, the first open milestone by due
    date (undated last), plan order (stage, then position) breaking ties. One query."""
    ids = [r.id for r in rows if r.next_title is None]
    if not ids:
        return rows
    rank = func.row_number().over(
        partition_by=Milestone.plan_id,
        order_by=(Milestone.due_date.is_(None), Milestone.due_date, Stage.position,
                  Milestone.position)).label("rank")
    ranked = (select(Milestone.plan_id, Milestone.title, rank)
              .join(Stage, Stage.id == Milestone.stage_id)
              .where(Milestone.tenant_id == tenant_id, Milestone.plan_id.in_(ids),
                     Milestone.status != "done")
              .subquery())
    titles = dict(s.execute(select(ranked.c.plan_id, ranked.c.title).where(ranked.c.rank == 1)).all())
    for r in rows:
        r.next_title = titles.get(r.id, r.next_title)
    return rows


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
