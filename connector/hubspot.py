"""HubSpot: OAuth, the one call path, and the CrmConnector (hubspot-api-client 12).

One call path (DESIGN §2 rule 3). Every SDK call goes through `HubSpotConnector._call`:

- the token is refreshed *before* it expires (5-minute margin), under the
  per-installation lock the injected `TokenStore` provides (the webapp's store
  re-reads the row under SELECT … FOR UPDATE, so two workers never both spend a
  refresh token); a 401 anyway (revoked/expired early) refreshes and replays once;
- the shared token bucket is asked before each call (searches use their own key:
  HubSpot allows 5 searches/s per token);
- the SDK's urllib3 retries are off (`Retry(total=0)`); tenacity is the only retry
  policy: Transient (5xx, 423, timeouts, connection errors) is retried with jittered
  backoff, a short RateLimited wait (Retry-After, or the policy's window) is slept,
  a long one is raised for the outbox to defer;
- `classify` turns any SDK exception (each sub-package has its own ApiException
  class, so it reads `.status`/`.body` only) or urllib3 error into the taxonomy.

Modes (DESIGN §5). Enterprise portals get two custom objects, "Mutual Action Plan"
and "MAP Milestone", each with a unique `mp_uuid` property so writes are idempotent
batch upserts, associated plan->deal and milestone->plan. Any 403 on schema read or
create means "no custom objects here": the portal runs in deal-properties mode, where
plan and milestones stay in our database and the deal gets the summary properties.

Nothing here imports Flask or the database: tokens come and go through `TokenStore`,
object type ids and association type ids through `settings` (installation.settings).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import random
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

import urllib3
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from urllib3.util.retry import Retry

from hubspot import HubSpot
from hubspot.crm.associations.v4 import (
    AssociationSpec,
    BatchInputPublicAssociationMultiPost,
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicAssociationMultiPost,
    PublicFetchAssociationsBatchRequest,
    PublicObjectId,
)
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
)
from hubspot.crm.properties import BatchInputPropertyCreate, PropertyCreate, PropertyGroupCreate
from hubspot.crm.schemas import ObjectSchemaEgg, ObjectTypeDefinitionLabels, ObjectTypePropertyCreate

from .base import (
    Deal,
    DealUpdate,
    MilestoneDoc,
    Page,
    PipelineStage,
    PlanDoc,
    PushResult,
    RemoteChange,
    TokenSet,
    TokenStore,
    changed_fields,
    content_hash,
    milestone_fields,
)
from .errors import AuthExpired, CrmError, NeedsReauth, NotFound, RateLimited, Rejected, Transient
from .oauth import OAuthClient

log = logging.getLogger("connector.hubspot")

API_BASE = "https://api.hubapi.com"
AUTH_BASE = "https://app.hubspot.com"
REFRESH_MARGIN = timedelta(minutes=5)
BATCH = 100  # HubSpot's batch limit
SEARCH_PAGE = 100
SEARCH_COST = 4.0  # tokens of the 10/s bucket per search: at most 5 searches in any second

REQUIRED_SCOPES = ("oauth", "crm.objects.deals.read", "crm.objects.deals.write",
                   "crm.schemas.deals.read", "crm.schemas.deals.write")
# Custom objects need Enterprise: asked as optional, so other tiers can still install.
# `timeline` sends the buyer's activity as timeline events on the deal; without it (or without
# the app's event templates) the activity goes as notes, which need crm.objects.contacts.write
# (the notes spec's only scope, PublicApiSpecs/CRM/Notes/Rollouts/424/v3/notes.json).
OPTIONAL_SCOPES = ("crm.objects.custom.read", "crm.objects.custom.write",
                   "crm.schemas.custom.read", "crm.schemas.custom.write",
                   "timeline", "crm.objects.contacts.write")

MODE_CUSTOM = "custom_objects"
MODE_DEAL = "deal_properties"

GROUP = "mutual_action_plan"
GROUP_LABEL = "Mutual Action Plan"
PLAN_OBJECT = "mutual_action_plan"
MILESTONE_OBJECT = "map_milestone"
UUID_PROPERTY = "mp_uuid"

# Deal summary properties: CRM-neutral key (sync.summary_properties) -> HubSpot property.
DEAL_PROPERTIES = {
    "progress_percent": ("mp_progress_percent", "MAP progress %", "number", "number", None),
    "next_milestone": ("mp_next_milestone", "MAP next milestone", "string", "text", None),
    "next_milestone_due": ("mp_next_milestone_due", "MAP next milestone due", "date", "date", None),
    "risk": ("mp_risk", "MAP overall risk", "enumeration", "select",
             [("on_track", "On track"), ("at_risk", "At risk"), ("off_track", "Off track")]),
    "overdue_count": ("mp_overdue_count", "MAP overdue milestones", "number", "number", None),
    "slip_days": ("mp_days_slipped", "MAP days slipped", "number", "number", None),
    "buyer_link": ("mp_buyer_link", "MAP buyer link", "string", "text", None),
    "last_buyer_activity": ("mp_last_buyer_activity", "MAP last buyer activity", "datetime", "date", None),
    "health": ("mp_health", "MAP health", "enumeration", "select",
               [("on_track", "On track"), ("at_risk", "At risk"), ("stalled", "Stalled")]),
    "win_probability": ("mp_win_probability", "MAP win probability %", "number", "number", None),
    "phase": ("mp_phase", "MAP phase", "enumeration", "select",
              [("sales", "Sales"), ("onboarding", "Onboarding"), ("closed", "Closed")]),
    "coverage": ("mp_coverage", "MAP stakeholder coverage", "string", "text", None),
}
SUMMARY_MARKER = "mp_progress_percent"  # deals with a plan have it; the deal pull filters on it

_RISKS = [("on_track", "On track"), ("at_risk", "At risk"), ("off_track", "Off track")]
_STATUSES = [("not_started", "Not started"), ("in_progress", "In progress"), ("done", "Done")]
_SIDES = [("seller", "Seller"), ("buyer", "Buyer"), ("both", "Both")]

# Custom object properties: (name, label, type, fieldType, options)
PLAN_PROPERTIES = [
    ("mp_uuid", "MutualPlan ID", "string", "text", None),
    ("mp_name", "Plan name", "string", "text", None),
    ("mp_value_summary", "Value summary", "string", "textarea", None),
    ("mp_objectives", "Objectives", "string", "textarea", None),
    ("mp_constraints", "Key dates", "string", "textarea", None),
    ("mp_go_live_date", "Go-live date", "date", "date", None),
    ("mp_budget", "Budget", "string", "text", None),
    ("mp_deal_id", "Deal ID", "string", "text", None),
]
MILESTONE_PROPERTIES = [
    ("mp_uuid", "MutualPlan ID", "string", "text", None),
    ("mp_title", "Milestone", "string", "text", None),
    ("mp_plan_uuid", "Plan ID", "string", "text", None),
    ("mp_stage_name", "Stage", "string", "text", None),
    ("mp_position", "Position", "number", "number", None),
    ("mp_description", "Description", "string", "textarea", None),
    ("mp_owner_side", "Owner side", "enumeration", "select", _SIDES),
    ("mp_owner_name", "Owner", "string", "text", None),
    ("mp_owner_email", "Owner email", "string", "text", None),
    ("mp_due_date", "Due date", "date", "date", None),
    ("mp_status", "Status", "enumeration", "select", _STATUSES),
    ("mp_risk", "Risk", "enumeration", "select", _RISKS),
    ("mp_internal", "Internal only", "enumeration", "booleancheckbox",
     [("true", "Yes"), ("false", "No")]),
    ("mp_completed_at", "Completed at", "datetime", "date", None),
    ("mp_gate_stage", "Gates deal stage", "string", "text", None),
    ("mp_sync", "Sync fingerprint", "string", "text", None),
]
PLAN_PULLED = [UUID_PROPERTY, "mp_name", "mp_value_summary", "mp_deal_id"]  # what an import reads
# MilestoneDoc field -> property (everything but uuid)
MILESTONE_MAP = {
    "plan_uuid": "mp_plan_uuid", "title": "mp_title", "stage_name": "mp_stage_name",
    "position": "mp_position", "description": "mp_description", "owner_side": "mp_owner_side",
    "owner_name": "mp_owner_name", "owner_email": "mp_owner_email", "due_date": "mp_due_date",
    "status": "mp_status", "risk": "mp_risk", "internal": "mp_internal",
    "completed_at": "mp_completed_at", "gate_stage": "mp_gate_stage",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ---- error classification (the one place) ------------------------------------------------


def _body(exc) -> dict:
    raw = getattr(exc, "body", None)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if isinstance(raw, str) and raw:
        try:
            value = json.loads(raw)
            return value if isinstance(value, dict) else {}
        except ValueError:
            return {"message": raw[:300]}
    return {}


def _retry_after(exc, default: float) -> float:
    headers = getattr(exc, "headers", None) or {}
    value = None
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
    except AttributeError:
        pass
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def classify(exc: BaseException) -> CrmError:
    """Any SDK / transport exception -> the taxonomy (connector.errors)."""
    if isinstance(exc, CrmError):
        return exc
    status = getattr(exc, "status", None)
    if not isinstance(status, int) or status == 0:
        # urllib3 (MaxRetryError, ProtocolError, timeouts), sockets: the request may not have landed.
        if isinstance(exc, (urllib3.exceptions.HTTPError, OSError, TimeoutError)):
            return Transient(f"HubSpot unreachable: {exc.__class__.__name__}")
        return Transient(f"unexpected transport failure: {exc!r}")
    body = _body(exc)
    message = str(body.get("message") or body.get("error_description") or getattr(exc, "reason", "") or "")[:500]
    category = str(body.get("category") or "")
    if body.get("error") == "invalid_grant" or body.get("status") == "BAD_REFRESH_TOKEN":
        return NeedsReauth(f"HubSpot refused the refresh token: {message}", status=status)
    if status == 401:
        return AuthExpired(message or "access token expired or revoked", status=status)
    if status == 429:
        policy = str(body.get("policyName") or "")
        if policy == "DAILY":
            return RateLimited(message or "daily limit", retry_after=_retry_after(exc, 3600.0), scope="daily")
        default = 1.0 if policy == "SECONDLY" else 10.0
        return RateLimited(message or "rate limited", retry_after=_retry_after(exc, default), scope="burst")
    if status == 477:  # migration in progress
        return RateLimited(message or "portal migration in progress", retry_after=_retry_after(exc, 30.0),
                           status=status)
    if category == "SANDBOX_CONTRACT_VIOLATION":
        return Rejected(message, status=status)  # our request is wrong: retrying cannot help
    if status == 423 or status >= 500:
        return Transient(f"HubSpot {status}: {message}", status=status)
    if status == 404:
        return NotFound(message or "not found", status=status)
    if body.get("error") == "invalid_client":
        return Rejected(f"HubSpot app credentials refused: {message}", status=status)
    return Rejected(f"HubSpot {status} {category}: {message}".strip(), status=status)


# ---- OAuth ----------------------------------------------------------------------------------


@dataclass
class HubSpotConfig:
    client_id: str
    client_secret: str
    api_base: str = API_BASE
    auth_base: str = AUTH_BASE
    ca_bundle: str | None = None
    timeout: tuple[float, float] = (5.0, 30.0)
    max_attempts: int = 3
    max_inline_wait: float = 2.0  # longer rate-limit waits are deferred to the outbox
    sleep: Callable[[float], None] = time.sleep
    # The app's id and its developer account's API key: timeline event templates belong to the
    # app and are managed with that key, not with a portal's token. Unset: notes instead.
    app_id: str = ""
    developer_api_key: str = ""


def _sdk(config: HubSpotConfig, access_token: str | None = None, api_key: str | None = None) -> HubSpot:
    kwargs: dict[str, Any] = {"host": config.api_base.rstrip("/"), "retry": Retry(total=0, redirect=0)}
    if config.ca_bundle:
        kwargs["ssl_ca_cert"] = config.ca_bundle
    return HubSpot(access_token=access_token, api_key=api_key, **kwargs)


# ---- timeline ----------------------------------------------------------------------------

# One event template per kind of buyer action (connector.base.ACTIVITY_KINDS), all on deals,
# all with the same three string tokens. Templates are the app's, shared by every portal.
TIMELINE_TEMPLATES = {
    "milestone_completed": "MutualPlan: milestone completed",
    "date_proposed": "MutualPlan: date proposed",
    "date_confirmed": "MutualPlan: date confirmed",
    "comment": "MutualPlan: buyer comment",
    "link_opened": "MutualPlan: buyer link opened",
}
TIMELINE_TOKENS = (("mp_subject", "What happened"), ("mp_detail", "Detail"), ("mp_buyer", "Buyer"))
_TEMPLATE_CACHE: dict[tuple[str, str], dict] = {}  # (api base, app id) -> kind -> template id
NOTE_TO_DEAL = 214  # HUBSPOT_DEFINED note -> deal association type


def _note_body(a) -> str:
    """A note's HTML body (hs_note_body is rich text): the subject, then the detail."""
    detail = f"<br>{html.escape(a.body)}" if a.body else ""
    return f"<strong>{html.escape(a.subject)}</strong>{detail}"


