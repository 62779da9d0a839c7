"""The API's documents: what comes in (validated strictly) and what goes out.

These models are the contract. Input models forbid unknown fields and are
validated in strict JSON mode, so `"due_date": 20240101` or `"internal": "yes"`
are errors rather than guesses. The OpenAPI document is generated from the
same models, and a test validates real responses against it.
"""
from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, time
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

OwnerSide = Literal["buyer", "seller", "both"]
Side = Literal["buyer", "seller"]
Status = Literal["not_started", "in_progress", "done"]
Risk = Literal["on_track", "at_risk", "off_track"]
DecisionRole = Literal["decision_maker", "approver", "champion", "influencer", "user", "other",
                       "economic_buyer", "technical", "legal", "security"]
Provider = Literal["hubspot", "salesforce"]

# ---- what any accepted value must satisfy ---------------------------------------
#
# No accepted input can break a page (issue 10, F5/F7): every date lies in
# FIRST_DAY..LAST_DAY (so "+1 day", calendars, ISO output and PostgreSQL never
# overflow), no text carries NUL or other control characters (multi-line text
# keeps \n, \t and \r), and every length limit equals the column's
# (tests/test_input_bounds.py walks the models to keep it so).

FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)
_FIRST_MOMENT = datetime.combine(FIRST_DAY, time.min, UTC)
_LAST_MOMENT = datetime.combine(LAST_DAY, time.max, UTC)
MAX_VERSION = 2**31 - 1  # an INTEGER column
MAX_POSITION = 10_000
_MULTILINE_OK = frozenset("\n\t\r")


def check_day(value: date | None) -> date | None:
    """A date within FIRST_DAY..LAST_DAY (for callers outside pydantic, e.g. form posts)."""
    if value is not None and not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}")
    return value


def check_moment(value: datetime | None) -> datetime | None:
    """A datetime whose instant (naive means UTC) lies within the same range, whatever its offset."""
    if value is None:
        return None
    try:
        instant = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        instant = None
    if instant is None or not _FIRST_MOMENT <= instant <= _LAST_MOMENT:
        raise ValueError(f"must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()} (UTC)")
    return value


def _no_control(multiline: bool):
    allowed = _MULTILINE_OK if multiline else frozenset()

    def check(value: str) -> str:
        for ch in value:
            if ch not in allowed and unicodedata.category(ch) in ("Cc", "Cs"):
                raise ValueError("must not contain control characters"
                                 + ("" if multiline else " or line breaks"))
        return value

    return check


clean_line = _no_control(multiline=False)
clean_text = _no_control(multiline=True)


def Line(max_length: int, min_length: int = 0, strip: bool = True):
    """One line of text: at most `max_length` characters, no control characters."""
    return Annotated[str, StringConstraints(strip_whitespace=strip, min_length=min_length,
                                            max_length=max_length), AfterValidator(clean_line)]


Day = Annotated[date, AfterValidator(check_day)]
Moment = Annotated[datetime, AfterValidator(check_moment)]
Version = Annotated[int, Field(ge=0, le=MAX_VERSION)]
Position = Annotated[int, Field(ge=0, le=MAX_POSITION)]

Title = Line(200, min_length=1)
StageName = Line(120, min_length=1)  # stages.name is String(120)
ShortText = Line(200)
LongText = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(clean_text)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1_000),
                   AfterValidator(clean_text)]
ExternalId = Line(64, min_length=1)
RowId = Line(36, min_length=1)  # our ids are UUIDs: String(36)

_EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")


def _email(value: str) -> str:
    if value and not _EMAIL.match(value):
        raise ValueError("not an email address")
    return value


def _web_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("only http and https links are allowed")
    return value


Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254),
                  AfterValidator(clean_line), AfterValidator(_email)]
WebUrl = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2_000),
                   AfterValidator(clean_line), AfterValidator(_web_url)]


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


def optional(**constraints):
    """A PATCH field: absent means unchanged; `null` is refused unless the type allows it.

    The default (None) is internal and not advertised in the JSON schema.
    """
    return Field(default=None, json_schema_extra=_no_default, **constraints)


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Owner(In):
    name: ShortText = ""
    email: Email = ""


