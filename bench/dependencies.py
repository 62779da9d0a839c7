"""Dependency recalculation: a plan of 100 milestones in a chain, the first one's date moves.

    .venv/bin/python bench/dependencies.py        # PostgreSQL when reachable (bench/_setup.py)

Seeds one plan whose milestones 2..100 each depend on the one before ("3 days after it is
done"), then ROUNDS times moves milestone 1's due date through the domain command
(plans.update_milestone): the recalculation moves all 99 dependents, writes 99 slip-ledger
rows and the versions, in one transaction (one UPDATE for all the moved milestones, one
multi-row INSERT of their slip rows). Prints the time of the whole command with its commit
(wall clock, and this process's CPU time: on a shared, loaded machine most of the wall time
is the database server's turn), and of dependencies.recalculate alone (ordering, dates, its
UPDATE and INSERT; rolled back).
Goal (issue 15): < 50 ms, one transaction.
"""
from __future__ import annotations

import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _setup import make_app
from sqlalchemy import event, select

from webapp import dependencies, plans
from webapp.auth import ensure_tenant
from webapp.db import session
from webapp.models import Slip
from webapp.schemas import Dependency, MilestoneIn, MilestonePatch, PlanCreate, StageIn

CHAIN, ROUNDS = 100, 25


def seed(s) -> tuple[str, str, str]:
    tenant = ensure_tenant(s, "bench").id
    plan = plans.create_plan(s, tenant, PlanCreate(title="Chain"), "bench", date(2027, 1, 1))
    stage = plans.add_stage(s, plan, StageIn(name="All"), "bench")
    previous = None
    for i in range(CHAIN):
        deps = [Dependency(milestone_id=previous.id, days=3)] if previous else []
        previous = plans.add_milestone(s, plan, MilestoneIn(
            stage_id=stage.id, title=f"Step {i}", due_date=date(2027, 1, 1) if not deps else None,
            depends_on=deps), "bench")
        if i == 0:
            first = previous.id
    s.commit()
    return tenant, plan.id, first


def main() -> None:
    app, url = make_app()
    whole, cpu, recalc, statements = [], [], [], []
    with app.app_context():
        s = session()
        tenant, plan_id, first_id = seed(s)
        engine = s.get_bind()
        count = [0]
        event.listen(engine, "before_cursor_execute", lambda *a: count.__setitem__(0, count[0] + 1))
        for r in range(ROUNDS):
            s.expire_all()
            s = session()
            plan = plans.get_plan(s, tenant, plan_id)
            first = plans.get_milestone(s, tenant, first_id)
            _ = [m.depends_on for m in plan.milestones]  # loaded, as the request has it
            count[0] = 0
            new = date(2027, 1, 1) + timedelta(days=r + 1)
            start, start_cpu = time.perf_counter(), time.process_time()
            plans.update_milestone(s, first, MilestonePatch(due_date=new), "bench")
            s.commit()
            whole.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            statements.append(count[0])
            # dependencies.recalculate alone, on the loaded plan (rolled back)
            s = session()
            plan = plans.get_plan(s, tenant, plan_id)
            _ = [m.depends_on for m in plan.milestones]
            head = next(m for m in plan.milestones if m.id == first_id)
            head.due_date = new + timedelta(days=30)
            s.flush()
            start = time.perf_counter()
            moved = dependencies.recalculate(s, plan, "bench", {head.id})
            recalc.append(time.perf_counter() - start)
            assert len(moved) == CHAIN - 1
            s.rollback()
        last = s.scalars(select(Slip.reason).order_by(Slip.at.desc()).limit(1)).first()
    print(f"database: {url.split('://')[0]}; a chain of {CHAIN} milestones; {ROUNDS} rounds")
    print(f"move the first date, command + commit (99 moved, 99 slips): median "
          f"{statistics.median(whole) * 1000:.1f} ms, min {min(whole) * 1000:.1f} ms, max "
          f"{max(whole) * 1000:.1f} ms (goal < 50 ms); CPU of this process: median "
          f"{statistics.median(cpu) * 1000:.1f} ms; {statistics.median(statements):.0f} "
          f"SQL statements, one transaction")
    print(f"dependencies.recalculate alone (with its UPDATE and INSERT): median "
          f"{statistics.median(recalc) * 1000:.2f} ms, max {max(recalc) * 1000:.2f} ms")
    print(f"last slip reason: {last!r}")


if __name__ == "__main__":
    main()