# HubSpot's OAuth endpoints, in one place: the date-versioned ones (spec
# Auth/Oauth/Rollouts/279897/2026-03/oauth.json). The v1 token and token-info endpoints are
# removed on 2027-02-16; the date-versioned ones take every parameter in the form body.
ENDPOINTS = {
    "authorize": "{auth_base}/oauth/authorize",
    "token": "{api_base}/oauth/2026-03/token",
    "introspect": "{api_base}/oauth/2026-03/token/introspect",
}


def _token_error(status: int, body, headers: dict) -> CrmError:
    """A refused token request, classified like any SDK error."""
    exc = Exception()
    exc.status, exc.body, exc.headers = status, json.dumps(body), headers
    return classify(exc)


class HubSpotOAuth:
    """The authorize URL, code exchange and refresh (authlib), and the token's metadata."""

    def __init__(self, config: HubSpotConfig, redirect_uri: str = ""):
        self.config = config
        self.client = OAuthClient(
            config.client_id, config.client_secret, redirect_uri, ENDPOINTS, _token_error,
            scope=" ".join(REQUIRED_SCOPES),
            authorize_params={"optional_scope": " ".join(OPTIONAL_SCOPES)},
            ca_bundle=config.ca_bundle, timeout=config.timeout)

    @property
    def _bases(self) -> dict:
        return {"auth_base": self.config.auth_base.rstrip("/"),
                "api_base": self.config.api_base.rstrip("/")}

    def authorization_url(self, state: str, code_verifier: str | None = None, **where) -> str:
        return self.client.authorization_url(state, **self._bases)

    @staticmethod
    def _tokens(raw: dict, refresh_token: str | None = None, extra: dict | None = None) -> TokenSet:
        expires = utcnow() + timedelta(seconds=int(raw.get("expires_in") or 1800))
        return TokenSet(raw["access_token"], raw.get("refresh_token") or refresh_token, expires,
                        dict(extra or {}))

    def exchange(self, code: str) -> TokenSet:
        return self._tokens(self.client.exchange(code, **self._bases))

    def refresh(self, refresh_token: str | None, extra: dict | None = None) -> TokenSet:
        if not refresh_token:
            raise NeedsReauth("no refresh token stored")
        return self._tokens(self.client.refresh(refresh_token, **self._bases), refresh_token, extra)

    def token_info(self, access_token: str) -> dict:
        """hub_id, scopes, user and hub_domain of a token (the token response has none of them),
        from the introspection endpoint."""
        info = self.client.introspect(access_token, "access_token", **self._bases)
        if info.get("active") is False:
            raise AuthExpired("HubSpot says the access token is no longer active")
        return {"hub_id": str(info.get("hub_id")), "scopes": list(info.get("scopes") or []),
                "user": info.get("user"), "user_id": info.get("user_id"),
                "hub_domain": info.get("hub_domain"), "app_id": info.get("app_id")}