class Objectives(In):
    challenges: list[LongText] = Field(default_factory=list, max_length=30)
    ideal_results: list[LongText] = Field(default_factory=list, max_length=30)
    deliverables: list[LongText] = Field(default_factory=list, max_length=30)


class DatedConstraint(In):
    label: Title
    date: Day


class Constraints(In):
    budget: ShortText | None = None
    go_live_date: Day | None = None
    dates: list[DatedConstraint] = Field(default_factory=list, max_length=30)


class Resource(In):
    title: Title
    url: WebUrl


class DealRef(In):
    provider: Provider
    account_id: ExternalId
    deal_id: ExternalId
    name: ShortText | None = Field(None, description="the deal's name; the plan's title defaults to it")


class StakeholderIn(In):
    name: Title
    title: ShortText = ""
    email: Email = ""
    side: Side
    role: DecisionRole = "other"


class StakeholderPatch(In):
    name: Title = optional()
    title: ShortText = optional()
    email: Email = optional()
    side: Side = optional()
    role: DecisionRole = optional()
    version: Version | None = None


class PlanCreate(In):
    title: Title | None = Field(None, description="defaults to the deal's name")
    template: Literal["enterprise", "quick"] | None = None
    deal: DealRef | None = None
    start_date: Day | None = None
    go_live_date: Day | None = None
    value_summary: LongText = ""
    objectives: Objectives = Field(default_factory=Objectives)
    constraints: Constraints = Field(default_factory=Constraints)
    resources: list[Resource] = Field(default_factory=list, max_length=50)
    stakeholders: list[StakeholderIn] = Field(default_factory=list, max_length=50)


class PlanPatch(In):
    title: Title = optional()
    value_summary: LongText = optional()
    objectives: Objectives = optional()
    constraints: Constraints = optional()
    resources: list[Resource] = optional(max_length=50)
    start_date: Day | None = None
    version: Version | None = None


class StageIn(In):
    name: StageName
    position: Position | None = None


class StagePatch(In):
    name: StageName = optional()
    position: Position = optional()
    version: Version | None = None


class Dependency(In):
    """Due `days` after another milestone of the plan is done (or after its due date)."""

    milestone_id: RowId
    days: int = Field(default=0, ge=-365, le=3650)
    after: Literal["done", "due"] = "done"


class MilestoneIn(In):
    stage_id: RowId
    title: Title
    description: LongText = ""
    owner_side: OwnerSide = "seller"
    owners: list[Owner] = Field(default_factory=list, max_length=10)
    due_date: Day | None = None
    status: Status = "not_started"
    risk: Risk = "on_track"
    internal: bool = False
    position: Position | None = None
    depends_on: list[Dependency] = Field(default_factory=list, max_length=10)


class MilestonePatch(In):
    stage_id: RowId = optional()
    title: Title = optional()
    description: LongText = optional()
    owner_side: OwnerSide = optional()
    owners: list[Owner] = optional(max_length=10)
    due_date: Day | None = None
    reason: Reason = optional()
    status: Status = optional()
    risk: Risk = optional()
    internal: bool = optional()
    position: Position = optional()
    depends_on: list[Dependency] = optional(max_length=10)
    version: Version | None = None


# ---- out ----------------------------------------------------------------


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class OwnerOut(Out):
    name: str
    email: str


class DependencyOut(Out):
    milestone_id: str
    days: int
    after: Literal["done", "due"]


class MilestoneOut(Out):
    id: str
    stage_id: str
    title: str
    description: str
    owner_side: OwnerSide
    owners: list[OwnerOut]
    due_date: date | None
    status: Status
    risk: Risk
    internal: bool
    position: int
    completed_at: datetime | None
    completed_by: str | None
    overdue: bool
    depends_on: list[DependencyOut] = Field(default_factory=list)
    waiting_on: list[str] = Field(default_factory=list)  # titles of open milestones it depends on
    version: int


class StageOut(Out):
    id: str
    name: str
    position: int
    version: int
    milestones: list[MilestoneOut]


class StakeholderOut(Out):
    id: str
    name: str
    title: str
    email: str
    side: Side
    role: DecisionRole
    version: int


class Progress(Out):
    done: int
    total: int
    percent: int


class DealOut(Out):
    provider: Provider
    account_id: str
    deal_id: str


