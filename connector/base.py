"""The connector protocol and the documents exchanged with CRMs.

The sync engine pushes a `PlanDoc` (the plan's whole current state, keyed by
our UUIDs, never a diff) and a `DealUpdate`, and pulls `RemoteChange`s one
page at a time. Nothing here knows Flask or our database.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Protocol, runtime_checkable

from .errors import NeedsReauth


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None = None
    expires_at: datetime | None = None  # None: unknown (Salesforce tells no lifetime)
    extra: dict = field(default_factory=dict)  # instance_url, hub_id, scopes, …


class TokenStore(Protocol):
    """Where an installation's tokens live (the webapp: encrypted, in the installations row).

    `refresh` is the one way tokens change after install. Under the installation's lock it
    re-reads the stored tokens; when they are no longer `stale` (another worker refreshed while
    this one waited) it returns them without spending the refresh token; otherwise it calls
    `refresher(current)`, saves the result before releasing the lock and returns it. `stale`
    None means "refresh whatever is stored". A NeedsReauth from the refresher is recorded by
    the store (the installation needs reconnecting) and re-raised.
    """

    def load(self) -> TokenSet | None: ...

    def refresh(self, stale: TokenSet | None,
                refresher: Callable[[TokenSet], TokenSet]) -> TokenSet: ...


def still_current(stored: TokenSet, stale: TokenSet | None) -> bool:
    """Is the stored token the one the caller found stale (so a refresh is really due)?"""
    return stale is None or stored.access_token == stale.access_token


class MemoryTokenStore:
    """A TokenStore in memory (tests, benchmarks, scripts, the connect flow's probe)."""

    def __init__(self, tokens: TokenSet | None):
        self.tokens = tokens
        self.lock = threading.Lock()
        self.saves = 0

    def load(self) -> TokenSet | None:
        return self.tokens

    def refresh(self, stale, refresher):
        with self.lock:
            if self.tokens is None:
                raise NeedsReauth("no tokens stored")
            if not still_current(self.tokens, stale):
                return self.tokens
            self.tokens, self.saves = refresher(self.tokens), self.saves + 1
            return self.tokens


@dataclass(frozen=True)
class MilestoneDoc:
    uuid: str
    plan_uuid: str
    title: str
    stage_name: str
    position: int
    description: str = ""
    owner_side: str = "seller"
    owner_name: str = ""
    owner_email: str = ""
    due_date: date | None = None
    status: str = "not_started"
    risk: str = "on_track"
    internal: bool = False
    completed_at: datetime | None = None
    gate_stage: str | None = None  # the CRM stage this milestone gates, if any


# What a buyer did, for the deal's timeline (webapp/timeline.py queues them).
ACTIVITY_KINDS = ("milestone_completed", "date_proposed", "date_confirmed", "comment", "link_opened")


@dataclass(frozen=True)
class ActivityDoc:
    uuid: str  # ours: the connector makes it the CRM's event id where the CRM has one
    kind: str  # one of ACTIVITY_KINDS
    subject: str  # "Dana <dana@buyer.example>: Date proposed: Security review"
    body: str
    at: datetime
    actor: str = ""  # "Dana <dana@buyer.example>"


@dataclass(frozen=True)
class PlanDoc:
    uuid: str
    title: str
    deal_id: str
    value_summary: str = ""
    objectives: str = ""
    constraints: str = ""
    progress_percent: int = 0
    risk: str = "on_track"
    next_milestone: str = ""
    next_milestone_due: date | None = None
    overdue_count: int = 0
    slip_days: int = 0
    buyer_link: str = ""
    go_live_date: date | None = None
    budget: str = ""
    content_count: int = 0  # the plan's content blocks (videos, decks, notes, links, files)
    milestones: tuple[MilestoneDoc, ...] = ()  # those that changed since the last push
    deleted_milestones: tuple[str, ...] = ()  # UUIDs to archive in the CRM
    # Buyer actions for the deal's timeline, sent with this push (never part of the plan hash).
    activities: tuple[ActivityDoc, ...] = field(default=(), compare=False, hash=False)
    # What the CRM already has (the mirror's remote_ids, uuid -> CRM id, plus whatever
    # bookkeeping keys the connector returned), so a connector can skip creating and
    # associating records it made before.
    remote_ids: dict = field(default_factory=dict, compare=False, hash=False)
    # What each existing milestone record held after our last push or the last remote edit we
    # applied (uuid -> milestone fields): a connector writes only the fields that differ, so a
    # rep's newer edit of another field of the same record is not overwritten by our push.
    previous: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class DealUpdate:
    """What to write on the deal. None / empty means leave it alone."""

    deal_id: str
    stage: str | None = None
    pipeline: str | None = None
    close_date: date | None = None
    properties: dict = field(default_factory=dict)  # summary properties, CRM-neutral keys

    def is_empty(self) -> bool:
        return self.stage is None and self.close_date is None and not self.properties


@dataclass(frozen=True)
class PipelineStage:
    id: str
    label: str
    position: int
    probability: float | None = None
    closed: bool = False
    won: bool = False


@dataclass(frozen=True)
class Deal:
    id: str
    pipeline: str | None
    stage: str | None
    close_date: date | None = None
    modified_at: datetime | None = None
    name: str = ""  # the deal's (opportunity's) name, when the call read it


@dataclass(frozen=True)
class PushResult:
    remote_ids: dict  # our uuid -> CRM record id
    calls: int = 0


@dataclass(frozen=True)
class RemoteChange:
    """One record as the CRM has it now. kind: "plan" | "milestone" | "deal".

    `key` is our UUID when the record carries it, "" for a record born in the CRM without it.
    Besides the record's own fields, `fields` may carry META_FIELDS: the CRM's record id
    ("remote_id"), the parent plan's ("plan_remote_id"), the deal a plan belongs to
    ("deal_id") and the display name of the user who last changed it ("modified_by");
    `content_hash` covers the record's own fields only (what a push would have written)."""

    kind: str
    key: str  # our uuid for plan/milestone, the CRM id for a deal
    fields: dict
    modified_at: datetime
    deleted: bool = False
    content_hash: str | None = None
    # A plan or milestone created in the CRM without our UUID (a rep's record in HubSpot's UI
    # or Salesforce's component): `key` is then the CRM record id, `fields` hold what the record
    # says (a milestone's plan as "plan_uuid" when the rep typed it). The import gives it a
    # UUID and the next push writes that back.
    born_in_crm: bool = False


META_FIELDS = ("remote_id", "plan_remote_id", "deal_id", "modified_by")


@dataclass(frozen=True)
class Page:
    changes: list
    cursor: str | None  # pass back to get the next page; None when this was the last


@runtime_checkable
class CrmConnector(Protocol):
    """What the webapp calls on a CRM. Optional: `remove_plan(plan_uuid, deal_id,
    milestone_uuids, remote_ids)` for a plan deleted here (archive or delete its records,
    missing ones included, and empty the deal's summary fields); sync calls it when present."""

    provider: str

    def ensure_setup(self) -> dict:
        """Create what the app needs in the CRM (idempotent); return settings learnt (e.g. mode)."""

    def push_plan(self, plan: PlanDoc, deal: DealUpdate | None) -> PushResult:
        """Upsert the plan and its milestones by UUID, and apply the deal update, in as few calls as possible."""

    def update_deal(self, update: DealUpdate) -> None:
        ...

    def get_deal(self, deal_id: str) -> Deal:
        """The deal as the CRM has it (used when we do not know its stage yet)."""

    def pipeline_stages(self, pipeline: str | None = None) -> list[PipelineStage]:
        """The deal pipeline's stages in order, with closed/won flags."""

    def pull(self, since: datetime, cursor: str | None = None) -> Page:
        """Records changed at or after `since`, one page at a time."""

    def search_deals(self, query: str, limit: int = 10) -> list[Deal]:
        """Deals whose name contains every word of `query` (case-insensitive), at most `limit`,
        with their names (the rep's "New plan" picks one). An empty query finds nothing."""


def content_hash(fields: dict) -> str:
    """A stable hash of a record's fields, to recognise our own writes coming back."""
    canonical = json.dumps({k: _plain(v) for k, v in sorted(fields.items())}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _plain(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if value is None:
        return ""
    return str(value)


def changed_fields(m: MilestoneDoc, previous: dict | None) -> set[str] | None:
    """The milestone fields that differ from `previous` (None: no previous, write them all)."""
    if not previous:
        return None
    current = milestone_fields(m)
    return {k for k, v in current.items() if _plain(v) != _plain(previous.get(k))}


def milestone_fields(m: MilestoneDoc) -> dict:
    """The fields of a milestone as pushed (and as pulled back), for hashing."""
    d = asdict(m)
    d.pop("uuid")
    return d
