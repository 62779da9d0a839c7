"""An in-memory CRM for tests and benchmarks: it keeps records by our UUIDs,
a deal pipeline and deals, counts calls, and can be scripted to fail.

    crm = MemoryCrm()
    crm.script("push_plan", RateLimited(retry_after=2), Transient("502"))
    connector = crm.connector("acct-1")

Faults are consumed in order, one per call of the named method; "*" matches
any method. `latency` sleeps per call, to make throughput figures honest.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone

from .base import (
    Deal,
    DealUpdate,
    Page,
    PipelineStage,
    PlanDoc,
    PushResult,
    RemoteChange,
    content_hash,
    milestone_fields,
)
from .errors import NotFound, Rejected

DEFAULT_PIPELINE = [
    PipelineStage("appointmentscheduled", "Appointment scheduled", 0, 0.2),
    PipelineStage("qualifiedtobuy", "Qualified to buy", 1, 0.4),
    PipelineStage("presentationscheduled", "Presentation scheduled", 2, 0.6),
    PipelineStage("decisionmakerboughtin", "Decision maker bought-in", 3, 0.8),
    PipelineStage("contractsent", "Contract sent", 4, 0.9),
    PipelineStage("closedwon", "Closed won", 5, 1.0, closed=True, won=True),
    PipelineStage("closedlost", "Closed lost", 6, 0.0, closed=True),
]


def _now() -> datetime:
    return datetime.now(timezone.utc)


class MemoryCrm:
    def __init__(self, pipeline: list[PipelineStage] | None = None, latency: float = 0.0):
        self.pipeline = list(pipeline or DEFAULT_PIPELINE)
        self.latency = latency
        self.lock = threading.Lock()
        self.plans: dict[str, dict] = {}  # uuid -> fields
        self.milestones: dict[str, dict] = {}  # uuid -> fields
        self.deals: dict[str, dict] = {}  # id -> {pipeline, stage, close_date, properties, modified_at}
        self.deal_history: dict[str, list] = defaultdict(list)  # id -> stages written, in order
        self.changes: list[RemoteChange] = []  # what "reps" did in the CRM, for pull
        self.calls: Counter = Counter()
        self.writes: Counter = Counter()  # uuid -> times written
        self._faults: dict[str, list] = defaultdict(list)
        self._random = None  # (rate, [fault factories], random.Random)
        self.setup_done = False

    # -- scripting ---------------------------------------------------------
    def script(self, method: str, *faults: Exception) -> None:
        with self.lock:
            self._faults[method].extend(faults)

    def random_faults(self, rate: float, factories: list, seed: int = 1) -> None:
        """Fail `rate` of all calls with a fault made by one of `factories` (soak tests)."""
        import random

        self._random = (rate, factories, random.Random(seed))

    def add_deal(self, deal_id: str, stage: str = "appointmentscheduled", pipeline: str = "default") -> None:
        self.deals[deal_id] = {"pipeline": pipeline, "stage": stage, "close_date": None,
                               "properties": {}, "modified_at": _now()}

    def rep_moves_deal(self, deal_id: str, stage: str) -> None:
        """A rep changes the stage in the CRM's own UI."""
        deal = self.deals[deal_id]
        deal["stage"], deal["modified_at"] = stage, _now()
        self.changes.append(RemoteChange("deal", deal_id, {"stage": stage, "pipeline": deal["pipeline"],
                                                           "close_date": deal["close_date"]}, deal["modified_at"]))

    def rep_edits_milestone(self, uuid: str, **fields) -> None:
        record = self.milestones[uuid]
        record.update(fields)
        self.changes.append(RemoteChange("milestone", uuid, dict(record), _now(),
                                         content_hash=content_hash(record)))

    def rep_deletes_milestone(self, uuid: str) -> None:
        self.milestones.pop(uuid)
        self.changes.append(RemoteChange("milestone", uuid, {}, _now(), deleted=True))

    def connector(self, account_id: str = "acct-1") -> "MemoryConnector":
        return MemoryConnector(self, account_id)

    def _call(self, method: str) -> None:
        with self.lock:
            self.calls[method] += 1
            queue = self._faults.get(method) or self._faults.get("*")
            fault = queue.pop(0) if queue else None
            if fault is None and self._random and self._random[2].random() < self._random[0]:
                fault = self._random[2].choice(self._random[1])()
        if self.latency:
            time.sleep(self.latency)
        if fault is not None:
            raise fault