class ObjectivesOut(Out):
    challenges: list[str] = Field(default_factory=list)
    ideal_results: list[str] = Field(default_factory=list)
    deliverables: list[str] = Field(default_factory=list)


class DatedConstraintOut(Out):
    label: str
    date: date


class ConstraintsOut(Out):
    """Like Constraints, without the input checks: a stored value is shown, never refused."""

    budget: str | None = None
    go_live_date: date | None = None
    dates: list[DatedConstraintOut] = Field(default_factory=list)


class PlanOut(Out):
    id: str
    title: str
    value_summary: str
    objectives: ObjectivesOut
    constraints: ConstraintsOut
    resources: list[Resource]
    stakeholders: list[StakeholderOut]
    stages: list[StageOut]
    deal: DealOut | None
    template: str | None
    start_date: date | None
    progress: Progress
    risk: Risk
    next_milestone: MilestoneOut | None
    overdue_count: int
    slip_count: int
    slip_days: int
    phase: Literal["sales", "onboarding", "closed"] = Field(
        "sales", description="onboarding once the deal closed won, closed when it was lost")
    cs_owner: str | None = Field(None, description="the customer-success owner (onboarding)")
    version: int
    created_at: datetime
    updated_at: datetime


class PlanSummary(Out):
    id: str
    title: str
    deal: DealOut | None
    progress: Progress
    risk: Risk
    next_milestone: MilestoneOut | None
    overdue_count: int
    version: int
    updated_at: datetime


class PlanList(Out):
    items: list[PlanSummary]


class ActivityOut(Out):
    id: str
    actor: str
    action: str
    subject_id: str | None
    detail: dict
    at: datetime


class ActivityList(Out):
    items: list[ActivityOut]


class SlipOut(Out):
    id: str
    milestone_id: str
    old_date: date | None
    new_date: date | None
    actor: str
    reason: str
    at: datetime


class TemplateOut(Out):
    key: str
    name: str
    description: str
    stage_count: int
    milestone_count: int


class TemplateList(Out):
    items: list[TemplateOut]


class FieldError(Out):
    field: str
    message: str


class Problem(Out):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


# ---- sync ---------------------------------------------------------------------


class DeadLetter(Out):
    id: str
    error: str
    at: datetime


class SyncStatus(Out):
    state: Literal["not_connected", "needs_reconnect", "failed", "pending", "synced"]
    connection: str | None
    last_pushed_at: datetime | None
    pending: int
    last_error: str | None
    dead_letters: list[DeadLetter]
    mismatch: dict | None
    deal_stage: str | None


class InstallationOut(Out):
    id: str
    provider: str
    account_id: str
    status: str
    status_reason: str
    mode: str | None
    last_pulled_at: datetime | None
    last_pull_error: str = ""  # empty when the last pull succeeded
    next_pull_at: datetime | None = None  # set after a failed pull: when it is retried
    sync_problems: list[dict] = []  # CRM records that could not be imported, and why
    timeline: bool = True  # buyer activity on the CRM's timeline (webapp/timeline.py)
    created_at: datetime


class InstallationList(Out):
    items: list[InstallationOut]


class InstallationPatch(In):
    timeline: bool = Field(description="send buyer activity to the CRM's timeline (HubSpot timeline "
                                       "events or notes, Salesforce completed tasks)")


class StageOption(Out):
    id: str
    label: str
    position: int
    probability: float | None
    closed: bool
    won: bool


class StageMappingIn(In):
    gates: dict[Title, ExternalId] = Field(
        default_factory=dict, max_length=100,
        description="milestone title -> the deal stage it gates (reached when the milestone is done)")
    close_milestone: Title | None = None
    allow_closed: bool = False


class StageMappingOut(Out):
    pipeline_id: str
    gates: dict[str, str]
    close_milestone: str | None
    allow_closed: bool
    is_default: bool
    stages: list[StageOption]


class HandOffIn(In):
    """After the deal closes won (webapp/onboarding.py)."""

    template: ShortText | None = Field(None, description="the onboarding template (a built-in key or a "
                                       "template id) whose stages are added, dated from the close date")
    cs_owner_field: ShortText | None = Field(None, description="the deal field holding the "
                                             "customer-success owner's e-mail, e.g. cs_owner_email")
    cs_owner_default: ShortText | None = Field(None, description="the owner when that field is empty")