# ---- webhook / card signatures --------------------------------------------------------------

_V3_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
              "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
_V3_RE = re.compile("|".join(re.escape(k) for k in _V3_DECODE), re.IGNORECASE)


def decode_uri(uri: str) -> str:
    """HubSpot's v3 rule: decode exactly these 12 escapes, leave every other one as sent."""
    return _V3_RE.sub(lambda m: _V3_DECODE[m.group(0).upper()], uri)


class InvalidSignature(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # missing | bad_timestamp | expired | future | mismatch


class SignatureVerifier:
    """X-HubSpot-Signature-v3 over method + URI + raw body + timestamp (DESIGN §7).

    `clock` returns epoch seconds (injectable, so the window is testable). Requests
    older than `window` are refused, and so are timestamps more than `skew` ahead.

    `accept_undecoded` (development only, never in production) also accepts a signature made
    over the URI as sent, without HubSpot's decoding rule: what the CLI's local development
    proxy (`hs project dev`) signs when it forwards a card request to localhost
    (hubspot_app/README.md). `userEmail` always carries a `%40`, so otherwise every proxied card
    request fails.
    """

    def __init__(self, client_secret: str, clock: Callable[[], float] = time.time,
                 window: float = 300.0, skew: float = 30.0, accept_undecoded: bool = False):
        self.secret, self.clock, self.window, self.skew = client_secret.encode(), clock, window, skew
        self.accept_undecoded = accept_undecoded

    def sign(self, method: str, uri: str, body: bytes, timestamp: str, decode: bool = True) -> str:
        source = (method.upper().encode() + (decode_uri(uri) if decode else uri).encode() + body
                  + timestamp.encode())
        return base64.b64encode(hmac.new(self.secret, source, hashlib.sha256).digest()).decode()

    def verify(self, method: str, uri: str, body: bytes, signature: str | None,
               timestamp: str | None) -> None:
        if not signature or not timestamp:
            raise InvalidSignature("missing")
        if not (1 <= len(timestamp) <= 13 and timestamp.isascii() and timestamp.isdigit()):
            raise InvalidSignature("bad_timestamp")
        age = self.clock() - int(timestamp) / 1000.0
        if age > self.window:
            raise InvalidSignature("expired")
        if age < -self.skew:
            raise InvalidSignature("future")
        given = signature.strip().encode()
        if hmac.compare_digest(self.sign(method, uri, body, timestamp).encode(), given):
            return
        if self.accept_undecoded and hmac.compare_digest(
                self.sign(method, uri, body, timestamp, decode=False).encode(), given):
            return
        raise InvalidSignature("mismatch")


# ---- value conversion -----------------------------------------------------------------------


def _s(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        v = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        v = v.astimezone(timezone.utc)
        return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _parse_dt(value: str | None) -> datetime | None:
    if not value:
        return None
    v = str(value).strip()
    if v.isdigit():
        return datetime.fromtimestamp(int(v) / 1000, tz=timezone.utc)
    try:
        d = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def _parse_date(value: str | None) -> date | None:
    if not value:
        return None
    if len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    d = _parse_dt(value)
    return d.date() if d else None


def _ms(when: datetime) -> str:
    return str(int(when.timestamp() * 1000))


def milestone_properties(m: MilestoneDoc, previous: dict | None = None) -> dict:
    """The record's properties; with `previous` (what the existing record held), only those
    that changed. mp_sync fingerprints the whole record as it will then be, so the pull knows
    our write coming back, and a rep's edit of another property since shows as an edit."""
    fields = milestone_fields(m)
    props = {prop: _s(fields[name]) for name, prop in MILESTONE_MAP.items()}
    sync = f"{content_hash(fields)}:{_wire_hash(props)}"
    changed = changed_fields(m, previous)
    if changed is not None:
        props = {prop: props[prop] for name, prop in MILESTONE_MAP.items() if name in changed}
    props["mp_sync"] = sync
    return props


def _wire_hash(props: dict) -> str:
    """A hash of the values as HubSpot keeps them (datetimes to the millisecond)."""
    canon = {}
    for name in MILESTONE_MAP.values():
        v = props.get(name) or ""
        if name == "mp_completed_at" and v:
            d = _parse_dt(v)
            v = _ms(d) if d else v
        if name == "mp_position" and v:
            try:
                v = str(int(float(v)))
            except ValueError:
                pass
        canon[name] = v
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:24]


def milestone_from_properties(props: dict) -> tuple[dict, str | None]:
    """(MilestoneDoc field names -> values, content hash if unchanged since our push)."""
    p = {k: (v if v is not None else "") for k, v in props.items()}
    position = p.get("mp_position") or "0"
    try:
        position = int(float(position))
    except ValueError:
        position = 0
    fields = {
        "plan_uuid": p.get("mp_plan_uuid", ""), "title": p.get("mp_title", ""),
        "stage_name": p.get("mp_stage_name", ""), "position": position,
        "description": p.get("mp_description", ""), "owner_side": p.get("mp_owner_side") or "seller",
        "owner_name": p.get("mp_owner_name", ""), "owner_email": p.get("mp_owner_email", ""),
        "due_date": _parse_date(p.get("mp_due_date")), "status": p.get("mp_status") or "not_started",
        "risk": p.get("mp_risk") or "on_track", "internal": p.get("mp_internal") == "true",
        "completed_at": _parse_dt(p.get("mp_completed_at")), "gate_stage": p.get("mp_gate_stage") or None,
    }
    logical, _, wire = (p.get("mp_sync") or "").partition(":")
    echo = logical if logical and wire and wire == _wire_hash(p) else None
    return fields, echo


def plan_properties(plan: PlanDoc) -> dict:
    return {"mp_name": plan.title[:500], "mp_value_summary": plan.value_summary,
            "mp_objectives": plan.objectives, "mp_constraints": plan.constraints,
            "mp_go_live_date": _s(plan.go_live_date), "mp_budget": plan.budget, "mp_deal_id": plan.deal_id}


def deal_properties(update: DealUpdate) -> dict:
    props = {}
    if update.stage is not None:
        props["dealstage"] = update.stage
        if update.pipeline:
            props["pipeline"] = update.pipeline
    if update.close_date is not None:
        props["closedate"] = f"{update.close_date.isoformat()}T00:00:00.000Z"
    for key, value in (update.properties or {}).items():
        spec = DEAL_PROPERTIES.get(key)
        if spec is None:
            log.debug("no HubSpot property for summary key %r", key)
            continue
        props[spec[0]] = _s(value)
    return props


def _chunks(items: list, size: int = BATCH):
    for i in range(0, len(items), size):
        yield items[i:i + size]


# ---- the connector --------------------------------------------------------------------------


@dataclass
class _Limiter:
    """No-op limiter (the webapp passes its shared token bucket)."""

    def acquire(self, key: str, cost: float = 1.0) -> float:
        return 0.0


class HubSpotConnector:
    provider = "hubspot"

    def __init__(self, config: HubSpotConfig, portal_id: str, tokens: TokenStore,
                 settings: dict | None = None, limiter=None):
        self.config = config
        self.portal_id = str(portal_id)
        self.store = tokens
        self.settings = dict(settings or {})
        self.limiter = limiter or _Limiter()
        self.oauth = HubSpotOAuth(config)
        self._tokens: TokenSet | None = None
        self._client: HubSpot | None = None
        self.calls = 0  # API calls made by this instance (benchmarks, PushResult.calls)

    # -- the one call path --------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.settings.get("mode") or MODE_DEAL

    def _current(self) -> TokenSet:
        if self._tokens is None:
            self._tokens = self.store.load()
            if self._tokens is None:
                raise NeedsReauth("no tokens stored for this HubSpot installation")
        due = self._tokens.expires_at is not None and self._tokens.expires_at - REFRESH_MARGIN <= utcnow()
        if due:
            self._refresh(self._tokens)
        return self._tokens

    def _refresh(self, stale: TokenSet | None) -> None:
        self._tokens = self.store.refresh(stale, lambda cur: self.oauth.refresh(cur.refresh_token, cur.extra))
        self._client = None

    def keep_alive(self) -> None:
        """Refresh if due (the clock's daily keep-alive)."""
        self._current()

    def _api(self) -> HubSpot:
        token = self._current().access_token
        if self._client is None or self._client.access_token != token:
            self._client = _sdk(self.config, token)
        return self._client

    def _once(self, fn: Callable[[HubSpot], Any], search: bool, developer: bool = False) -> Any:
        replayed = False
        while True:
            client = _sdk(self.config, api_key=self.config.developer_api_key) if developer else self._api()
            key = f"{self.portal_id}:search" if search else self.portal_id
            self.limiter.acquire(key, SEARCH_COST if search else 1.0)
            self.calls += 1
            try:
                return fn(client)
            except Exception as exc:
                err = classify(exc)
                if isinstance(err, AuthExpired) and not replayed and not developer:
                    replayed = True
                    self._refresh(self._tokens)  # 401 anyway: refresh and replay once
                    continue
                raise err from exc

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, Transient):
            return True
        return (isinstance(exc, RateLimited) and exc.scope == "burst"
                and exc.retry_after <= self.config.max_inline_wait and exc.status is not None)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            return exc.retry_after
        return min(2.0, 0.1 * 2 ** state.attempt_number) * (0.5 + random.random() / 2)

    def _call(self, fn: Callable[[HubSpot], Any], *, search: bool = False, developer: bool = False) -> Any:
        """`developer`: the call is the app's (timeline templates), made with the developer API
        key instead of the portal's token; same limiter, retries and classification."""
        for attempt in Retrying(stop=stop_after_attempt(self.config.max_attempts), wait=self._wait,
                                retry=retry_if_exception(self._retryable), sleep=self.config.sleep,
                                reraise=True):
            with attempt:
                return self._once(fn, search, developer)

    @property
    def _t(self) -> dict:
        return {"_request_timeout": self.config.timeout}

    # -- setup ----------------------------------------------------------------------------
    def ensure_setup(self) -> dict:
        """Idempotent: the deal property group and summary properties, the custom objects
        where the portal allows them, and the deal pipelines. Returns the settings learnt."""
        self._ensure_deal_properties()
        settings: dict = {"mode": MODE_DEAL, "portal_id": self.portal_id}
        objects = self._ensure_schemas()
        if objects:
            settings.update(mode=MODE_CUSTOM, **objects)
        pipelines = self._call(lambda c: c.crm.pipelines.pipelines_api.get_all("deals", **self._t))
        cache, default = {}, None
        for p in sorted(pipelines.results or [], key=lambda p: p.display_order or 0):
            cache[p.id] = [vars(st) for st in _stages(p)]
            default = default or p.id
        settings["pipelines"] = cache
        settings["default_pipeline"] = "default" if "default" in cache else (default or "default")
        self.settings.update(settings)
        return settings

    def _ensure_deal_properties(self) -> None:
        try:
            self._call(lambda c: c.crm.properties.groups_api.create(
                "deals", PropertyGroupCreate(name=GROUP, label=GROUP_LABEL, display_order=-1), **self._t))
        except Rejected as exc:
            if exc.status != 409:
                raise
        existing = self._call(lambda c: c.crm.properties.core_api.get_all("deals", **self._t))
        have = {p.name for p in existing.results or []}
        missing = [spec for spec in DEAL_PROPERTIES.values() if spec[0] not in have]
        if missing:
            inputs = [_property_create(spec, GROUP) for spec in missing]
            self._call(lambda c: c.crm.properties.batch_api.create(
                "deals", BatchInputPropertyCreate(inputs=inputs), **self._t))

    def _ensure_schemas(self) -> dict | None:
        """Custom objects, or None for deal-properties mode (any 403 from HubSpot says so)."""
        try:
            found = self._call(lambda c: c.crm.schemas.core_api.get_all(**self._t))
        except Rejected as exc:
            if exc.status == 403:
                return None
            raise
        schemas = {s.name: s for s in found.results or []}
        # mp_uuid is unique but never required: a rep creating a plan or milestone in HubSpot's
        # UI cannot know our UUID (requiredProperties are enforced by the create form); the
        # pull imports such records and writes the UUID back.
        try:
            plan = schemas.get(PLAN_OBJECT) or self._create_schema(
                PLAN_OBJECT, "Mutual Action Plan", "Mutual Action Plans", PLAN_PROPERTIES, "mp_name",
                ["mp_name"], ["DEAL"])
            milestone = schemas.get(MILESTONE_OBJECT) or self._create_schema(
                MILESTONE_OBJECT, "MAP Milestone", "MAP Milestones", MILESTONE_PROPERTIES, "mp_title",
                ["mp_title"], [plan.object_type_id])
            for schema in (plan, milestone):
                self._uuid_not_required(schema)
        except Rejected as exc:
            if exc.status == 403:
                return None
            raise

        def assoc(schema, to_type: str) -> int | None:
            for a in schema.associations or []:
                if a.from_object_type_id == schema.object_type_id and a.to_object_type_id == to_type:
                    return int(a.id)
            return None

        plan_to_deal = assoc(plan, "0-3")
        milestone_to_plan = assoc(milestone, plan.object_type_id)
        if milestone_to_plan is None:  # an older schema without the association
            from hubspot.crm.schemas import AssociationDefinitionEgg

            made = self._call(lambda c: c.crm.schemas.core_api.create_association(
                milestone.object_type_id, AssociationDefinitionEgg(
                    from_object_type_id=milestone.object_type_id, to_object_type_id=plan.object_type_id,
                    name="map_milestone_to_plan"), **self._t))
            milestone_to_plan = int(made.id)
        return {"object_types": {"plan": plan.object_type_id, "milestone": milestone.object_type_id},
                "association_types": {"plan_to_deal": plan_to_deal, "milestone_to_plan": milestone_to_plan}}

    def _uuid_not_required(self, schema) -> None:
        """Schemas made by earlier versions listed mp_uuid as required: drop it (one PATCH)."""
        required = list(getattr(schema, "required_properties", None) or [])
        if UUID_PROPERTY not in required:
            return
        from hubspot.crm.schemas import ObjectTypeDefinitionPatch

        patch = ObjectTypeDefinitionPatch(
            required_properties=[p for p in required if p != UUID_PROPERTY])
        self._call(lambda c: c.crm.schemas.core_api.update(
            schema.object_type_id, object_type_definition_patch=patch, **self._t))

    def _create_schema(self, name, singular, plural, properties, primary, required, associated):
        egg = ObjectSchemaEgg(
            name=name, description=f"{singular} (MutualPlan)",
            labels=ObjectTypeDefinitionLabels(singular=singular, plural=plural),
            primary_display_property=primary, secondary_display_properties=[],
            searchable_properties=[primary, UUID_PROPERTY], required_properties=required,
            properties=[ObjectTypePropertyCreate(
                name=n, label=label, type=t, field_type=ft, has_unique_value=(n == UUID_PROPERTY),
                options=[{"label": lab, "value": v, "displayOrder": i, "hidden": False}
                         for i, (v, lab) in enumerate(opts)] if opts else None)
                for n, label, t, ft, opts in properties],
            associated_objects=list(associated))
        return self._call(lambda c: c.crm.schemas.core_api.create(object_schema_egg=egg, **self._t))

    # -- push -------------------------------------------------------------------------------
    def push_plan(self, plan: PlanDoc, deal: DealUpdate | None) -> PushResult:
        start = self.calls
        remote_ids: dict = {}
        if self.mode == MODE_CUSTOM and self.settings.get("object_types"):
            remote_ids = self._push_objects(plan)
        if deal is not None and not deal.is_empty():
            self.update_deal(deal)
        if plan.activities and (plan.deal_id or "").isdigit():
            self.push_activity(plan.deal_id, plan.activities)
        return PushResult(remote_ids=remote_ids, calls=self.calls - start)

    # -- buyer activity on the deal's timeline ------------------------------------------------
    def timeline_mode(self) -> str:
        """"events" (timeline scope and the app's templates), "notes" (contacts write scope),
        or "" (neither: the activity is dropped). Scopes as granted at install."""
        scopes = set(self.settings.get("scopes") or ())
        if "timeline" in scopes and self.config.app_id and self.config.developer_api_key:
            return "events"
        if "crm.objects.contacts.write" in scopes:
            return "notes"
        return ""

    def push_activity(self, deal_id: str, activities) -> str:
        """Buyer actions onto the deal: one batch call per 100 (timeline events, our UUID as the
        event id, so a replay is refused as a duplicate instead of doubling the event), or notes
        associated with the deal when the app has no timeline access (a 403 included)."""
        mode = self.timeline_mode()
        if mode == "events":
            try:
                self._send_events(deal_id, activities)
                return "events"
            except Rejected as exc:
                if exc.status != 403:
                    raise
                log.info("HubSpot portal %s refused timeline events (403): notes instead", self.portal_id)
                mode = "notes" if "crm.objects.contacts.write" in set(self.settings.get("scopes") or ()) else ""
        if mode == "notes":
            self._send_notes(deal_id, activities)
            return "notes"
        log.info("HubSpot portal %s: no timeline or notes scope, %d buyer action(s) not sent",
                 self.portal_id, len(activities))
        return ""

    def timeline_templates(self) -> dict:
        """kind -> event template id: the app's templates, created once where missing (listed
        and created with the developer API key, "Create an event template",
        https://developers.hubspot.com/docs/api/crm/timeline), then cached per process."""
        key = (self.config.api_base, str(self.config.app_id))
        if key in _TEMPLATE_CACHE:
            return _TEMPLATE_CACHE[key]
        from hubspot.crm.timeline import TimelineEventTemplateCreateRequest, TimelineEventTemplateToken

        app_id = int(self.config.app_id)
        found = self._call(lambda c: c.crm.timeline.templates_api.get_all(app_id, **self._t), developer=True)
        by_name = {t.name: t.id for t in found.results or []}
        out = {}
        for kind, name in TIMELINE_TEMPLATES.items():
            if name not in by_name:
                request = TimelineEventTemplateCreateRequest(
                    name=name, object_type="DEAL", header_template="{{mp_subject}}",
                    detail_template="{{mp_detail}}",
                    tokens=[TimelineEventTemplateToken(name=n, label=label, type="string", options=[])
                            for n, label in TIMELINE_TOKENS])
                made = self._call(lambda c, r=request: c.crm.timeline.templates_api.create(
                    app_id, r, **self._t), developer=True)
                by_name[name] = made.id
            out[kind] = str(by_name[name])
        _TEMPLATE_CACHE[key] = out
        return out

    def _send_events(self, deal_id: str, activities) -> None:
        from hubspot.crm.timeline import BatchInputTimelineEvent, TimelineEvent

        templates = self.timeline_templates()
        events = [TimelineEvent(event_template_id=templates[a.kind], id=a.uuid, object_id=str(deal_id),
                                timestamp=a.at, tokens={"mp_subject": a.subject, "mp_detail": a.body or "-",
                                                        "mp_buyer": a.actor or "-"})
                  for a in activities]
        for chunk in _chunks(events):
            # The SDK reads no body from this call (it declares no response type): the raw answer
            # is read here, as a 207 lists the events HubSpot refused.
            raw = self._call(lambda c, chunk=chunk: c.crm.timeline.events_api.create_batch(
                BatchInputTimelineEvent(inputs=chunk), _preload_content=False, **self._t))
            body = json.loads(raw.data or b"{}") if getattr(raw, "status", 201) == 207 else {}
            refused = [e for e in body.get("errors") or []
                       if str(e.get("category")) != "CONFLICT"]  # CONFLICT: sent before (a replay)
            if refused:
                raise Rejected(f"HubSpot refused {len(refused)} timeline event(s): "
                               f"{refused[0].get('message')}", status=400)

    def _send_notes(self, deal_id: str, activities) -> None:
        inputs = [SimplePublicObjectBatchInputForCreate(
            properties={"hs_timestamp": _s(a.at), "hs_note_body": _note_body(a)},
            associations=[{"to": {"id": str(deal_id)}, "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_DEAL}]}])
            for a in activities]
        for chunk in _chunks(inputs):
            self._call(lambda c, chunk=chunk: c.crm.objects.batch_api.create(
                "notes", BatchInputSimplePublicObjectBatchInputForCreate(inputs=chunk), **self._t))

    def _push_objects(self, plan: PlanDoc) -> dict:
        types = self.settings["object_types"]
        assoc = self.settings.get("association_types") or {}
        known = dict(getattr(plan, "remote_ids", None) or {})
        out: dict = {}
        if known.get("adopted"):
            self._adopt(plan, known["adopted"])
            out["adopted"] = {}  # written: nothing left to adopt
        static_key = f"plan-hash:{plan.uuid}"
        static = content_hash(plan_properties(plan))
        plan_id = known.get(plan.uuid)
        plan_new, deal_linked = False, False
        to_deal = assoc.get("plan_to_deal") if plan.deal_id else None
        if plan_id is None:
            # Never created as far as the mirror knows: create it already associated to the
            # deal (one call). A 409 means an earlier push got that far: upsert instead.
            try:
                made = self._call(lambda c: c.crm.objects.batch_api.create(
                    types["plan"], BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
                        SimplePublicObjectBatchInputForCreate(
                            properties={UUID_PROPERTY: plan.uuid, **plan_properties(plan)},
                            associations=[{"to": {"id": plan.deal_id}, "types": [
                                {"associationCategory": "USER_DEFINED", "associationTypeId": to_deal}]}]
                            if to_deal else [])]), **self._t))
                plan_id, plan_new, deal_linked = made.results[0].id, True, True
                out[static_key] = static
            except Rejected as exc:
                if exc.status != 409:
                    raise
        if plan_id is None or (not plan_new and known.get(static_key) != static):
            result = self._upsert(types["plan"], [(plan.uuid, plan_properties(plan))])[0]
            plan_new = plan_new or bool(getattr(result, "new", False)) or plan.uuid not in known
            plan_id = result.id
            out[static_key] = static
        out[plan.uuid] = plan_id
        if plan_new and not deal_linked and to_deal:
            self._associate(types["plan"], "deals", [(plan_id, plan.deal_id)], to_deal)
        milestones = list(plan.milestones)
        if milestones:
            out.update(self._push_milestones(types["milestone"], milestones, plan_id, known, plan_new,
                                             assoc.get("milestone_to_plan"), plan.previous))
        if plan.deleted_milestones:
            self._archive(types["milestone"], plan.deleted_milestones, known)
        return out

    def _adopt(self, plan: PlanDoc, adopted: dict) -> None:
        """Records made in HubSpot's UI and imported here get our UUID first, by record id (one
        batch update per object type), so the upserts by mp_uuid that follow find them instead
        of creating twins."""
        types = self.settings["object_types"]
        for kind in ("plan", "milestone"):
            pairs = [(uuid, rid) for uuid, rid in sorted(adopted.items())
                     if (uuid == plan.uuid) == (kind == "plan")]
            for chunk in _chunks(pairs):
                inputs = [SimplePublicObjectBatchInput(id=str(rid), properties={UUID_PROPERTY: uuid})
                          for uuid, rid in chunk]
                self._call(lambda c, t=types[kind], inputs=inputs: c.crm.objects.batch_api.update(
                    t, BatchInputSimplePublicObjectBatchInput(inputs=inputs), **self._t))

    def _push_milestones(self, type_id, milestones, plan_id, known, plan_new, assoc_type,
                         previous: dict | None = None) -> dict:
        out = {}
        if plan_new and assoc_type and not any(m.uuid in known for m in milestones):
            # A brand-new plan: its milestones are new too; create them associated in one go.
            try:
                for chunk in _chunks(milestones):
                    inputs = [SimplePublicObjectBatchInputForCreate(
                        properties={UUID_PROPERTY: m.uuid, **milestone_properties(m)},
                        associations=[{"to": {"id": plan_id}, "types": [
                            {"associationCategory": "USER_DEFINED", "associationTypeId": assoc_type}]}])
                        for m in chunk]
                    made = self._call(lambda c, inputs=inputs: c.crm.objects.batch_api.create(
                        type_id, BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs), **self._t))
                    for r in made.results or []:
                        out[r.properties.get(UUID_PROPERTY)] = r.id
                return out
            except Rejected as exc:
                if exc.status != 409:  # someone has them already: fall back to upserts
                    raise
        results = self._upsert(type_id, [
            (m.uuid, milestone_properties(m, (previous or {}).get(m.uuid) if m.uuid in known else None))
            for m in milestones])
        pairs = []
        for m, r in zip(milestones, results, strict=True):
            out[m.uuid] = r.id
            if getattr(r, "new", False) or m.uuid not in known:
                pairs.append((r.id, plan_id))
        if pairs and assoc_type:
            self._associate(type_id, self.settings["object_types"]["plan"], pairs, assoc_type)
        return out

    def _upsert(self, type_id: str, items: list[tuple[str, dict]]) -> list:
        results = []
        for chunk in _chunks(items):
            inputs = [SimplePublicObjectBatchInputUpsert(id=uuid, id_property=UUID_PROPERTY, properties=props)
                      for uuid, props in chunk]
            res = self._call(lambda c, inputs=inputs: c.crm.objects.batch_api.upsert(
                type_id, BatchInputSimplePublicObjectBatchInputUpsert(inputs=inputs), **self._t))
            by_uuid = {(r.properties or {}).get(UUID_PROPERTY): r for r in res.results or []}
            results += [by_uuid.get(uuid) or _Missing(uuid) for uuid, _ in chunk]
        missing = [r.uuid for r in results if isinstance(r, _Missing)]
        if missing:
            raise Transient(f"HubSpot upsert answered without {len(missing)} record(s)")
        return results

    def _associate(self, from_type: str, to_type: str, pairs: list[tuple[str, str]], type_id: int) -> None:
        for chunk in _chunks(pairs):
            inputs = [PublicAssociationMultiPost(
                _from=PublicObjectId(id=str(a)), to=PublicObjectId(id=str(b)),
                types=[AssociationSpec(association_category="USER_DEFINED", association_type_id=int(type_id))])
                for a, b in chunk]
            res = self._call(lambda c, inputs=inputs: c.crm.associations.v4.batch_api.create(
                from_type, to_type, BatchInputPublicAssociationMultiPost(inputs=inputs), **self._t))
            errors = getattr(res, "errors", None) or []
            if errors:
                raise Rejected(f"HubSpot refused {len(errors)} association(s): "
                               f"{getattr(errors[0], 'message', errors[0])}")

    def _archive(self, type_id: str, uuids, known: dict) -> None:
        ids = [known[u] for u in uuids if known.get(u)]
        unknown = [u for u in uuids if not known.get(u)]
        for chunk in _chunks(unknown):
            res = self._call(lambda c, chunk=chunk: c.crm.objects.batch_api.read(
                type_id, BatchReadInputSimplePublicObjectId(
                    inputs=[SimplePublicObjectId(id=u) for u in chunk], id_property=UUID_PROPERTY,
                    properties=[UUID_PROPERTY], properties_with_history=[]), **self._t))
            ids += [r.id for r in res.results or []]
        for chunk in _chunks(ids):
            self._call(lambda c, chunk=chunk: c.crm.objects.batch_api.archive(
                type_id, BatchInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=i) for i in chunk]),
                **self._t))

    def remove_plan(self, plan_uuid: str, deal_id: str, milestone_uuids: tuple,
                    remote_ids: dict) -> None:
        """A plan deleted in MutualPlan: in custom-objects mode its plan and milestone records
        go to the recycle bin (one batch archive per object type, by the record ids the mirror
        knows; an id already archived or gone answers 204 too, "Archive a batch of objects by
        ID", https://developers.hubspot.com/docs/api-reference/latest/crm/objects/custom-objects/
        batch/delete-custom-objects), and in both modes the deal's mp_* summary is emptied in
        one update. Never-pushed milestones have no record id and nothing to archive."""
        types = self.settings.get("object_types") or {}
        if self.mode == MODE_CUSTOM and types:
            for kind, uuids in (("milestone", milestone_uuids), ("plan", (plan_uuid,))):
                ids = [remote_ids[u] for u in uuids if remote_ids.get(u)]
                for chunk in _chunks(ids):
                    self._call(lambda c, t=types[kind], chunk=chunk: c.crm.objects.batch_api.archive(
                        t, BatchInputSimplePublicObjectId(
                            inputs=[SimplePublicObjectId(id=str(i)) for i in chunk]), **self._t))
        if not (deal_id or "").isdigit():
            return
        cleared = {spec[0]: "" for spec in DEAL_PROPERTIES.values()}
        try:
            self._call(lambda c: c.crm.objects.basic_api.update(
                "deals", deal_id, SimplePublicObjectInput(properties=cleared), **self._t))
        except NotFound:
            pass  # the deal is gone (deleted in HubSpot): no summary left to clear

    # -- deals --------------------------------------------------------------------------------
    def update_deal(self, update: DealUpdate) -> None:
        props = deal_properties(update)
        if not props:
            return
        self._call(lambda c: c.crm.objects.basic_api.update(
            "deals", update.deal_id, SimplePublicObjectInput(properties=props), **self._t))

    def get_deal(self, deal_id: str) -> Deal:
        rec = self._call(lambda c: c.crm.objects.basic_api.get_by_id(
            "deals", deal_id, properties=["dealstage", "pipeline", "closedate", "hs_lastmodifieddate"],
            **self._t))
        return _deal(rec)

    def deal_field(self, deal_id: str, name: str) -> str:
        """One property of a deal as text ("" when empty), e.g. the customer-success owner's
        e-mail an admin names in the hand-off settings (webapp/onboarding.py)."""
        if not re.fullmatch(r"[a-z0-9_]{1,100}", name or ""):
            raise Rejected(f"{name!r} is not a HubSpot property name")
        rec = self._call(lambda c: c.crm.objects.basic_api.get_by_id(
            "deals", deal_id, properties=[name], **self._t))
        return str((rec.properties or {}).get(name) or "")

    def pipeline_stages(self, pipeline: str | None = None) -> list[PipelineStage]:
        pipeline = pipeline or self.settings.get("default_pipeline") or "default"
        p = self._call(lambda c: c.crm.pipelines.pipelines_api.get_by_id("deals", pipeline, **self._t))
        return _stages(p)

    def search_deals(self, query: str, limit: int = 10) -> list[Deal]:
        """CRM search on `dealname`: one CONTAINS_TOKEN filter per word (ANDed in one group;
        `*word*` matches inside a token), newest first."""
        words = [w.replace("*", "") for w in query.split()][:3]  # HubSpot: <= 6 filters/group
        words = [w for w in words if w]
        if not words:
            return []
        request = PublicObjectSearchRequest(
            filter_groups=[FilterGroup(filters=[
                Filter(property_name="dealname", operator="CONTAINS_TOKEN", value=f"*{w}*")
                for w in words])],
            sorts=["-hs_lastmodifieddate"],
            properties=["dealname", "dealstage", "pipeline", "closedate", "hs_lastmodifieddate"],
            limit=max(1, min(limit, 50)), after="0")
        res = self._call(lambda c: c.crm.objects.search_api.do_search("deals", request, **self._t),
                         search=True)
        return [_deal(r) for r in res.results or []]

    # -- pull -----------------------------------------------------------------------------------
    def pull(self, since: datetime, cursor: str | None = None) -> Page:
        """Deals changed since `since` (those carrying our summary properties), then, in
        custom-objects mode, plan records and milestones edited or created in HubSpot's UI,
        then plan and milestone records deleted there (the recycle bin, `_binned`). (Deleted
        deals are not searchable: the webhook's deletion events bring them, see
        webapp/providers.py.)

        A record made in HubSpot's UI has no `mp_uuid`: it comes keyed by its record id with
        `born_in_crm`, and the record it hangs on (a plan's deal, a milestone's plan) is read
        from its associations, one batch read per page that has such records.

        Cursor: "<phase>:<after>[:<from ms>]". HubSpot's search stops at 10,000 results, so
        before paging past that it restarts from the last record's hs_lastmodifieddate
        (records sharing that instant are seen twice, which is harmless)."""
        phase, after, from_ms = ((cursor or "deals:0").split(":") + ["", ""])[:3]
        changes: list[RemoteChange] = []
        since_ms = from_ms or _ms(since)
        custom = self.mode == MODE_CUSTOM and bool(self.settings.get("object_types"))
        if phase == "deals":
            res = self._search("deals", since_ms, ["dealstage", "pipeline", "closedate", "hs_lastmodifieddate"],
                               after, [Filter(property_name=SUMMARY_MARKER, operator="HAS_PROPERTY")])
            for r in res.results or []:
                d = _deal(r)
                changes.append(RemoteChange("deal", d.id, {"stage": d.stage, "pipeline": d.pipeline,
                                                           "close_date": d.close_date},
                                            d.modified_at or utcnow()))
            nxt = _next_cursor("deals", res, since_ms)
            return Page(changes, nxt or ("plans:0" if custom else None))
        if not custom:
            return Page(changes, None)
        types = self.settings["object_types"]
        if phase == "plans":
            res = self._search(types["plan"], since_ms, [*PLAN_PULLED, "hs_lastmodifieddate"], after, [])
            records = res.results or []
            deals = self._associated(types["plan"], "deals",
                                     [r.id for r in records if not (r.properties or {}).get("mp_deal_id")])
            for r in records:
                p = r.properties or {}
                changes.append(RemoteChange(
                    "plan", p.get(UUID_PROPERTY) or str(r.id), {
                        "remote_id": str(r.id), "title": p.get("mp_name") or "",
                        "value_summary": p.get("mp_value_summary") or "",
                        "deal_id": p.get("mp_deal_id") or deals.get(str(r.id), "")},
                    _parse_dt(p.get("hs_lastmodifieddate")) or utcnow(),
                    born_in_crm=not p.get(UUID_PROPERTY)))
            return Page(changes, _next_cursor("plans", res, since_ms) or "milestones:0")
        if phase == "milestones":
            props = [UUID_PROPERTY, "hs_lastmodifieddate", "mp_sync", *MILESTONE_MAP.values()]
            res = self._search(types["milestone"], since_ms, props, after, [])
            records = res.results or []
            parents = self._associated(types["milestone"], types["plan"],
                                       [r.id for r in records if not (r.properties or {}).get(UUID_PROPERTY)])
            for r in records:
                p = r.properties or {}
                fields, echo = milestone_from_properties(p)
                modified = _parse_dt(p.get("hs_lastmodifieddate")) or utcnow()
                meta = {"remote_id": str(r.id)}
                if not p.get(UUID_PROPERTY):  # created in HubSpot's UI: keyed by its record id
                    meta["plan_remote_id"] = parents.get(str(r.id), "")
                    changes.append(RemoteChange("milestone", str(r.id), {**fields, **meta}, modified,
                                                born_in_crm=True))
                    continue
                changes.append(RemoteChange("milestone", p[UUID_PROPERTY], {**fields, **meta}, modified,
                                            content_hash=echo))
            return Page(changes, _next_cursor("milestones", res, since_ms) or "binned:0")
        if phase == "binned":
            return self._binned("milestone", since, after, "plans-binned:0")
        if phase == "plans-binned":
            return self._binned("plan", since, after, None)
        return Page(changes, None)

    def _associated(self, from_type: str, to_type: str, ids: list) -> dict:
        """record id -> the id of the first record of `to_type` it is associated with: one
        associations v4 batch read per 100 ids ("Retrieve associations", POST
        /crm/v4/associations/{fromObjectType}/{toObjectType}/batch/read, answering 200 or 207
        multi-status in HubSpot's published spec, sandboxes/specs/hubspot/PublicApiSpecs/CRM/
        Associations/Rollouts/130902/v4/associations.json). A record without associations comes
        back with no `to` or among the errors: either way it has no deal/plan here."""
        out: dict = {}
        for chunk in _chunks([str(i) for i in ids]):
            res = self._call(lambda c, chunk=chunk: c.crm.associations.v4.batch_api.get_page(
                from_type, to_type, BatchInputPublicFetchAssociationsBatchRequest(
                    inputs=[PublicFetchAssociationsBatchRequest(id=i) for i in chunk]), **self._t))
            for row in res.results or []:
                linked = sorted((str(t.to_object_id) for t in row.to or []), key=lambda v: (len(v), v))
                if linked:
                    out[str(row._from.id)] = linked[0]
        return out

    def _binned(self, kind: str, since: datetime, after: str, then: str | None) -> Page:
        """Plan or milestone records deleted in HubSpot's UI since `since`: search never
        returns archived records, and custom-object deletions reach no public app's webhooks,
        so the pull lists the recycle bin ("Whether to return only results that have been
        archived", `archived=true` on GET /crm/v3/objects/{objectType},
        https://developers.hubspot.com/docs/api-reference/latest/crm/objects/custom-objects/get-custom-objects).
        The list has no time filter: it is paged in full (one call per 100 binned records,
        kept 90 days) and `archivedAt` picks those new since the last pull. `then` is the
        phase after the last page."""
        type_id = self.settings["object_types"][kind]
        res = self._call(lambda c: c.crm.objects.basic_api.get_page(
            type_id, limit=SEARCH_PAGE, after=after or None, properties=[UUID_PROPERTY],
            archived=True, **self._t))
        changes = []
        for r in res.results or []:
            uuid = (r.properties or {}).get(UUID_PROPERTY)
            when = r.archived_at or r.updated_at
            when = when if when is None or when.tzinfo else when.replace(tzinfo=timezone.utc)
            if when is None or when < since:
                continue
            if uuid:
                changes.append(RemoteChange(kind, uuid, {"remote_id": str(r.id)}, when, deleted=True))
            elif kind == "plan":  # an imported plan whose UUID was not written back yet
                changes.append(RemoteChange(kind, str(r.id), {"remote_id": str(r.id)}, when,
                                            deleted=True, born_in_crm=True))
        nxt = _next_after(res)
        return Page(changes, f"{cursor_phase(kind)}:{nxt}" if nxt else then)

    def _search(self, object_type: str, since_ms: str, properties: list[str], after: str, extra: list):
        filters = [Filter(property_name="hs_lastmodifieddate", operator="GTE", value=since_ms), *extra]
        request = PublicObjectSearchRequest(
            filter_groups=[FilterGroup(filters=filters)],
            sorts=["hs_lastmodifieddate"],
            properties=properties, limit=SEARCH_PAGE, after=after or "0")
        return self._call(lambda c: c.crm.objects.search_api.do_search(object_type, request, **self._t),
                          search=True)