class MemoryConnector:
    provider = "memory"

    def __init__(self, crm: MemoryCrm, account_id: str):
        self.crm, self.account_id = crm, account_id

    def ensure_setup(self) -> dict:
        self.crm._call("ensure_setup")
        self.crm.setup_done = True
        return {"mode": "custom_objects"}

    def push_plan(self, plan: PlanDoc, deal: DealUpdate | None) -> PushResult:
        self.crm._call("push_plan")
        crm = self.crm
        if deal is not None and not deal.is_empty():
            self._check_deal(deal)
        hashes = {}
        with crm.lock:
            plan_fields = {k: v for k, v in vars(plan).items() if k not in ("uuid", "milestones")}
            crm.plans[plan.uuid] = plan_fields
            crm.writes[plan.uuid] += 1
            hashes[plan.uuid] = content_hash(plan_fields)
            for m in plan.milestones:
                fields = milestone_fields(m)
                crm.milestones[m.uuid] = fields
                crm.writes[m.uuid] += 1
                hashes[m.uuid] = content_hash(fields)
            for uuid in plan.deleted_milestones:
                crm.milestones.pop(uuid, None)
        if deal is not None and not deal.is_empty():
            self._apply_deal(deal)
        return PushResult(remote_ids={u: f"mem-{u}" for u in hashes}, calls=1)

    def delete_milestones(self, uuids: list[str]) -> None:
        self.crm._call("delete_milestones")
        with self.crm.lock:
            for uuid in uuids:
                self.crm.milestones.pop(uuid, None)

    def update_deal(self, update: DealUpdate) -> None:
        self.crm._call("update_deal")
        self._check_deal(update)
        self._apply_deal(update)

    def search_deals(self, query: str, limit: int = 10) -> list[Deal]:
        self.crm._call("search_deals")
        words = [w.lower() for w in query.split()]
        if not words:
            return []
        found = [(i, d) for i, d in self.crm.deals.items()
                 if all(w in str(d.get("name", "")).lower() for w in words)]
        return [Deal(i, d["pipeline"], d["stage"], d["close_date"], d["modified_at"],
                     str(d.get("name", ""))) for i, d in found[:limit]]

    def get_deal(self, deal_id: str) -> Deal:
        self.crm._call("get_deal")
        deal = self.crm.deals.get(deal_id)
        if deal is None:
            raise NotFound(f"deal {deal_id} not found")
        return Deal(deal_id, deal["pipeline"], deal["stage"], deal["close_date"], deal["modified_at"])

    def _check_deal(self, update: DealUpdate) -> None:
        if update.deal_id not in self.crm.deals:
            raise NotFound(f"deal {update.deal_id} not found", status=404)
        if update.stage is not None and update.stage not in {s.id for s in self.crm.pipeline}:
            raise Rejected(f"{update.stage} is not a stage of the pipeline", status=400)

    def _apply_deal(self, update: DealUpdate) -> None:
        with self.crm.lock:
            deal = self.crm.deals[update.deal_id]
            if update.stage is not None:
                deal["stage"] = update.stage
                self.crm.deal_history[update.deal_id].append(update.stage)
            if update.close_date is not None:
                deal["close_date"] = update.close_date
            deal["properties"].update(update.properties)
            deal["modified_at"] = _now()

    def pipeline_stages(self, pipeline: str | None = None) -> list[PipelineStage]:
        self.crm._call("pipeline_stages")
        return list(self.crm.pipeline)

    def pull(self, since: datetime, cursor: str | None = None, page_size: int = 2) -> Page:
        self.crm._call("pull")
        start = int(cursor or 0)
        matching = [c for c in self.crm.changes if c.modified_at >= since]
        page = matching[start:start + page_size]
        more = start + page_size < len(matching)
        return Page(changes=page, cursor=str(start + page_size) if more else None)
