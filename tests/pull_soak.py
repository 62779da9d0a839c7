"""The pull fault soak (issue 11), shared by tests/test_pull_soak.py and bench/pull_soak.py.

Rounds of: reps edit milestone records in the CRM (status, risk) and create a milestone record
there; a fault storm is queued at the sandbox (HubSpot: 429s with Retry-After, short ones waited
inline and long ones deferring the pull, and 500/503s; Salesforce, which answers limits with
403 REQUEST_LIMIT_EXCEEDED and no Retry-After, that and 500/503s); a pull runs through it (it
may fail half-way: its checkpoint and the error policy take over); more edits land before the
relay pushes (through the same faults). Then the faults stop and pulls and relays run until
nothing is left to do, and the outcome is compared with what the reps did:

- lost remote edits: the last value a rep gave a field that our database does not have;
- duplicates: a rep's milestone record imported more than once, or our milestone written to
  more than one live CRM record (a twin), or a CRM record left without our UUID.

The CRM side is an adapter (`HubSpotSide`, `SalesforceSide`); the app, the installation and
the plans come from the caller (the tests' fixtures or the bench's set-up).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from sqlalchemy import select, update

from webapp import jobs
from webapp.db import session
from webapp.models import Installation, Milestone, OutboxEntry

STATUSES = ("not_started", "in_progress", "done")
RISKS = ("on_track", "at_risk", "off_track")


class HubSpotSide:
    """A HubSpot portal in custom-objects mode (the sandbox of sandboxes/hubspot)."""

    fields = {"status": "mp_status", "risk": "mp_risk"}

    def __init__(self, sb, portal: int, types: dict):
        self.sb, self.portal, self.types = sb, portal, types

    def advance(self) -> None:
        self.sb.advance(2)

    def records(self) -> list[dict]:
        """Live milestone records as {"id", "uuid", "title", "plan"}."""
        out = []
        for r in self.sb.records(self.portal, self.types["milestone"]):
            p = r["properties"]
            out.append({"id": r["id"], "uuid": p.get("mp_uuid") or "", "title": p.get("mp_title"),
                        "plan": p.get("mp_plan_uuid") or ""})
        return out

    def plan_record(self, plan_id: str) -> str:
        return next(r["id"] for r in self.sb.records(self.portal, self.types["plan"])
                    if r["properties"].get("mp_uuid") == plan_id)

    def edit(self, record_id: str, name: str, value: str) -> None:
        self.sb.ui_edit(self.portal, self.types["milestone"], record_id, {self.fields[name]: value})

    def create(self, plan_id: str, title: str) -> None:
        self.sb.ui_create_record(self.portal, self.types["milestone"], {"mp_title": title},
                                 associations=[(self.types["plan"], self.plan_record(plan_id))])

    def storm(self, rng: random.Random) -> str:
        kind = rng.choice(("429", "429-long", "500", "503"))
        times = rng.randint(1, 6)
        if kind.startswith("429"):
            # HubSpot's 429 body; a Retry-After within max_inline_wait is slept inline, a longer
            # one makes the pull reschedule itself (RateLimited).
            self.sb.rate_limit_retry_after = 30 if kind == "429-long" else 1
            self.sb.inject("429", times=times)
        else:
            self.sb.inject(kind, times=times)
        return f"{kind} x{times}"

    def calm(self) -> None:
        self.sb.clear_faults()
        self.sb.rate_limit_retry_after = None


class SalesforceSide:
    """A Salesforce org with the package (the sandbox of sandboxes/salesforce); reps work in
    the component (Lightning Data Service)."""

    fields = {"status": "Status__c", "risk": "Risk__c"}

    def __init__(self, sandbox, org):
        self.sb, self.org = sandbox, org

    def advance(self) -> None:
        self.sb.clock.advance(2)

    def records(self) -> list[dict]:
        plans = {r["Id"]: r.get("Plan_UUID__c") or "" for r in self.sb.records(self.org, "Mutual_Action_Plan__c")}
        return [{"id": r["Id"], "uuid": r.get("Milestone_UUID__c") or "", "title": r.get("Title__c"),
                 "plan": plans.get(r.get("Plan__c"), "")}
                for r in self.sb.records(self.org, "MAP_Milestone__c")]

    def plan_record(self, plan_id: str) -> str:
        return next(r["Id"] for r in self.sb.records(self.org, "Mutual_Action_Plan__c")
                    if r.get("Plan_UUID__c") == plan_id)

    def edit(self, record_id: str, name: str, value: str) -> None:
        self.sb.lds_update(self.org, record_id, {self.fields[name]: value})

    def create(self, plan_id: str, title: str) -> None:
        self.sb.lds_create(self.org, "MAP_Milestone__c", {
            "Plan__c": self.plan_record(plan_id), "Name": title[:80], "Title__c": title})

    def storm(self, rng: random.Random) -> str:
        kind = rng.choice(("request_limit", "500", "503"))
        times = rng.randint(1, 6)
        self.sb.inject(kind, times=times)
        return f"{kind} x{times}"

    def calm(self) -> None:
        self.sb.clear_faults()


@dataclass
class Outcome:
    edits: int = 0
    born: int = 0
    storms: int = 0
    failed_pulls: int = 0
    lost: list = field(default_factory=list)  # (milestone, field, wanted, have)
    duplicates: list = field(default_factory=list)  # what was duplicated, in words
    unsynced: list = field(default_factory=list)  # milestones here on no CRM record


def _run(app, task: str, *args):
    with app.app_context():
        return jobs.TASKS[task](*args)


def _due_now(app, installation_id: str) -> None:
    """What a scheduler does after the waits: every pending row and the pull are due now."""
    with app.app_context():
        s = session()
        s.execute(update(OutboxEntry).where(OutboxEntry.status == "pending")
                  .values(next_attempt_at=OutboxEntry.created_at))
        row = s.get(Installation, installation_id)
        row.next_pull_at = None
        s.commit()


def _pull(app, installation_id: str, outcome: Outcome) -> None:
    with app.app_context():
        s = session()
        before = s.get(Installation, installation_id).pull_failures or 0
    _run(app, "pull", installation_id)
    with app.app_context():
        if (session().get(Installation, installation_id).pull_failures or 0) > before:
            outcome.failed_pulls += 1


def soak(app, side, installation_id: str, plan_ids: list[str], *, rounds: int, edits: int,
         seed: int = 11) -> Outcome:
    rng = random.Random(seed)
    outcome = Outcome()
    wanted: dict[tuple[str, str], str] = {}  # (our milestone id, field) -> the rep's last value
    born: list[tuple[str, str]] = []  # (plan id, title)

    def rep_edits(n: int) -> None:
        ours = [r for r in side.records() if r["uuid"] and r["plan"] in plan_ids]
        for _ in range(n):
            r = rng.choice(ours)
            name = rng.choice(("status", "risk"))
            value = rng.choice(STATUSES if name == "status" else RISKS)
            side.edit(r["id"], name, value)
            wanted[(r["uuid"], name)] = value
            outcome.edits += 1

    for i in range(rounds):
        side.advance()
        rep_edits(edits)
        if i % 2 == 0:
            plan_id = rng.choice(plan_ids)
            title = f"Born in the CRM {i}"
            side.create(plan_id, title)
            born.append((plan_id, title))
            outcome.born += 1
        side.storm(rng)
        outcome.storms += 1
        _pull(app, installation_id, outcome)
        side.advance()
        rep_edits(max(1, edits // 2))  # while the pull's changes wait to be pushed
        _due_now(app, installation_id)
        _run(app, "relay")
    side.calm()
    for _ in range(4):  # the faults are over: the retries catch up
        side.advance()
        _due_now(app, installation_id)
        _pull(app, installation_id, outcome)
        _due_now(app, installation_id)
        _run(app, "relay")
    _compare(app, side, plan_ids, wanted, born, outcome)
    return outcome


def _compare(app, side, plan_ids, wanted, born, outcome: Outcome) -> None:
    with app.app_context():
        rows = session().scalars(select(Milestone).where(Milestone.plan_id.in_(plan_ids))).all()
        here = {m.id: m for m in rows}
        for (mid, name), value in sorted(wanted.items()):
            have = getattr(here[mid], name) if mid in here else None
            if have != value:
                outcome.lost.append((mid, name, value, have))
        for plan_id, title in born:
            n = sum(1 for m in rows if m.plan_id == plan_id and m.title == title)
            if n != 1:
                outcome.duplicates.append(f"{title!r} imported {n} times")
    records = [r for r in side.records() if r["plan"] in plan_ids or not r["uuid"]]
    seen: dict[str, int] = {}
    for r in records:
        if not r["uuid"]:
            outcome.duplicates.append(f"record {r['id']} ({r['title']!r}) has no UUID of ours")
        seen[r["uuid"]] = seen.get(r["uuid"], 0) + 1
    outcome.duplicates += [f"milestone {u} on {n} records" for u, n in seen.items() if u and n > 1]
    missing = set(here) - set(seen)
    outcome.unsynced += sorted(missing)
