"""Dependent milestones: "due N days after X is done" (or after X's due date).

A milestone's `depends_on` lists other milestones of its plan, each with a number of
days and an anchor: `done` (the day X was completed; while X is open, X's due date
stands in for it) or `due` (X's due date). The dependent is due on the latest of those
dates. When X completes or its date moves, `recalculate` moves every milestone
downstream of it, in dependency order, in the caller's transaction: each move bumps the
milestone's version and is written to the slip ledger with the reason "moved with X"
(X: the milestone that set the new date). Cycles are refused when a dependency is set.
"""
from __future__ import annotations

from collections import deque
from datetime import date, timedelta

from sqlalchemy import case, insert, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from . import clock
from .domain_errors import Invalid
from .models import Milestone, Plan, Slip, new_id
from .schemas import FIRST_DAY, LAST_DAY


def check(plan: Plan, m: Milestone | None, deps) -> list[dict]:
    """The stored form of `deps` (schemas.Dependency) for milestone `m` (None: a new one),
    refused with a 422 naming the problem: an unknown id, itself, or a cycle."""
    by_id = {x.id: x for x in plan.milestones}
    out, seen = [], set()
    for d in deps:
        if m is not None and d.milestone_id == m.id:
            raise Invalid("depends_on", "a milestone cannot depend on itself")
        if d.milestone_id not in by_id:
            raise Invalid("depends_on", f"no milestone {d.milestone_id} in this plan")
        if d.milestone_id in seen:
            continue
        seen.add(d.milestone_id)
        out.append({"milestone_id": d.milestone_id, "days": d.days, "after": d.after})
    if m is not None and m.id is not None:
        cycle = _cycle_through(by_id, m, out)
        if cycle:
            names = " → ".join(f"“{by_id[i].title}”" for i in cycle)
            raise Invalid("depends_on", f"this would make a cycle: {names}; a milestone cannot "
                                        "wait, even indirectly, on itself")
    return out


def _cycle_through(by_id: dict, m: Milestone, deps: list[dict]) -> list[str] | None:
    """The ids of a path m → ... → m if m depended on `deps`, else None (breadth-first)."""
    start = [d["milestone_id"] for d in deps]
    parent: dict[str, str] = {i: m.id for i in start}
    queue = deque(start)
    while queue:
        current = queue.popleft()
        if current == m.id:  # back at m: walk the parents to m's own dependency
            path, node = [m.id], parent[m.id]
            while node != m.id:
                path.append(node)
                node = parent[node]
            return [m.id, *reversed(path[1:]), m.id]
        for d in by_id[current].depends_on or []:
            nxt = d["milestone_id"]
            if nxt not in parent and nxt in by_id:
                parent[nxt] = current
                queue.append(nxt)
    return None


def anchor_date(x: Milestone, after: str) -> date | None:
    if after == "done" and x.status == "done" and x.completed_at is not None:
        return x.completed_at.date()
    return x.due_date


def _order(milestones: list[Milestone]) -> list[Milestone]:
    """Milestones in dependency order (Kahn); stored data is acyclic (`check`)."""
    by_id = {x.id: x for x in milestones}
    waiting = {x.id: 0 for x in milestones}
    followers: dict[str, list[str]] = {x.id: [] for x in milestones}
    for x in milestones:
        for d in x.depends_on or []:
            if d["milestone_id"] in by_id:
                waiting[x.id] += 1
                followers[d["milestone_id"]].append(x.id)
    queue = deque(i for i, n in waiting.items() if n == 0)
    out = []
    while queue:
        current = queue.popleft()
        out.append(by_id[current])
        for f in followers[current]:
            waiting[f] -= 1
            if waiting[f] == 0:
                queue.append(f)
    return out


def recalculate(s: Session, plan: Plan, actor: str, roots: set[str],
                include_roots: bool = False) -> list[Milestone]:
    """Move the milestones downstream of `roots` (and the roots themselves when asked) to
    the date their dependencies give; returns the moved ones, in order."""

    milestones = list(plan.milestones)
    by_id = {x.id: x for x in milestones}
    affected = set(roots)
    moves: dict[str, tuple[Milestone, date | None, date, Milestone]] = {}
    for m in _order(milestones):
        deps = m.depends_on or []
        if not any(d["milestone_id"] in affected for d in deps) and not (
                include_roots and m.id in roots):
            continue
        affected.add(m.id)
        new, cause = _due_from(deps, by_id)
        if new is None or new == m.due_date:
            continue
        moves[m.id] = (m, m.due_date, new, cause)
        set_committed_value(m, "due_date", new)  # read by the milestones after it
    _write(s, list(moves.values()), actor)
    return [m for m, *_ in moves.values()]


def _write(s: Session, moves: list, actor: str) -> None:
    """One UPDATE for every moved milestone (a CASE on the id) and one INSERT for all their
    slip rows (SQLAlchemy's "insertmanyvalues": one multi-row VALUES statement rather than
    one execution per row; no ORM objects for the slips, whose construction cost more than
    the recalculation itself).

    The versions are bumped without a condition, as plans.touch bumps the plan's for a
    child's change: the dependents' dates follow their predecessor, whoever edited them.
    """
    if not moves:
        return
    now, table, slips = clock.now(), Milestone.__table__, Slip.__table__
    s.execute(update(table).where(table.c.id.in_([m.id for m, *_ in moves])).values(
        due_date=case({m.id: new for m, _old, new, _c in moves}, value=table.c.id),
        version=table.c.version + 1, updated_at=now))
    s.execute(insert(slips).returning(slips.c.id), [
        {"id": new_id(), "tenant_id": m.tenant_id, "plan_id": m.plan_id, "milestone_id": m.id,
         "old_date": old, "new_date": new, "actor": actor, "reason": f"moved with {cause.title}",
         "at": now} for m, old, new, cause in moves])
    for m, *_ in moves:
        set_committed_value(m, "version", m.version + 1)
        set_committed_value(m, "updated_at", now)


def _due_from(deps: list[dict], by_id: dict) -> tuple[date | None, Milestone | None]:
    best, cause = None, None
    for d in deps:
        x = by_id.get(d["milestone_id"])
        base = x and anchor_date(x, d["after"])
        if base is None:
            continue
        candidate = min(max(base + timedelta(days=d["days"]), FIRST_DAY), LAST_DAY)
        if best is None or candidate > best:
            best, cause = candidate, x
    return best, cause


def forget(plan: Plan, gone: Milestone) -> None:
    """Drop dependencies on a deleted milestone (the dependents keep their dates)."""
    for x in plan.milestones:
        if x is not gone and any(d["milestone_id"] == gone.id for d in x.depends_on or []):
            x.depends_on = [d for d in x.depends_on if d["milestone_id"] != gone.id]
            x.version += 1


def waiting_on(m: Milestone) -> list[str]:
    """Titles of the open milestones `m` depends on ("waiting on X")."""
    if not m.depends_on or m.status == "done":
        return []
    by_id = {x.id: x for x in m.plan.milestones}
    return [by_id[d["milestone_id"]].title for d in m.depends_on
            if d["milestone_id"] in by_id and by_id[d["milestone_id"]].status != "done"]