def cursor_phase(kind: str) -> str:
    return "binned" if kind == "milestone" else "plans-binned"


@dataclass
class _Missing:
    uuid: str
    id: str = ""
    new: bool = False


SEARCH_WINDOW = 10_000  # HubSpot's search returns at most this many results per query


def _next_cursor(phase: str, res, since_ms: str) -> str | None:
    nxt = _next_after(res)
    if not nxt:
        return None
    if nxt.isdigit() and int(nxt) + SEARCH_PAGE > SEARCH_WINDOW and res.results:
        last = _parse_dt((res.results[-1].properties or {}).get("hs_lastmodifieddate"))
        if last is not None and _ms(last) != since_ms:
            return f"{phase}:0:{_ms(last)}"
    return f"{phase}:{nxt}:{since_ms}"


def _next_after(res) -> str | None:
    paging = getattr(res, "paging", None)
    nxt = getattr(paging, "next", None) if paging else None
    return getattr(nxt, "after", None) if nxt else None


def _deal(rec) -> Deal:
    p = rec.properties or {}
    return Deal(str(rec.id), p.get("pipeline"), p.get("dealstage"), _parse_date(p.get("closedate")),
                _parse_dt(p.get("hs_lastmodifieddate")), p.get("dealname") or "")


def _stages(pipeline) -> list[PipelineStage]:
    out = []
    for i, st in enumerate(sorted(pipeline.stages or [], key=lambda s: s.display_order or 0)):
        meta = st.metadata or {}
        try:
            probability = float(meta.get("probability")) if meta.get("probability") not in (None, "") else None
        except (TypeError, ValueError):
            probability = None
        closed = str(meta.get("isClosed", "false")).lower() == "true"
        out.append(PipelineStage(st.id, st.label, i, probability, closed, closed and probability == 1.0))
    return out


def _property_create(spec, group: str) -> PropertyCreate:
    name, label, type_, field_type, options = spec
    return PropertyCreate(
        name=name, label=label, type=type_, field_type=field_type, group_name=group,
        options=[{"label": lab, "value": v, "displayOrder": i, "hidden": False}
                 for i, (v, lab) in enumerate(options)] if options else None)