class HandOffOut(Out):
    pipeline_id: str
    template: str | None
    cs_owner_field: str | None
    cs_owner_default: str | None


class RetryOut(Out):
    requeued: int


class NudgeOut(Out):
    sent: int  # reminders queued now (owners reminded in the last hour are skipped)


# ---- buyer links and the editor ------------------------------------------------


AccessMode = Literal["open", "identify", "domain", "verified"]
AccessDomains = Annotated[list[Line(253)], Field(max_length=20, description=(
    "E-mail domains (acme.com; subdomains included) a buyer's address must be at; required "
    "for `domain`, optional for `verified`"))]


class ShareLinkIn(In):
    label: ShortText = ""
    expires_at: Moment | None = None
    access_mode: AccessMode = Field("open", description=(
        "Who may open the link: `open` (anyone with it), `identify` (name and e-mail asked), "
        "`domain` (an e-mail at an allowed domain), `verified` (a one-time code e-mailed to "
        "the address; then 30 days on that device)"))
    allowed_domains: AccessDomains = []


class ShareLinkPatch(In):
    access_mode: AccessMode | None = None
    allowed_domains: AccessDomains | None = None


class VerifiedBuyer(Out):
    email: str
    name: str
    verified_at: datetime
    last_seen_at: datetime | None


class ShareLinkOut(Out):
    id: str
    plan_id: str
    label: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool
    access_mode: AccessMode
    allowed_domains: list[str]
    verified: list[VerifiedBuyer] = Field(description="Who verified their e-mail on this link "
                                          "(one entry per address; empty unless `verified`)")


class ShareLinkCreated(ShareLinkOut):
    url: str = Field(description="The buyer URL; shown only in this response")


class ShareLinkList(Out):
    items: list[ShareLinkOut]


class EditorLinkOut(Out):
    url: str
    expires_at: datetime


# ---- content blocks (webapp/content.py) ----------------------------------------

BlockKind = Literal["link", "video", "deck", "notes", "file"]
NotesText = Annotated[str, StringConstraints(max_length=20_000), AfterValidator(clean_text)]


class BlockIn(In):
    """A new block. `url` for a link (any http/https page) or a video (a YouTube, Vimeo,
    Loom or Wistia share URL); `body` (Markdown) for notes; decks and files get their
    content through PUT /blocks/{id}/file."""

    kind: BlockKind
    title: Title
    url: WebUrl | None = None
    body: NotesText = ""
    internal: bool = False
    milestone_id: RowId | None = None
    position: Position | None = None


class BlockPatch(In):
    title: Title = optional()
    url: WebUrl = optional()
    body: NotesText = optional()
    internal: bool = optional()
    milestone_id: RowId | None = optional()


class BlockOrder(In):
    """Every block id of the plan, in the new order."""

    ids: list[RowId] = Field(max_length=200)


class BlockFileOut(Out):
    name: str
    type: str
    size: int


class BlockOut(Out):
    id: str
    kind: BlockKind
    title: str
    url: str
    embed_url: str
    body: str
    internal: bool
    milestone_id: str | None
    position: int
    side: Side
    file: BlockFileOut | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class BlockList(Out):
    items: list[BlockOut]


# ---- spreadsheet import (webapp/spreadsheets.py) -------------------------------------------


class ImportDependencyOut(Out):
    title: str
    days: int
    after: Literal["done", "due"]


class ImportRowOut(Out):
    row: int
    stage: str
    title: str
    owners: list[OwnerOut]
    owner_side: OwnerSide | None
    due_date: date | None
    status: Status | None
    risk: Risk | None
    description: str
    internal: bool
    depends_on: list[ImportDependencyOut] = []
    valid: bool
    problems: list[str]


class ImportProblem(Out):
    row: int | None
    message: str


class ImportOut(Out):
    """A preview (dry_run, `imported` 0 and no `plan`) or the result of an import."""

    headers: list[str]
    mapping: dict[str, str]
    rows: list[ImportRowOut]
    problems: list[ImportProblem]
    imported: int
    plan: PlanOut | None
