"""A synthetic plan history with known probabilities: `mutualplan demo --history`, the tests
(tests/test_analytics.py) and the benchmark (bench/analytics.py).

Each plan follows the enterprise template's eleven milestones. It reaches a furthest step F
(drawn from REACH), then closes won with probability WIN_GIVEN_FURTHEST[F] (or stays open).
Milestones take a milestone-specific number of days (legal review and the commercial
agreement are the slow ones), some slip (the same two most), and buyers who end up winning
visit and act more. Rows are bulk-inserted: 10,000 plans take seconds, not minutes.

The history's deals sit in an installation of its own, `status="uninstalled"`, so nothing
of it is ever pushed to a CRM (outbox.record skips uninstalled installations); its cached
pipeline says which stages are closed won / closed lost, as a real one would.
"""
from __future__ import annotations

import random
import secrets
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from . import clock, rollups
from .models import (
    Activity,
    BuyerView,
    Installation,
    Milestone,
    Mirror,
    Plan,
    ShareLink,
    Slip,
    Stage,
    Stakeholder,
    new_id,
)
from .plan_templates import TEMPLATES

HISTORY_ACCOUNT = "demo-history"  # + the tenant id: installations are unique per account


def history_account(tenant_id: str) -> str:
    return f"{HISTORY_ACCOUNT}-{tenant_id}"
PIPELINE = [  # (id, label, probability, closed, won)
    ("appointmentscheduled", "Appointment scheduled", 0.2, False, False),
    ("qualifiedtobuy", "Qualified to buy", 0.4, False, False),
    ("presentationscheduled", "Presentation scheduled", 0.6, False, False),
    ("decisionmakerboughtin", "Decision maker bought-in", 0.8, False, False),
    ("contractsent", "Contract sent", 0.9, False, False),
    ("closedwon", "Closed won", 1.0, True, True),
    ("closedlost", "Closed lost", 0.0, True, False),
]
# P(furthest step = F), F = 0..11 (0: nothing done), and P(won | furthest = F).
REACH = [0.04, 0.08, 0.08, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.08, 0.06, 0.06]
WIN_GIVEN_FURTHEST = [0.0, 0.02, 0.04, 0.08, 0.12, 0.18, 0.25, 0.4, 0.6, 0.8, 0.9, 0.95]
SLOW = {"Legal and compliance review": 2.5, "Commercial agreement": 1.8,
        "Follow-up demo with executive team": 1.4}
SLIPPY = {"Legal and compliance review": 0.5, "Commercial agreement": 0.35,
          "Customized product demo": 0.15}


def template_milestones() -> list[tuple[str, str]]:
    """(stage name, milestone title) of the enterprise template, in plan order."""
    return [(st["name"], m["title"]) for st in TEMPLATES["enterprise"]["stages"]
            for m in st["milestones"]]


def p_reached(step: int) -> float:
    """The known P(won | reached `step`) of the generating process (0 = any plan)."""
    mass = [REACH[f] for f in range(step, len(REACH))]
    wins = [REACH[f] * WIN_GIVEN_FURTHEST[f] for f in range(step, len(REACH))]
    return sum(wins) / sum(mass)


def history_installation(s: Session, tenant_id: str) -> Installation:
    row = s.scalars(select(Installation).where(Installation.provider == "hubspot",
                                               Installation.account_id == history_account(tenant_id),
                                               Installation.tenant_id == tenant_id)).one_or_none()
    if row is None:
        stages = [{"id": i, "label": label, "position": n, "probability": p, "closed": c, "won": w}
                  for n, (i, label, p, c, w) in enumerate(PIPELINE)]
        row = Installation(tenant_id=tenant_id, provider="hubspot",
                           account_id=history_account(tenant_id),
                           status="uninstalled", status_reason="demo history (never synced)",
                           settings={"pipelines": {"default": stages}, "mode": "summary"})
        s.add(row)
        s.flush()
    return row


def _draw_furthest(rng: random.Random) -> int:
    return rng.choices(range(len(REACH)), weights=REACH)[0]


def seed(s: Session, tenant_id: str, *, closed: int = 300, open_plans: int = 40, seed: int = 7,
         now: datetime | None = None, owners: list[str] | None = None,
         buyer_activity: bool = True, reviews: int = 0) -> dict:
    """Insert `closed` closed plans and `open_plans` open ones; returns what was made, with
    each open plan's known win probability (for calibration)."""
    rng = random.Random(seed)
    now = now or clock.now()
    installation = history_installation(s, tenant_id)
    # `reviews`: extra post-signature milestones (the benchmark's 12 per plan), never done.
    layout = template_milestones() + [("Implementation", f"Business review {i + 1}")
                                      for i in range(reviews)]
    rows: dict[type, list[dict]] = {t: [] for t in (Plan, Stage, Milestone, Mirror, Slip,
                                                     Activity, BuyerView, ShareLink, Stakeholder)}
    known, outcomes = {}, {}
    for n in range(closed + open_plans):
        is_open = n >= closed
        furthest = _draw_furthest(rng)
        if is_open:
            # A plan under way, seen at step `furthest`; where it will end is drawn from REACH
            # given that it got this far, so its true P(won) is exactly p_reached(furthest).
            final = rng.choices(range(furthest, len(REACH)), weights=REACH[furthest:])[0]
            won = rng.random() < WIN_GIVEN_FURTHEST[final]
        else:
            won = rng.random() < WIN_GIVEN_FURTHEST[furthest]
        age = rng.randint(20, 330)
        created = now - timedelta(days=age + (0 if is_open else 40), hours=rng.random() * 8)
        plan_id = new_id()
        known[plan_id], outcomes[plan_id] = p_reached(furthest), won
        rows[Plan].append({
            "id": plan_id, "tenant_id": tenant_id, "title": f"History deal {n + 1:05d}", "template": "enterprise",
            "start_date": created.date(), "deal_provider": "hubspot",
            "deal_account_id": installation.account_id,
            "deal_id": f"h{seed}-{n}", "owner_user_id": rng.choice(owners) if owners else None,
            "created_by": "demo-history", "version": 1, "created_at": created, "updated_at": created,
            "value_summary": "", "objectives": {}, "constraints": {}, "resources": []})
        if is_open:
            stage = PIPELINE[min(4, furthest * 5 // 13)][0]
        else:
            stage = "closedwon" if won else "closedlost"
        rows[Mirror].append({"plan_id": plan_id, "tenant_id": tenant_id,
                                 "installation_id": installation.id, "remote_ids": {},
                                 "pushed_hashes": {}, "pushed_deal": {}, "deal_pipeline": "default",
                                 "deal_stage": stage, "pushes": 0})
        stage_ids, at = {}, created
        for step, (stage_name, title) in enumerate(layout, start=1):
            if stage_name not in stage_ids:
                stage_ids[stage_name] = new_id()
                rows[Stage].append({"id": stage_ids[stage_name], "tenant_id": tenant_id,
                                        "plan_id": plan_id, "name": stage_name,
                                        "position": len(stage_ids) - 1, "version": 1})
            days = rng.gammavariate(2.0, 3.0 * SLOW.get(title, 1.0))
            due = (at + timedelta(days=8 * SLOW.get(title, 1.0))).date()
            done = step <= furthest
            at = at + timedelta(days=days)
            mid = new_id()
            rows[Milestone].append({
                "id": mid, "tenant_id": tenant_id, "plan_id": plan_id, "stage_id": stage_ids[stage_name],
                "title": title, "description": "", "owner_side": "both", "owners": [], "due_date": due,
                "status": "done" if done else "not_started", "risk": "on_track", "internal": False,
                "position": step - 1, "completed_at": min(at, now) if done else None,
                "completed_by": "demo-history" if done else None, "version": 1, "created_at": created,
                "updated_at": created})
            if rng.random() < SLIPPY.get(title, 0.05):
                slipped = rng.randint(3, 25)
                rows[Slip].append({"id": new_id(), "tenant_id": tenant_id, "plan_id": plan_id,
                                       "milestone_id": mid, "old_date": due,
                                       "new_date": due + timedelta(days=slipped),
                                       "actor": "demo-history", "reason": "", "at": created})
        if buyer_activity:
            _engagement(rows, rng, tenant_id, plan_id, created, won, n, now)
    for model in (Plan, Stage, Milestone, Mirror, Slip, ShareLink, BuyerView, Activity,
                  Stakeholder):
        for chunk in range(0, len(rows[model]), 2000):
            if rows[model][chunk:chunk + 2000]:
                s.execute(insert(model), rows[model][chunk:chunk + 2000])
    rollups.refresh(s, [row["id"] for row in rows[Plan]])  # bulk inserts skip the session events
    return {"closed": closed, "open": open_plans, "milestones": len(rows[Milestone]),
            "known": {p: known[p] for p in list(known)[closed:]},
            "outcomes": {p: outcomes[p] for p in list(known)[closed:]}}


def _engagement(rows, rng, tenant_id, plan_id, created, won, n, now) -> None:
    link_id = new_id()
    rows[ShareLink].append({"id": link_id, "tenant_id": tenant_id, "plan_id": plan_id,
                                "token_hash": secrets.token_hex(32),
                                "salt": new_id(), "label": "", "created_by": "demo-history",
                                "created_at": created})
    people = [("Dana", "decision_maker"), ("Sam", "champion"), ("Lee", "legal")]
    for i, (name, role) in enumerate(people):
        email = f"{name.lower()}{n}@buyer.example"
        rows[Stakeholder].append({"id": new_id(), "tenant_id": tenant_id, "plan_id": plan_id, "name": name,
                                      "title": "", "email": email, "side": "buyer", "role": role,
                                      "position": i, "version": 1})
        views = int(rng.expovariate(1 / (9 if won else 3)))
        if views:
            last = min(created + timedelta(days=rng.randint(1, 60)), now)
            rows[BuyerView].append({"id": new_id(), "tenant_id": tenant_id, "plan_id": plan_id,
                                        "link_id": link_id, "viewer_email": email, "viewer_name": name,
                                        "views": views, "first_seen": created, "last_seen": last})
        for _ in range(int(rng.expovariate(1 / (3 if won else 1)))):
            rows[Activity].append({"id": new_id(), "tenant_id": tenant_id, "plan_id": plan_id,
                                       "actor": f"buyer:{name} <{email}>", "action": "comment.add",
                                       "subject_id": None, "detail": {},
                                       "at": min(created + timedelta(days=rng.randint(1, 60)), now)})
