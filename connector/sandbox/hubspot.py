"""A local emulator of the HubSpot APIs MutualPlan uses (tests, `make run`, benchmarks).

One in-memory `HubSpotSandbox` holds portals (accounts), apps, OAuth codes and tokens, CRM
records, custom object schemas, properties, deal pipelines, v4 associations, a per-portal call log
and a fault-injection queue. `create_app(sandbox)` turns it into a WSGI app (werkzeug only, no
Flask) that speaks the paths and JSON of api.hubapi.com for what hubspot-api-client 12 calls:

    /oauth/authorize (consent page), /oauth/v1/token, /oauth/v1/access-tokens/{t},
    /oauth/v1/refresh-tokens/{t}, DELETE /appinstalls/v3/external-install
    /crm-object-schemas/v3/schemas[...]  (alias /crm/v3/schemas)
    /crm/v3/properties/{objectType}[/groups][/batch/create|read]
    /crm/v3/objects/{objectType}[/{id}][/batch/create|read|update|upsert|archive][/search]
    /crm/v4/associations/{from}/{to}/batch/..., /labels; /crm/v4/objects/{t}/{id}/associations/...
    /crm/v3/pipelines/deals[/{pipelineId}[/stages[/{stageId}]]]

`serve(sandbox)` runs it on a daemon thread (plain HTTP on 127.0.0.1, or TLS with `ssl_context=`).
Point the SDK at it with `HubSpot(access_token=..., host=server.url, retry=Retry(total=0))`.

Behaviour worth knowing (from shared/platform/hubspot.md unless marked *emulator choice*):
- Access tokens live 1800 s on the sandbox clock (`sandbox.advance(s)` moves it); an expired token
  answers 401 category EXPIRED_AUTHENTICATION. Refresh tokens stay valid until revoked or the app
  is uninstalled; then the token endpoint answers 400 invalid_grant / BAD_REFRESH_TOKEN.
- Custom objects need an Enterprise portal. On other tiers the consent page drops the custom
  scopes when they are optional and refuses the install when they are required; a schema create
  answers 403 (MISSING_SCOPES without the scope; *emulator choice* FORBIDDEN with the scope on a
  non-Enterprise portal). Detect deal-properties mode from "403 on schema create", not from the
  category.
- Scopes are enforced per object type: reads need `crm.objects.<t>.read`, writes `...write`;
  property/group writes need `crm.schemas.<t>.write`; schema writes `crm.schemas.custom.write`.
- 110 requests / 10 s rolling per (portal, app) -> 429 policyName TEN_SECONDLY_ROLLING; search has
  its own 5 requests / s per token (policyName SECONDLY) and is not counted in the 10 s window.
  `sandbox.rate_limit_retry_after = <seconds>` adds a Retry-After header (urllib3 then auto-retries
  GETs unless the SDK's retries are off).
- Every request and response that matches an operation in HubSpot's published OpenAPI specs
  (../shared/specs/hubspot from the repo root, or $HUBSPOT_SPECS_DIR) is validated with
  jsonschema. contract="strict": a violation answers 500 category SANDBOX_CONTRACT_VIOLATION and is
  recorded in `sandbox.contract_violations`; "warn": logged and recorded only; "off": nothing.
  Request bodies are checked as the spec is written, so send spec-required keys (e.g.
  `associations: []` on create; `after`, `sorts`, `properties`, `filterGroups`, `limit` on search;
  `properties` and `propertiesWithHistory` on batch read).
- Property values are stored and returned as strings; unknown properties, values outside an
  enumeration's options, non-numbers for number properties and stages outside the deal's pipeline
  are rejected with 400 VALIDATION_ERROR in HubSpot's "Property values were not valid" format.
  Properties without a value are omitted from responses (the spec types values as strings).
- Writes to deals through the API record webhook events with changeSource INTEGRATION;
  `rep_update_deal` records CRM_UI events; `ui_edit` changes a record silently (reconcile tests).
  `drain_events()` hands them out and `send_webhooks()` delivers them signed (v1 and v3 headers).
- werkzeug's server closes the connection after every response (no keep-alive), so expect a few
  milliseconds per call in benchmarks; contract="off" and rate_limits=False make it cheaper.

Run standalone: `python -m connector.sandbox.hubspot --port 8765` (see `main`).
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime as _dt
import hashlib
import hmac
import html
import itertools
import json
import logging
import os
import random
import re
import secrets
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

log = logging.getLogger("connector.sandbox.hubspot")

__all__ = [
    "DEFAULT_DEAL_STAGES",
    "FAULTS",
    "App",
    "ContractChecker",
    "ContractViolation",
    "Delivery",
    "FetchResponse",
    "HubSpotSandbox",
    "Portal",
    "SandboxServer",
    "create_app",
    "hubspot_decode_uri",
    "serve",
    "sign_v1",
    "sign_v3",
]

ACCESS_TOKEN_TTL = 1800
AUTH_CODE_TTL = 600
BATCH_LIMIT = 100
SEARCH_PAGE_LIMIT = 200
SEARCH_MAX_RESULTS = 10_000
RATE_LIMIT_MAX = 110
RATE_LIMIT_WINDOW = 10.0
SEARCH_RATE_PER_SECOND = 5

FAULTS = ("429", "500", "502", "503", "timeout", "drop", "401_expired")

CUSTOM_OBJECT_SCOPES = frozenset(
    {
        "crm.schemas.custom.read",
        "crm.schemas.custom.write",
        "crm.objects.custom.read",
        "crm.objects.custom.write",
    }
)

# (stage id, label, probability, isClosed) — HubSpot's default deal pipeline.
DEFAULT_DEAL_STAGES = (
    ("appointmentscheduled", "Appointment Scheduled", "0.2", "false"),
    ("qualifiedtobuy", "Qualified To Buy", "0.4", "false"),
    ("presentationscheduled", "Presentation Scheduled", "0.6", "false"),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", "false"),
    ("contractsent", "Contract Sent", "0.9", "false"),
    ("closedwon", "Closed Won", "1.0", "true"),
    ("closedlost", "Closed Lost", "0.0", "true"),
)

# Standard object types: id -> (plural name, singular, scope word, default response properties,
# created-date property, last-modified property).
STANDARD_TYPES = {
    "0-1": (
        "contacts",
        "contact",
        "contacts",
        ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
        "createdate",
        "lastmodifieddate",
    ),
    "0-2": (
        "companies",
        "company",
        "companies",
        ["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
        "createdate",
        "hs_lastmodifieddate",
    ),
    "0-3": (
        "deals",
        "deal",
        "deals",
        [
            "amount",
            "closedate",
            "createdate",
            "dealname",
            "dealstage",
            "hs_lastmodifieddate",
            "hs_object_id",
            "pipeline",
        ],
        "createdate",
        "hs_lastmodifieddate",
    ),
    "0-5": (
        "tickets",
        "ticket",
        "tickets",
        [
            "content",
            "createdate",
            "hs_lastmodifieddate",
            "hs_object_id",
            "hs_pipeline",
            "hs_pipeline_stage",
            "subject",
        ],
        "createdate",
        "hs_lastmodifieddate",
    ),
}
_TYPE_ALIASES = {}
for _tid, (_plural, _singular, *_rest) in STANDARD_TYPES.items():
    _TYPE_ALIASES[_tid] = _tid
    _TYPE_ALIASES[_plural] = _tid
    _TYPE_ALIASES[_singular] = _tid

# HubSpot-defined association types between standard objects: (from, to, typeId, inverse typeId).
STANDARD_ASSOCIATIONS = (("0-3", "0-1", 3, 4), ("0-3", "0-2", 341, 342), ("0-5", "0-3", 28, 27))

# Subscription ids the sender uses when an event does not carry one (*emulator choice*).
SUBSCRIPTION_IDS = {
    "deal.creation": 1001,
    "deal.deletion": 1002,
    "deal.propertyChange": 1003,
    "deal.associationChange": 1004,
}
DEFAULT_WEBHOOK_SUBSCRIPTIONS = (
    ("deal.propertyChange", "dealstage"),
    ("deal.propertyChange", "closedate"),
    ("deal.deletion", None),
)


# --------------------------------------------------------------------------------------------
# time helpers


class SandboxClock:
    """Wall clock plus an offset that tests move forward with `advance`; `freeze()` stops it
    (then only `advance` moves time), which makes rate-limit tests independent of machine speed."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._frozen: float | None = None
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            base = self._frozen if self._frozen is not None else time.time()
            return base + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def freeze(self) -> None:
        with self._lock:
            if self._frozen is None:
                self._frozen = time.time()

    def unfreeze(self) -> None:
        with self._lock:
            if self._frozen is not None:
                self._offset -= time.time() - self._frozen
                self._frozen = None


def _iso(ts: float) -> str:
    d = _dt.datetime.fromtimestamp(ts, tz=_dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def _parse_time_ms(value: str) -> float | None:
    """ms epoch from '1700000000000' or an ISO 8601 date/datetime; None if unparseable."""
    v = str(value).strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", v):
        return float(v)
    try:
        d = _dt.datetime.fromisoformat(v)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.UTC)
    return d.timestamp() * 1000


def _corr() -> str:
    return str(uuid.uuid4())


# --------------------------------------------------------------------------------------------
# signatures

_V3_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_V3_DECODE_RE = re.compile("|".join(re.escape(k) for k in _V3_DECODE), re.IGNORECASE)


def hubspot_decode_uri(uri: str) -> str:
    """Decode exactly the 12 escapes HubSpot's v3 signature rule decodes; leave the rest as sent."""
    return _V3_DECODE_RE.sub(lambda m: _V3_DECODE[m.group(0).upper()], uri)


def _b(x: str | bytes) -> bytes:
    return x if isinstance(x, bytes) else x.encode("utf-8")


def sign_v3(method: str, uri: str, body: str | bytes, secret: str, timestamp: int | str) -> str:
    """X-HubSpot-Signature-v3: base64(HMAC-SHA256(secret, method + uri + body + timestamp)).

    `uri` is the full URL (scheme, host, path, query) as HubSpot knows it; the 12 escapes of
    HubSpot's rule are decoded first, as a verifier does, so both sides agree.
    """
    source = _b(method.upper()) + _b(hubspot_decode_uri(uri)) + _b(body) + _b(str(timestamp))
    digest = hmac.new(_b(secret), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_v1(body: str | bytes, secret: str) -> str:
    """X-HubSpot-Signature (version v1): hex(SHA256(client_secret + body))."""
    return hashlib.sha256(_b(secret) + _b(body)).hexdigest()


# --------------------------------------------------------------------------------------------
# contract checks against HubSpot's published OpenAPI specs

# Files in the order they are preferred when two specs describe the same path template.
_SPEC_FILES = (
    "CRM/Deals/Rollouts/424/v3/deals.json",
    "CRM/Objects/Rollouts/424/v3/objects.json",
    "CRM/Custom Objects/Rollouts/424/v3/customObjects.json",
    "CRM/Schemas/Rollouts/145900/v3/schemas.json",
    "CRM/Properties/Rollouts/145899/v3/properties.json",
    "CRM/Associations/Rollouts/130902/v4/associations.json",
    "CRM/Associations Schema/Rollouts/50914/v4/associationsSchema.json",
    "CRM/Pipelines/Rollouts/145896/v3/pipelines.json",
    "Auth/Oauth/Rollouts/155908/v1/oauth.json",
    "Auth/Oauth/Rollouts/279897/v3/oauth.json",
    "Auth/Oauth/Rollouts/279897/2026-03/oauth.json",
    "Webhooks/Webhooks/Rollouts/147891/v3/webhooks.json",
    "CRM/App Uninstalls/Rollouts/209039/v3/appUninstalls.json",
)


def default_specs_dir() -> Path:
    env = os.environ.get("HUBSPOT_SPECS_DIR")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / "specs" / "hubspot"


_SPEC_CACHE: dict[tuple[str, float], dict] = {}
_WARNED: set[str] = set()  # "contract checks are off" is logged once per reason per process
_VALIDATORS: dict[tuple[int, str], Any] = {}  # keyed by id() of a schema inside a cached spec
_VALIDATORS_LOCK = threading.Lock()


def _load_spec(path: Path) -> dict | None:
    """Parsed spec file, cached per (path, mtime) so many sandboxes in one process share it."""
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError:
        return None
    if key not in _SPEC_CACHE:
        spec = json.loads(path.read_text(encoding="utf-8"))
        _relax(spec)
        _SPEC_CACHE[key] = spec
    return _SPEC_CACHE[key]


# Where the published spec is narrower than HubSpot's own documented usage, the in-memory copy
# (never the file) accepts both forms. Keep this list short and sourced.
_SORT_OBJECT = {
    "type": "object",
    "required": ["propertyName"],
    "properties": {
        "propertyName": {"type": "string"},
        "direction": {"type": "string", "enum": ["ASCENDING", "DESCENDING"]},
    },
}


def _relax(spec: dict) -> None:
    schemas = spec.get("components", {}).get("schemas", {})
    search = schemas.get("PublicObjectSearchRequest", {}).get("properties", {})
    if "sorts" in search:
        # The spec types sorts as strings; HubSpot's search guide documents
        # [{"propertyName": "createdate", "direction": "DESCENDING"}].
        search["sorts"]["items"] = {"anyOf": [{"type": "string"}, _SORT_OBJECT]}


class ContractViolation(Exception):
    """A request or response that does not match HubSpot's published OpenAPI operation."""


@dataclass
class _Operation:
    method: str
    template: str
    regex: re.Pattern
    literal_segments: int
    spec_file: str
    spec: dict
    op: dict


class ContractChecker:
    """Matches (method, path) to a spec operation and validates bodies with jsonschema."""

    def __init__(self, specs_dir: Path | str | None = None) -> None:
        self.specs_dir = Path(specs_dir) if specs_dir else default_specs_dir()
        self.enabled = False
        self.reason = ""
        self._ops: list[_Operation] = []
        try:
            import jsonschema  # noqa: F401
        except ImportError:
            self.reason = "jsonschema is not installed"
            return
        root = self.specs_dir / "PublicApiSpecs"
        if not root.is_dir():
            self.reason = f"spec directory not found: {root}"
            return
        for rel in _SPEC_FILES:
            spec = _load_spec(root / rel)
            if spec is None:
                continue
            for template, item in spec.get("paths", {}).items():
                for method, op in item.items():
                    if method not in ("get", "post", "put", "patch", "delete"):
                        continue
                    parts = template.strip("/").split("/")
                    pattern = "/".join(
                        "[^/]+" if p.startswith("{") else re.escape(p) for p in parts
                    )
                    self._ops.append(
                        _Operation(
                            method.upper(),
                            template,
                            re.compile("^/" + pattern + "$"),
                            sum(not p.startswith("{") for p in parts),
                            rel,
                            spec,
                            op,
                        )
                    )
        if not self._ops:
            self.reason = f"no spec files under {root}"
            return
        self.enabled = True

    def find(self, method: str, path: str) -> _Operation | None:
        if path.startswith("/crm/v3/schemas"):
            path = "/crm-object-schemas/v3/schemas" + path[len("/crm/v3/schemas") :]
        matches = [o for o in self._ops if o.method == method and o.regex.match(path)]
        if not matches:
            return None
        best = max(o.literal_segments for o in matches)
        matches = [o for o in matches if o.literal_segments == best]
        parts = path.strip("/").split("/")
        if (
            len(parts) > 3
            and parts[:3] == ["crm", "v3", "objects"]
            and (parts[3].startswith("2-") or re.match(r"p\d*_", parts[3]))
        ):
            custom = [o for o in matches if "Custom Objects" in o.spec_file]
            if custom:
                return custom[0]
        return matches[0]

    def _validator(self, operation: _Operation, where: str, schema: dict):
        key = (id(schema), where)
        with _VALIDATORS_LOCK:
            v = _VALIDATORS.get(key)
            if v is None:
                import jsonschema

                root = {"allOf": [schema], "components": operation.spec.get("components", {})}
                checker = jsonschema.FormatChecker(formats=())
                checker.checks("date-time")(_is_datetime)
                v = jsonschema.Draft7Validator(root, format_checker=checker)
                _VALIDATORS[key] = v
            return v

    def _errors(self, operation: _Operation, where: str, schema: dict, instance: Any) -> list[str]:
        v = self._validator(operation, where, schema)
        out = []
        for e in sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path))[:5]:
            loc = "/".join(str(p) for p in e.absolute_path) or "(root)"
            out.append(f"{loc}: {e.message[:300]}")
        return out

    def check_request(
        self, operation: _Operation, query: dict[str, list[str]], content_type: str, body: bytes
    ) -> list[str]:
        problems: list[str] = []
        for p in operation.op.get("parameters", []):
            if p.get("in") == "query":
                vals = query.get(p["name"])
                if p.get("required") and not vals:
                    problems.append(f"query parameter {p['name']!r} is required")
                enum = p.get("schema", {}).get("enum")
                if vals and enum:
                    for val in vals:
                        for item in val.split(","):
                            if item not in enum:
                                problems.append(f"query {p['name']}={item!r} not in {enum}")
        rb = operation.op.get("requestBody")
        if not rb:
            return problems
        content = rb.get("content", {})
        ctype = (content_type or "").split(";")[0].strip().lower()
        if not body:
            if rb.get("required"):
                problems.append("request body is required")
            return problems
        if ctype == "application/json" and "application/json" in content:
            try:
                instance = json.loads(body)
            except ValueError as e:
                return problems + [f"request body is not JSON: {e}"]
            schema = content["application/json"].get("schema", {})
            problems += [f"request {m}" for m in self._errors(operation, "req", schema, instance)]
        elif ctype == "application/x-www-form-urlencoded" and ctype in content:
            form = {
                k: v[-1]
                for k, v in urllib.parse.parse_qs(
                    body.decode("utf-8"), keep_blank_values=True
                ).items()
            }
            schema = content[ctype].get("schema", {})
            problems += [f"request form {m}" for m in self._errors(operation, "req", schema, form)]
        else:
            problems.append(f"request content type {ctype!r} not in {sorted(content)}")
        return problems

    def check_response(
        self, operation: _Operation, status: int, content_type: str, body: bytes
    ) -> list[str]:
        responses = operation.op.get("responses", {})
        resp = responses.get(str(status)) or responses.get("default")
        if resp is None:
            return [f"response status {status} not in {sorted(responses)}"]
        if "$ref" in resp:
            name = resp["$ref"].rsplit("/", 1)[-1]
            resp = operation.spec.get("components", {}).get("responses", {}).get(name, {})
        content = resp.get("content") or {}
        if not content:
            return [] if not body else [f"response {status} must have no body"]
        media = content.get("application/json") or content.get("*/*")
        if media is None:
            return []
        ctype = (content_type or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return [f"response {status} content type {ctype!r} is not application/json"]
        try:
            instance = json.loads(body or b"null")
        except ValueError as e:
            return [f"response body is not JSON: {e}"]
        schema = media.get("schema", {})
        return [f"response {status} {m}" for m in self._errors(operation, "resp", schema, instance)]


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        _dt.datetime.fromisoformat(value)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------
# state


@dataclass
class App:
    app_id: int
    client_id: str
    client_secret: str
    name: str = "MutualPlan (sandbox)"
    redirect_uris: tuple[str, ...] = ()


@dataclass
class Portal:
    portal_id: int
    tier: str  # "enterprise" | "professional" | "starter" | "free"
    name: str
    domain: str
    users: list[tuple[int, str]] = field(default_factory=list)
    objects: dict[str, dict[str, dict]] = field(default_factory=dict)
    schemas: dict[str, dict] = field(default_factory=dict)
    properties: dict[str, dict[str, dict]] = field(default_factory=dict)
    groups: dict[str, dict[str, dict]] = field(default_factory=dict)
    pipelines: dict[str, dict[str, dict]] = field(default_factory=dict)
    # (from type, to type) -> list of {"typeId", "label", "category", "name", "inverse"}
    assoc_types: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    # (from type, from id, to type) -> {to id: set of (category, typeId)}
    assocs: dict[tuple[str, str, str], dict[str, set]] = field(default_factory=dict)
    calls: list[dict] = field(default_factory=list)
    call_counts: collections.Counter = field(default_factory=collections.Counter)
    installed_apps: set[int] = field(default_factory=set)

    @property
    def is_enterprise(self) -> bool:
        return self.tier == "enterprise"


@dataclass
class _Token:
    token: str
    kind: str  # "access" | "refresh"
    portal_id: int
    app_id: int
    client_id: str
    user_id: int
    user: str
    scopes: list[str]
    expires_at: float | None = None
    revoked: bool = False


@dataclass
class _Fault:
    kind: str
    times: int
    path_contains: str | None
    method: str | None


@dataclass
class Delivery:
    """One webhook POST made by `send_webhooks`."""

    url: str
    status: int | None
    body: bytes
    headers: dict[str, str]
    attempt: int
    response_body: bytes = b""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class FetchResponse:
    """What `card_fetch` got back from the backend."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    attempts: int

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class ApiError(Exception):
    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "status": "error",
            "message": message,
            "correlationId": _corr(),
            "category": category,
            **extra,
        }
        self.headers: dict[str, str] = {}


def _prop_error(errors: list[dict]) -> ApiError:
    """HubSpot's 400 for bad property values: the detail list is JSON inside the message."""
    return ApiError(
        400,
        "VALIDATION_ERROR",
        "Property values were not valid: " + json.dumps(errors, separators=(",", ":")),
    )


class HubSpotSandbox:
    """In-memory HubSpot: portals, apps, tokens, CRM data, call log, faults, webhook sender."""

    def __init__(
        self,
        *,
        seed: bool = True,
        contract: str = "strict",
        specs_dir: str | Path | None = None,
        clock: SandboxClock | None = None,
        rate_limits: bool = True,
    ) -> None:
        if contract not in ("strict", "warn", "off"):
            raise ValueError("contract must be 'strict', 'warn' or 'off'")
        self.clock = clock or SandboxClock()
        self.lock = threading.RLock()
        self.portals: dict[int, Portal] = {}
        self.apps: dict[int, App] = {}
        self.tokens: dict[str, _Token] = {}
        self.codes: dict[str, dict] = {}
        self.faults: list[_Fault] = []
        self.events: list[dict] = []
        self.webhook_subscriptions = list(DEFAULT_WEBHOOK_SUBSCRIPTIONS)
        # When set, deal events are POSTed there at once (signed, in a thread) instead of being
        # kept for drain_events(): what `make run` wants. Deliveries land in `self.deliveries`.
        self.webhook_target_url: str | None = None
        self.webhook_delay = 0.0
        self.deliveries: list[Delivery] = []
        self.unrouted_calls: list[dict] = []
        self.contract_mode = contract
        self.contract_violations: list[str] = []
        self.contract = ContractChecker(specs_dir) if contract != "off" else None
        if (
            self.contract is not None
            and not self.contract.enabled
            and self.contract.reason not in _WARNED
        ):
            _WARNED.add(self.contract.reason)
            log.warning("HubSpot sandbox: contract checks are OFF (%s)", self.contract.reason)
        self.rate_limits_enabled = rate_limits
        self.rate_limit_max = RATE_LIMIT_MAX
        self.rate_limit_window = RATE_LIMIT_WINDOW
        self.search_rate_per_second = SEARCH_RATE_PER_SECOND
        self.rate_limit_retry_after: int | None = None
        self.timeout_fault_seconds = 30.0
        self.strict_scope_tiers = True
        self.base_url = "http://127.0.0.1"
        self._windows: dict[tuple, collections.deque] = {}
        self._ids = itertools.count(1001)
        self._type_ids = itertools.count(2_000_101)
        self._assoc_type_ids = itertools.count(101)
        self._stop = threading.Event()
        if seed:
            self.add_app(
                app_id=1000001, client_id="sandbox-client-id", client_secret="sandbox-client-secret"
            )
            self.add_portal(portal_id=100001, tier="enterprise", name="Acme Enterprise (sandbox)")
            self.add_portal(portal_id=100002, tier="professional", name="Globex Pro (sandbox)")

    # ---- clock --------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.time()

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward (token expiry, rate-limit windows, timestamps)."""
        self.clock.advance(seconds)

    # ---- setup --------------------------------------------------------------------------
    def add_app(
        self,
        *,
        app_id: int | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        name: str = "MutualPlan (sandbox)",
        redirect_uris: Iterable[str] = (),
    ) -> App:
        with self.lock:
            app_id = app_id or (max(self.apps, default=1000000) + 1)
            app = App(
                app_id,
                client_id or str(uuid.uuid4()),
                client_secret or str(uuid.uuid4()),
                name,
                tuple(redirect_uris),
            )
            self.apps[app_id] = app
            return app

    def add_portal(
        self,
        *,
        portal_id: int | None = None,
        tier: str = "enterprise",
        name: str | None = None,
        domain: str | None = None,
        demo_deals: bool = True,
    ) -> Portal:
        with self.lock:
            portal_id = portal_id or (max(self.portals, default=100000) + 1)
            portal = Portal(
                portal_id,
                tier,
                name or f"Portal {portal_id} ({tier})",
                domain or f"sandbox-{portal_id}.hubspot.test",
                users=[
                    (9000000 + portal_id, f"admin@sandbox-{portal_id}.test"),
                    (9100000 + portal_id, f"rep@sandbox-{portal_id}.test"),
                ],
            )
            self.portals[portal_id] = portal
            self._seed_portal(portal, demo_deals)
            return portal

    def _seed_portal(self, portal: Portal, demo_deals: bool) -> None:
        for tid, (plural, singular, *_r) in STANDARD_TYPES.items():
            portal.objects[tid] = {}
            portal.groups[tid] = {}
            portal.properties[tid] = {}
            info = f"{singular}information"
            self._add_group(portal, tid, info, f"{singular.title()} information", hubspot=True)
        std = {
            "0-1": [
                ("email", "Email", "string", "text"),
                ("firstname", "First name", "string", "text"),
                ("lastname", "Last name", "string", "text"),
                ("createdate", "Create date", "datetime", "date"),
                ("lastmodifieddate", "Last modified date", "datetime", "date"),
            ],
            "0-2": [
                ("name", "Company name", "string", "text"),
                ("domain", "Domain", "string", "text"),
                ("createdate", "Create date", "datetime", "date"),
                ("hs_lastmodifieddate", "Last modified date", "datetime", "date"),
            ],
            "0-3": [
                ("dealname", "Deal name", "string", "text"),
                ("amount", "Amount", "number", "number"),
                ("closedate", "Close date", "datetime", "date"),
                ("dealstage", "Deal stage", "enumeration", "radio"),
                ("pipeline", "Pipeline", "enumeration", "select"),
                ("hubspot_owner_id", "Deal owner", "enumeration", "select"),
                ("description", "Deal description", "string", "textarea"),
                ("createdate", "Create date", "datetime", "date"),
                ("hs_lastmodifieddate", "Last modified date", "datetime", "date"),
                ("hs_deal_stage_probability", "Deal probability", "number", "number"),
                ("hs_is_closed", "Is closed", "bool", "booleancheckbox"),
            ],
            "0-5": [
                ("subject", "Ticket name", "string", "text"),
                ("content", "Description", "string", "textarea"),
                ("hs_pipeline", "Pipeline", "enumeration", "select"),
                ("hs_pipeline_stage", "Ticket status", "enumeration", "select"),
                ("createdate", "Create date", "datetime", "date"),
                ("hs_lastmodifieddate", "Last modified date", "datetime", "date"),
            ],
        }
        for tid, props in std.items():
            group = f"{STANDARD_TYPES[tid][1]}information"
            for pname, label, ptype, ftype in props + [
                ("hs_object_id", "Record ID", "number", "number")
            ]:
                self._add_property(
                    portal,
                    tid,
                    {
                        "name": pname,
                        "label": label,
                        "type": ptype,
                        "fieldType": ftype,
                        "groupName": group,
                    },
                    hubspot=True,
                )
        for frm, to, tid_fwd, tid_inv in STANDARD_ASSOCIATIONS:
            self._define_assoc(portal, frm, to, "HUBSPOT_DEFINED", None, None, tid_fwd, tid_inv)
        portal.pipelines["0-3"] = {}
        self.add_pipeline(
            portal.portal_id, "default", "Sales Pipeline", DEFAULT_DEAL_STAGES, created_at=0.0
        )
        if demo_deals:
            now = self.now()
            for name, stage, amount in (
                ("Acme - Platform rollout", "qualifiedtobuy", "48000"),
                ("Acme - Expansion", "presentationscheduled", "12500"),
            ):
                self._insert(
                    portal,
                    "0-3",
                    {
                        "dealname": name,
                        "dealstage": stage,
                        "pipeline": "default",
                        "amount": amount,
                        "closedate": _iso(now + 30 * 86400),
                    },
                    now,
                )

    def add_pipeline(
        self,
        portal_id: int,
        pipeline_id: str,
        label: str,
        stages: Iterable[tuple[str, str, str, str]],
        *,
        created_at: float | None = None,
        object_type: str = "0-3",
    ) -> dict:
        """Add a pipeline; stages are (id, label, probability, isClosed) with string metadata."""
        with self.lock:
            portal = self.portals[portal_id]
            ts = _iso(self.now() if created_at is None else created_at)
            pipelines = portal.pipelines.setdefault(object_type, {})
            pipe = {
                "id": pipeline_id,
                "label": label,
                "displayOrder": len(pipelines),
                "archived": False,
                "createdAt": ts,
                "updatedAt": ts,
                "stages": [
                    {
                        "id": sid,
                        "label": slabel,
                        "displayOrder": i,
                        "archived": False,
                        "createdAt": ts,
                        "updatedAt": ts,
                        "metadata": {"isClosed": closed, "probability": prob},
                        "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                    }
                    for i, (sid, slabel, prob, closed) in enumerate(stages)
                ],
            }
            pipelines[pipeline_id] = pipe
            return pipe

    def _add_group(
        self,
        portal: Portal,
        tid: str,
        name: str,
        label: str,
        hubspot=False,
        display_order: int = -1,
    ) -> dict:
        g = {"name": name, "label": label, "displayOrder": display_order, "archived": False}
        portal.groups.setdefault(tid, {})[name] = g
        return g

    def _add_property(self, portal: Portal, tid: str, spec: dict, hubspot: bool = False) -> dict:
        ts = _iso(self.now())
        ptype = spec.get("type", "string")
        options = [
            {
                "label": o.get("label", o.get("value")),
                "value": str(o.get("value")),
                "displayOrder": o.get("displayOrder", i),
                "hidden": bool(o.get("hidden", False)),
                **({"description": o["description"]} if o.get("description") else {}),
            }
            for i, o in enumerate(spec.get("options") or [])
        ]
        read_only = spec["name"] in (
            "hs_object_id",
            "hs_lastmodifieddate",
            "lastmodifieddate",
            "hs_createdate",
            "hs_deal_stage_probability",
            "hs_is_closed",
        )
        prop = {
            "name": spec["name"],
            "label": spec.get("label", spec["name"]),
            "type": ptype,
            "fieldType": spec.get("fieldType", "text"),
            "description": spec.get("description", ""),
            "groupName": spec.get("groupName", ""),
            "options": options,
            "displayOrder": spec.get("displayOrder", -1),
            "hasUniqueValue": bool(spec.get("hasUniqueValue", False)),
            "hidden": bool(spec.get("hidden", False)),
            "formField": bool(spec.get("formField", False)),
            "calculated": False,
            "externalOptions": False,
            "hubspotDefined": hubspot,
            "archived": False,
            "createdAt": ts,
            "updatedAt": ts,
            "modificationMetadata": {
                "archivable": not hubspot,
                "readOnlyDefinition": hubspot,
                "readOnlyValue": read_only,
            },
        }
        for k in (
            "numberDisplayHint",
            "textDisplayHint",
            "showCurrencySymbol",
            "referencedObjectType",
        ):
            if k in spec:
                prop[k] = spec[k]
        portal.properties.setdefault(tid, {})[spec["name"]] = prop
        return prop

    def _define_assoc(
        self,
        portal: Portal,
        frm: str,
        to: str,
        category: str,
        label: str | None,
        name: str | None,
        fwd: int | None = None,
        inv: int | None = None,
    ) -> tuple[int, int]:
        fwd = fwd or next(self._assoc_type_ids)
        inv = inv or (fwd if frm == to else next(self._assoc_type_ids))
        portal.assoc_types.setdefault((frm, to), []).append(
            {"typeId": fwd, "label": label, "category": category, "name": name, "inverse": inv}
        )
        if frm != to or inv != fwd:
            portal.assoc_types.setdefault((to, frm), []).append(
                {"typeId": inv, "label": label, "category": category, "name": name, "inverse": fwd}
            )
        return fwd, inv

    def issue_tokens(
        self,
        portal_id: int,
        *,
        app_id: int | None = None,
        scopes: Iterable[str] = (
            "oauth",
            "crm.objects.deals.read",
            "crm.objects.deals.write",
            "crm.schemas.deals.read",
            "crm.schemas.deals.write",
            "crm.objects.custom.read",
            "crm.objects.custom.write",
            "crm.schemas.custom.read",
            "crm.schemas.custom.write",
        ),
        user_id: int | None = None,
    ) -> dict:
        """Install the app on the portal without the consent page; returns the token JSON."""
        with self.lock:
            app = self.apps[app_id] if app_id else next(iter(self.apps.values()))
            portal = self.portals[portal_id]
            uid, email = self._user(portal, user_id)
            portal.installed_apps.add(app.app_id)
            return self._mint(portal, app, uid, email, list(scopes))

    def _user(self, portal: Portal, user_id: int | None) -> tuple[int, str]:
        for uid, email in portal.users:
            if user_id is None or uid == user_id:
                return uid, email
        return int(user_id or 0), f"user{user_id}@{portal.domain}"

    def _mint(
        self,
        portal: Portal,
        app: App,
        uid: int,
        email: str,
        scopes: list[str],
        refresh: str | None = None,
    ) -> dict:
        access = "sbx-" + secrets.token_urlsafe(40)
        self.tokens[access] = _Token(
            access,
            "access",
            portal.portal_id,
            app.app_id,
            app.client_id,
            uid,
            email,
            scopes,
            self.now() + ACCESS_TOKEN_TTL,
        )
        if refresh is None:
            refresh = (
                "na1-"
                + "-".join(secrets.token_hex(2) for _ in range(4))
                + "-"
                + secrets.token_hex(6)
            )
            self.tokens[refresh] = _Token(
                refresh, "refresh", portal.portal_id, app.app_id, app.client_id, uid, email, scopes
            )
        return {
            "token_type": "bearer",
            "refresh_token": refresh,
            "access_token": access,
            "expires_in": ACCESS_TOKEN_TTL,
            "token_use": "access_token",
            "hub_id": portal.portal_id,
            "user_id": uid,
            "scopes": scopes,
        }

    def revoke_refresh_token(self, token: str) -> None:
        with self.lock:
            if token in self.tokens:
                self.tokens[token].revoked = True

    def uninstall(self, portal_id: int, app_id: int | None = None) -> None:
        """Uninstall the app: every token of (portal, app) stops working."""
        with self.lock:
            for t in self.tokens.values():
                if t.portal_id == portal_id and (app_id is None or t.app_id == app_id):
                    t.revoked = True
            installed = self.portals[portal_id].installed_apps
            if app_id is None:
                installed.clear()
            else:
                installed.discard(app_id)

    def expire_access_tokens(self, portal_id: int | None = None) -> None:
        with self.lock:
            for t in self.tokens.values():
                if t.kind == "access" and (portal_id is None or t.portal_id == portal_id):
                    t.expires_at = self.now() - 1

    def authorize(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        scopes: Iterable[str],
        portal_id: int,
        optional_scopes: Iterable[str] = (),
        user_id: int | None = None,
    ) -> str:
        """What clicking "Connect app" does: returns a single-use authorization code."""
        with self.lock:
            app = self._app_by_client(client_id)
            if app is None:
                raise ValueError(f"unknown client_id {client_id!r}")
            portal = self.portals[portal_id]
            granted = self._grant(portal, list(scopes), list(optional_scopes))
            uid, email = self._user(portal, user_id)
            code = secrets.token_hex(16)
            self.codes[code] = {
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "portal_id": portal_id,
                "scopes": granted,
                "user_id": uid,
                "user": email,
                "expires_at": self.now() + AUTH_CODE_TTL,
            }
            return code

    def _grant(self, portal: Portal, required: list[str], optional: list[str]) -> list[str]:
        if self.strict_scope_tiers and not portal.is_enterprise:
            missing = [s for s in required if s in CUSTOM_OBJECT_SCOPES]
            if missing:
                raise ValueError(
                    "This app requires scopes that this account does not have access to "
                    f"(custom objects need an Enterprise subscription): {', '.join(missing)}"
                )
            optional = [s for s in optional if s not in CUSTOM_OBJECT_SCOPES]
        out = ["oauth"] if "oauth" not in required else []
        for s in required + optional:
            if s and s not in out:
                out.append(s)
        return out

    def _app_by_client(self, client_id: str) -> App | None:
        return next((a for a in self.apps.values() if a.client_id == client_id), None)

    # ---- faults -------------------------------------------------------------------------
    def inject(
        self,
        fault: str,
        times: int = 1,
        path_contains: str | None = None,
        method: str | None = None,
    ) -> None:
        """Queue a fault for the next `times` matching API requests.

        fault: "429" (TEN_SECONDLY_ROLLING body, Retry-After if `rate_limit_retry_after` is set),
        "500", "502", "503", "timeout" (sleeps `timeout_fault_seconds`, then 504), "drop" (closes
        the connection without an answer), "401_expired" (EXPIRED_AUTHENTICATION body).
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        with self.lock:
            self.faults.append(
                _Fault(fault, times, path_contains, method.upper() if method else None)
            )

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def _take_fault(self, method: str, path: str) -> str | None:
        with self.lock:
            for f in self.faults:
                if (f.path_contains is None or f.path_contains in path) and (
                    f.method is None or f.method == method
                ):
                    f.times -= 1
                    if f.times <= 0:
                        self.faults.remove(f)
                    return f.kind
        return None

    # ---- call log -----------------------------------------------------------------------
    def calls(self, portal_id: int) -> list[dict]:
        """Each API call for the portal: method, path, endpoint (template), status, at (s)."""
        with self.lock:
            return list(self.portals[portal_id].calls)

    def call_counts(self, portal_id: int) -> dict[str, int]:
        """Counts by endpoint, e.g. {"PATCH /crm/v3/objects/{object_type}/{object_id}": 2}."""
        with self.lock:
            return dict(self.portals[portal_id].call_counts)

    def reset_calls(self, portal_id: int | None = None) -> None:
        with self.lock:
            for p in self.portals.values():
                if portal_id is None or p.portal_id == portal_id:
                    p.calls.clear()
                    p.call_counts.clear()

    def assert_no_contract_violations(self) -> None:
        if self.contract_violations:
            raise AssertionError(
                "HubSpot contract violations:\n" + "\n".join(self.contract_violations)
            )

    # ---- direct data access (for tests and the demo) -------------------------------------
    def resolve_type(self, portal_id: int, object_type: str) -> str | None:
        return self._resolve(self.portals[portal_id], object_type)

    def get_record(self, portal_id: int, object_type: str, object_id: str) -> dict | None:
        with self.lock:
            portal = self.portals[portal_id]
            tid = self._resolve(portal, object_type)
            rec = portal.objects.get(tid, {}).get(str(object_id)) if tid else None
            return json.loads(json.dumps(rec)) if rec else None

    def records(self, portal_id: int, object_type: str, *, archived: bool = False) -> list[dict]:
        with self.lock:
            portal = self.portals[portal_id]
            tid = self._resolve(portal, object_type)
            return [
                json.loads(json.dumps(r))
                for r in portal.objects.get(tid, {}).values()
                if r["archived"] == archived
            ]

    def associations(
        self, portal_id: int, from_type: str, from_id: str, to_type: str
    ) -> dict[str, list[tuple[str, int]]]:
        with self.lock:
            portal = self.portals[portal_id]
            f, t = self._resolve(portal, from_type), self._resolve(portal, to_type)
            links = portal.assocs.get((f, str(from_id), t), {})
            return {k: sorted(v) for k, v in links.items() if v}

    def create_deal(self, portal_id: int, properties: dict[str, str]) -> dict:
        with self.lock:
            portal = self.portals[portal_id]
            props = {"pipeline": "default", "dealstage": "appointmentscheduled", **properties}
            rec = self._insert(portal, "0-3", props, self.now())
            self._deal_events(portal, rec["id"], None, props, "CRM_UI", created=True)
            return json.loads(json.dumps(rec))

    def rep_update_deal(
        self,
        portal_id: int,
        deal_id: str,
        properties: dict[str, str],
        *,
        user_id: int | None = None,
    ) -> list[dict]:
        """A sales rep edits the deal in HubSpot's UI (e.g. moves `dealstage`).

        Validates like the API, bumps hs_lastmodifieddate, records deal.propertyChange events with
        changeSource CRM_UI and sourceId userId:<id>; returns those events.
        """
        with self.lock:
            portal = self.portals[portal_id]
            rec = portal.objects["0-3"].get(str(deal_id))
            if rec is None or rec["archived"]:
                raise KeyError(f"deal {deal_id} not found")
            uid, _ = self._user(portal, user_id or portal.users[-1][0])
            changed = self._update(portal, "0-3", rec, {k: str(v) for k, v in properties.items()})
            return self._deal_events(
                portal, rec["id"], changed, None, "CRM_UI", source_id=f"userId:{uid}"
            )

    def rep_delete_deal(self, portal_id: int, deal_id: str) -> list[dict]:
        with self.lock:
            portal = self.portals[portal_id]
            rec = portal.objects["0-3"][str(deal_id)]
            self._archive(portal, "0-3", rec)
            return self._deal_events(portal, rec["id"], None, None, "CRM_UI", deleted=True)

    def ui_edit(
        self, portal_id: int, object_type: str, object_id: str, properties: dict[str, str]
    ) -> dict:
        """Someone edits a record in HubSpot's UI: it changes, hs_lastmodifieddate moves, nobody
        is notified (custom-object changes do not reach a public app's webhooks)."""
        with self.lock:
            portal = self.portals[portal_id]
            tid = self._resolve(portal, object_type)
            rec = portal.objects.get(tid, {}).get(str(object_id)) if tid else None
            if rec is None or rec["archived"]:
                raise KeyError(f"{object_type} {object_id} not found")
            self._update(portal, tid, rec, {k: str(v) for k, v in properties.items()})
            return json.loads(json.dumps(rec))

    # ---- webhook events -----------------------------------------------------------------
    def _deal_events(
        self,
        portal: Portal,
        deal_id: str,
        changed: dict | None,
        created_props: dict | None,
        source: str,
        *,
        created: bool = False,
        deleted: bool = False,
        source_id: str | None = None,
    ) -> list[dict]:
        base = {
            "portalId": portal.portal_id,
            "objectId": int(deal_id),
            "changeSource": source,
            "occurredAt": self.now_ms(),
            "attemptNumber": 0,
        }
        if source_id:
            base["sourceId"] = source_id
        out = []
        if created:
            out.append({**base, "subscriptionType": "deal.creation", "changeFlag": "CREATED"})
        if deleted:
            out.append({**base, "subscriptionType": "deal.deletion", "changeFlag": "DELETED"})
        for name, (_old, new) in (changed or {}).items():
            if name in ("hs_lastmodifieddate", "hs_deal_stage_probability", "hs_is_closed"):
                continue
            out.append(
                {
                    **base,
                    "subscriptionType": "deal.propertyChange",
                    "propertyName": name,
                    "propertyValue": new if new is not None else "",
                }
            )
        for ev in out:
            ev["eventId"] = random.randint(1, 2**31)
            ev["subscriptionId"] = SUBSCRIPTION_IDS.get(ev["subscriptionType"], 1000)
        if self.webhook_target_url:
            due = [e for e in out if self._subscribed(e)]
            if due:
                threading.Thread(
                    target=self._auto_deliver, args=(self.webhook_target_url, due), daemon=True
                ).start()
        else:
            self.events.extend(out)
        return out

    def _subscribed(self, ev: dict) -> bool:
        return any(
            ev["subscriptionType"] == st and (pn is None or ev.get("propertyName") == pn)
            for st, pn in self.webhook_subscriptions
        )

    def _auto_deliver(self, url: str, events: list[dict]) -> None:
        if self.webhook_delay:
            time.sleep(self.webhook_delay)
        out = self.send_webhooks(url, events, max_attempts=3)
        with self.lock:
            self.deliveries.extend(out)
        if not out[-1].ok:
            log.warning("HubSpot sandbox: webhook delivery to %s failed: %s", url, out[-1])

    def drain_events(self, portal_id: int | None = None, *, all_types: bool = False) -> list[dict]:
        """Take the recorded deal events HubSpot would deliver for `webhook_subscriptions`."""
        with self.lock:
            keep, out = [], []
            for ev in self.events:
                if portal_id is not None and ev["portalId"] != portal_id:
                    keep.append(ev)
                    continue
                if all_types or self._subscribed(ev):
                    out.append(ev)
            self.events = keep
            return out

    def send_webhooks(
        self,
        target_url: str,
        events: list[dict],
        client_secret: str | None = None,
        duplicate: bool = False,
        shuffle: bool = False,
        *,
        app_id: int | None = None,
        timeout: float = 5.0,
        max_attempts: int = 1,
        batch_size: int = BATCH_LIMIT,
        timestamp_ms: int | None = None,
    ) -> list[Delivery]:
        """POST events to the app's webhook URL as HubSpot does.

        Events are JSON arrays of at most 100 (`batch_size`), missing fields filled in (eventId,
        subscriptionId, portalId, appId, occurredAt, attemptNumber). Each request carries
        X-HubSpot-Signature (v1) and X-HubSpot-Signature-v3 + X-HubSpot-Request-Timestamp, signed
        with the client secret over `target_url` exactly as given. `shuffle` delivers out of order;
        `duplicate` sends every batch twice (second time attemptNumber + 1); a non-2xx answer or a
        failure is retried up to `max_attempts` in total, with attemptNumber increasing.
        """
        app = self.apps.get(app_id) if app_id else next(iter(self.apps.values()), None)
        secret = client_secret if client_secret is not None else (app.client_secret if app else "")
        evs = [dict(e) for e in events]
        for e in evs:
            e.setdefault("eventId", random.randint(1, 2**31))
            e.setdefault(
                "subscriptionId", SUBSCRIPTION_IDS.get(e.get("subscriptionType", ""), 1000)
            )
            e.setdefault("portalId", next(iter(self.portals), 0))
            e.setdefault("appId", app.app_id if app else 0)
            e.setdefault("occurredAt", self.now_ms())
            e.setdefault("attemptNumber", 0)
        if shuffle:
            random.shuffle(evs)
        batch_size = max(1, min(batch_size, BATCH_LIMIT))
        batches = [evs[i : i + batch_size] for i in range(0, len(evs), batch_size)]
        deliveries: list[Delivery] = []
        for batch in batches:
            rounds = 2 if duplicate else 1
            attempt_base = 0
            for _ in range(rounds):
                for attempt in range(attempt_base, attempt_base + max(1, max_attempts)):
                    body_events = [
                        {**e, "attemptNumber": e["attemptNumber"] + attempt} for e in batch
                    ]
                    d = self._post_webhook(
                        target_url, body_events, secret, timeout, attempt, timestamp_ms
                    )
                    deliveries.append(d)
                    attempt_base = attempt + 1
                    if d.ok:
                        break
        return deliveries

    def _post_webhook(
        self,
        url: str,
        events: list[dict],
        secret: str,
        timeout: float,
        attempt: int,
        timestamp_ms: int | None,
    ) -> Delivery:
        body = json.dumps(events, separators=(",", ":")).encode("utf-8")
        ts = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) (sandbox)",
            "X-HubSpot-Signature": sign_v1(body, secret),
            "X-HubSpot-Signature-Version": "v1",
            "X-HubSpot-Signature-v3": sign_v3("POST", url, body, secret, ts),
            "X-HubSpot-Request-Timestamp": ts,
        }
        status, resp, err = _http("POST", url, body, headers, timeout)
        return Delivery(url, status, body, headers, attempt, resp, err)

    def card_fetch(
        self,
        url: str,
        method: str = "GET",
        json_body: Any = None,
        client_secret: str | None = None,
        portal_id: int | None = None,
        user_id: int | None = None,
        *,
        json: Any = None,
        user_email: str | None = None,
        app_id: int | None = None,
        params: dict[str, Any] | None = None,
        timeout: float = 15.0,
        retry_once: bool = True,
    ) -> FetchResponse:
        """Call the backend as `hubspot.fetch` from an app card does.

        Appends portalId, userId, userEmail and appId (then `params`, e.g. associatedObjectId) to
        the query string, signs method + full URL + JSON body + timestamp (v3) with the client
        secret, sends JSON for POST/PUT/PATCH and, like HubSpot, retries once on a connection
        failure or 5xx. No other headers are sent (hubspot.fetch allows none).
        """
        body_obj = json if json is not None else json_body
        app = self.apps.get(app_id) if app_id else next(iter(self.apps.values()), None)
        secret = client_secret if client_secret is not None else (app.client_secret if app else "")
        portal = self.portals.get(portal_id) if portal_id else next(iter(self.portals.values()))
        uid, email = self._user(portal, user_id)
        q = {
            "portalId": portal.portal_id,
            "userId": uid,
            "userEmail": user_email or email,
            "appId": app.app_id if app else 0,
        }
        q.update(params or {})
        parts = urllib.parse.urlsplit(url)
        query = (
            parts.query
            + ("&" if parts.query else "")
            + urllib.parse.urlencode([(k, str(v)) for k, v in q.items()])
        )
        full = urllib.parse.urlunsplit(parts._replace(query=query))
        method = method.upper()
        body = b""
        if method in ("POST", "PUT", "PATCH"):
            body = _json_dumps(body_obj if body_obj is not None else {}).encode("utf-8")
        attempts = 0
        while True:
            attempts += 1
            ts = str(int(time.time() * 1000))
            headers = {
                "X-HubSpot-Signature-v3": sign_v3(method, full, body, secret, ts),
                "X-HubSpot-Request-Timestamp": ts,
                "User-Agent": "HubSpot-UIExtensions-Fetch (sandbox)",
            }
            if body:
                headers["Content-Type"] = "application/json"
            status, resp, err = _http(
                method, full, body or None, headers, timeout, want_headers=True
            )
            if retry_once and attempts == 1 and (status is None or status >= 500):
                continue
            if status is None:
                raise ConnectionError(f"card fetch to {full} failed: {err}")
            resp_body, resp_headers = resp
            return FetchResponse(full, status, resp_headers, resp_body, attempts)

    # ---- internal: types, records ---------------------------------------------------------
    def _resolve(self, portal: Portal, object_type: str) -> str | None:
        s = str(object_type).strip()
        low = s.lower()
        if low in _TYPE_ALIASES:
            return _TYPE_ALIASES[low]
        if s in portal.schemas:
            return s
        m = re.fullmatch(r"p(\d*)_(\w+)", s)
        if m and (not m.group(1) or int(m.group(1)) == portal.portal_id):
            for tid, sch in portal.schemas.items():
                if sch["name"] == m.group(2) and not sch["archived"]:
                    return tid
        for tid, sch in portal.schemas.items():
            if (sch["name"] == s or sch["name"] == low) and not sch["archived"]:
                return tid
        return None

    def _type_info(self, portal: Portal, tid: str) -> tuple[str, list[str], str, str]:
        """(scope word, default properties, created prop, modified prop)."""
        if tid in STANDARD_TYPES:
            _p, _s, scope, defaults, created, modified = STANDARD_TYPES[tid]
            return scope, defaults, created, modified
        return (
            "custom",
            ["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
            "hs_createdate",
            "hs_lastmodifieddate",
        )

    def _check_values(
        self, portal: Portal, tid: str, props: dict[str, Any], *, allow_read_only: bool = False
    ) -> tuple[dict[str, str], list[dict]]:
        defs = portal.properties.get(tid, {})
        clean: dict[str, str] = {}
        errors: list[dict] = []
        for name, raw in props.items():
            d = defs.get(name)
            if d is None or d["archived"]:
                errors.append(
                    {
                        "isValid": False,
                        "message": f'Property "{name}" does not exist',
                        "error": "PROPERTY_DOESNT_EXIST",
                        "name": name,
                    }
                )
                continue
            if d["modificationMetadata"]["readOnlyValue"] and not allow_read_only:
                errors.append(
                    {
                        "isValid": False,
                        "message": f"{name} is a read only property; its value cannot be set.",
                        "error": "READ_ONLY_VALUE",
                        "name": name,
                    }
                )
                continue
            if raw is None:
                clean[name] = ""
                continue
            value = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
            if value == "":
                clean[name] = ""
                continue
            t = d["type"]
            if t == "number":
                try:
                    float(value)
                except ValueError:
                    errors.append(
                        {
                            "isValid": False,
                            "message": f"{value} is not a valid number",
                            "error": "INVALID_LONG" if "." not in value else "INVALID_DOUBLE",
                            "name": name,
                        }
                    )
                    continue
            elif t == "bool" and value.lower() not in ("true", "false"):
                errors.append(
                    {
                        "isValid": False,
                        "message": f"{value} is not a valid boolean",
                        "error": "INVALID_BOOLEAN",
                        "name": name,
                    }
                )
                continue
            elif t in ("datetime", "date"):
                ms = _parse_time_ms(value)
                if ms is None:
                    errors.append(
                        {
                            "isValid": False,
                            "message": f"{value} is not a valid date",
                            "error": "INVALID_DATE",
                            "name": name,
                        }
                    )
                    continue
                value = _iso(ms / 1000) if t == "datetime" else _iso(ms / 1000)[:10]
            elif t == "enumeration" and d["options"] and name not in ("dealstage", "pipeline"):
                allowed = [o["value"] for o in d["options"]]
                bad = [v for v in value.split(";") if v not in allowed]
                if bad:
                    errors.append(
                        {
                            "isValid": False,
                            "message": f"{bad[0]} was not one of the allowed options: {allowed}",
                            "error": "INVALID_OPTION",
                            "name": name,
                        }
                    )
                    continue
            clean[name] = value
        return clean, errors

    def _check_pipeline(
        self, portal: Portal, tid: str, rec: dict | None, clean: dict[str, str]
    ) -> list[dict]:
        if tid != "0-3":
            return []
        cur = rec["properties"] if rec else {}
        pipeline = clean.get("pipeline") or cur.get("pipeline") or "default"
        stage = clean.get("dealstage", cur.get("dealstage"))
        pipes = portal.pipelines.get("0-3", {})
        if pipeline not in pipes:
            return [
                {
                    "isValid": False,
                    "message": f"{pipeline} was not one of the allowed options: {sorted(pipes)}",
                    "error": "INVALID_OPTION",
                    "name": "pipeline",
                }
            ]
        stage_ids = [s["id"] for s in pipes[pipeline]["stages"]]
        if ("dealstage" in clean or "pipeline" in clean) and stage not in stage_ids:
            return [
                {
                    "isValid": False,
                    "message": f"{stage} was not one of the allowed options: "
                    f"{stage_ids} (pipeline {pipeline})",
                    "error": "INVALID_OPTION",
                    "name": "dealstage",
                }
            ]
        return []

    def _check_unique(
        self, portal: Portal, tid: str, rec_id: str | None, clean: dict[str, str]
    ) -> None:
        defs = portal.properties.get(tid, {})
        for name, value in clean.items():
            if value and defs.get(name, {}).get("hasUniqueValue"):
                for other in portal.objects[tid].values():
                    if (
                        other["id"] != rec_id
                        and not other["archived"]
                        and other["properties"].get(name) == value
                    ):
                        raise ApiError(
                            409,
                            "CONFLICT",
                            f"A record with {name} {value!r} already exists. "
                            f"Existing ID: {other['id']}",
                        )

    def _derive(self, portal: Portal, tid: str, props: dict[str, str]) -> None:
        if tid == "0-3":
            pipe = portal.pipelines.get("0-3", {}).get(props.get("pipeline", ""))
            stage = next(
                (s for s in (pipe or {}).get("stages", []) if s["id"] == props.get("dealstage")),
                None,
            )
            if stage:
                props["hs_deal_stage_probability"] = stage["metadata"]["probability"]
                props["hs_is_closed"] = stage["metadata"]["isClosed"]

    def _insert(self, portal: Portal, tid: str, clean: dict[str, str], ts: float) -> dict:
        oid = str(next(self._ids))
        _scope, _defaults, created, modified = self._type_info(portal, tid)
        props = {k: v for k, v in clean.items() if v != ""}
        if tid == "0-3":
            props.setdefault("pipeline", "default")
            if "dealstage" not in props:
                props["dealstage"] = portal.pipelines["0-3"][props["pipeline"]]["stages"][0]["id"]
        props["hs_object_id"] = oid
        props.setdefault(created, _iso(ts))
        props[modified] = _iso(ts)
        self._derive(portal, tid, props)
        rec = {
            "id": oid,
            "properties": props,
            "createdAt": _iso(ts),
            "updatedAt": _iso(ts),
            "archived": False,
        }
        portal.objects[tid][oid] = rec
        return rec

    def _update(self, portal: Portal, tid: str, rec: dict, props: dict[str, str]) -> dict:
        clean, errors = self._check_values(portal, tid, props)
        errors += self._check_pipeline(portal, tid, rec, clean)
        if errors:
            raise _prop_error(errors)
        self._check_unique(portal, tid, rec["id"], clean)
        return self._apply(portal, tid, rec, clean)

    def _apply(self, portal: Portal, tid: str, rec: dict, clean: dict[str, str]) -> dict:
        changed = {}
        for k, v in clean.items():
            old = rec["properties"].get(k)
            if v == "":
                if old is not None:
                    changed[k] = (old, None)
                    rec["properties"].pop(k, None)
            elif old != v:
                changed[k] = (old, v)
                rec["properties"][k] = v
        ts = self.now()
        _scope, _d, _c, modified = self._type_info(portal, tid)
        rec["properties"][modified] = _iso(ts)
        rec["updatedAt"] = _iso(ts)
        self._derive(portal, tid, rec["properties"])
        return changed

    def _archive(self, portal: Portal, tid: str, rec: dict) -> None:
        ts = _iso(self.now())
        rec["archived"] = True
        rec["archivedAt"] = ts
        rec["updatedAt"] = ts
        for (f, fid, t), links in list(portal.assocs.items()):
            if f == tid and fid == rec["id"]:
                for to_id in links:
                    portal.assocs.get((t, to_id, f), {}).pop(rec["id"], None)
                links.clear()

    def _out(
        self,
        portal: Portal,
        tid: str,
        rec: dict,
        props: list[str] | None = None,
        written: Iterable[str] = (),
        associations: list[str] | None = None,
        extra: dict | None = None,
    ) -> dict:
        _scope, defaults, _c, _m = self._type_info(portal, tid)
        names = list(dict.fromkeys(list(defaults) + list(props or []) + list(written)))
        out = {
            "id": rec["id"],
            "properties": {n: rec["properties"][n] for n in names if n in rec["properties"]},
            "createdAt": rec["createdAt"],
            "updatedAt": rec["updatedAt"],
            "archived": rec["archived"],
        }
        if rec.get("archivedAt"):
            out["archivedAt"] = rec["archivedAt"]
        if associations:
            assoc_out = {}
            for name in associations:
                to = self._resolve(portal, name)
                if not to:
                    continue
                links = portal.assocs.get((tid, rec["id"], to), {})
                results = []
                for to_id, types in sorted(links.items()):
                    for cat, type_id in sorted(types):
                        d = self._assoc_def(portal, tid, to, type_id)
                        results.append(
                            {
                                "id": to_id,
                                "type": (d or {}).get("name")
                                or f"{self._type_name(portal, tid)}_to_"
                                f"{self._type_name(portal, to)}",
                            }
                        )
                if results:
                    assoc_out[name] = {"results": results}
            if assoc_out:
                out["associations"] = assoc_out
        if extra:
            out.update(extra)
        return out

    def _type_name(self, portal: Portal, tid: str) -> str:
        if tid in STANDARD_TYPES:
            return STANDARD_TYPES[tid][1]
        return portal.schemas[tid]["name"] if tid in portal.schemas else tid

    def _assoc_def(self, portal: Portal, frm: str, to: str, type_id: int) -> dict | None:
        return next(
            (d for d in portal.assoc_types.get((frm, to), []) if d["typeId"] == type_id), None
        )

    def _associate(
        self, portal: Portal, frm: str, fid: str, to: str, tid: str, types: list[dict]
    ) -> list[str]:
        labels = []
        for spec in types:
            cat, type_id = spec.get("associationCategory"), spec.get("associationTypeId")
            d = self._assoc_def(portal, frm, to, type_id)
            if d is None or d["category"] != cat:
                raise ApiError(
                    400,
                    "VALIDATION_ERROR",
                    f"{cat} {type_id} is not a valid association type between {frm} and {to}",
                    subCategory="crm.associations.INVALID_ASSOCIATION_TYPE",
                )
            portal.assocs.setdefault((frm, fid, to), {}).setdefault(tid, set()).add((cat, type_id))
            portal.assocs.setdefault((to, tid, frm), {}).setdefault(fid, set()).add(
                (cat, d["inverse"])
            )
            if d["label"]:
                labels.append(d["label"])
        return labels


# --------------------------------------------------------------------------------------------
# HTTP helpers (stdlib only: the sender must not depend on the app's HTTP stack)


def _json_dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _http(
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    timeout: float,
    want_headers: bool = False,
):
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    ctx = None
    if url.startswith("https://") and os.environ.get("CRM_CA_BUNDLE"):
        import ssl

        ctx = ssl.create_default_context(cafile=os.environ["CRM_CA_BUNDLE"])
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            data = r.read()
            return r.status, ((data, dict(r.headers)) if want_headers else data), None
    except urllib.error.HTTPError as e:
        data = e.read()
        return e.code, ((data, dict(e.headers)) if want_headers else data), None
    except (urllib.error.URLError, OSError) as e:
        return None, ((b"", {}) if want_headers else b""), repr(e)


# --------------------------------------------------------------------------------------------
# the WSGI app


def _r(path: str, endpoint: str, methods: list[str], auth: str | None = "api") -> Rule:
    return Rule(path, endpoint=(endpoint, auth), methods=methods)


_OBJ = "/crm/v3/objects/<object_type>"
_SCH = ["/crm-object-schemas/v3/schemas", "/crm/v3/schemas"]
_PROP = "/crm/v3/properties/<object_type>"
_A4 = "/crm/v4/associations/<from_type>/<to_type>"
_O4 = "/crm/v4/objects/<object_type>/<object_id>/associations"
_PIPE = "/crm/v3/pipelines/<object_type>"

_RULES = [
    _r("/", "home", ["GET"], None),
    _r("/_sandbox/state", "sandbox_state", ["GET"], None),
    _r("/_sandbox/rep-move", "rep_move", ["POST"], None),
    _r("/oauth/authorize", "authorize_page", ["GET"], None),
    _r("/oauth/<int:portal_hint>/authorize", "authorize_page", ["GET"], None),
    _r("/oauth/authorize", "authorize_submit", ["POST"], None),
    _r("/oauth/v1/token", "token", ["POST"], "oauth"),
    _r("/oauth/v3/token", "token", ["POST"], "oauth"),
    _r("/oauth/2026-03/token", "token", ["POST"], "oauth"),
    _r("/oauth/v1/access-tokens/<token>", "access_token_info", ["GET"], "oauth"),
    _r("/oauth/v1/refresh-tokens/<token>", "refresh_token_info", ["GET"], "oauth"),
    _r("/oauth/v1/refresh-tokens/<token>", "refresh_token_delete", ["DELETE"], "oauth"),
    _r("/appinstalls/v3/external-install", "external_uninstall", ["DELETE"]),
    *[_r(p, "schemas_list", ["GET"]) for p in _SCH],
    *[_r(p, "schema_create", ["POST"]) for p in _SCH],
    *[_r(p + "/<object_type>", "schema_get", ["GET"]) for p in _SCH],
    *[_r(p + "/<object_type>", "schema_patch", ["PATCH"]) for p in _SCH],
    *[_r(p + "/<object_type>", "schema_delete", ["DELETE"]) for p in _SCH],
    *[_r(p + "/<object_type>/associations", "schema_assoc_create", ["POST"]) for p in _SCH],
    _r(_PROP, "props_list", ["GET"]),
    _r(_PROP, "prop_create", ["POST"]),
    _r(_PROP + "/batch/create", "props_batch_create", ["POST"]),
    _r(_PROP + "/batch/read", "props_batch_read", ["POST"]),
    _r(_PROP + "/groups", "groups_list", ["GET"]),
    _r(_PROP + "/groups", "group_create", ["POST"]),
    _r(_PROP + "/groups/<group_name>", "group_get", ["GET"]),
    _r(_PROP + "/groups/<group_name>", "group_patch", ["PATCH"]),
    _r(_PROP + "/groups/<group_name>", "group_delete", ["DELETE"]),
    _r(_PROP + "/<property_name>", "prop_get", ["GET"]),
    _r(_PROP + "/<property_name>", "prop_patch", ["PATCH"]),
    _r(_PROP + "/<property_name>", "prop_delete", ["DELETE"]),
    _r(_OBJ, "objects_list", ["GET"]),
    _r(_OBJ, "object_create", ["POST"]),
    _r(_OBJ + "/search", "objects_search", ["POST"]),
    _r(_OBJ + "/batch/create", "batch_create", ["POST"]),
    _r(_OBJ + "/batch/read", "batch_read", ["POST"]),
    _r(_OBJ + "/batch/update", "batch_update", ["POST"]),
    _r(_OBJ + "/batch/upsert", "batch_upsert", ["POST"]),
    _r(_OBJ + "/batch/archive", "batch_archive", ["POST"]),
    _r(_OBJ + "/<object_id>", "object_get", ["GET"]),
    _r(_OBJ + "/<object_id>", "object_patch", ["PATCH"]),
    _r(_OBJ + "/<object_id>", "object_delete", ["DELETE"]),
    _r(_A4 + "/batch/create", "assoc_batch_create", ["POST"]),
    _r(_A4 + "/batch/associate/default", "assoc_batch_default", ["POST"]),
    _r(_A4 + "/batch/read", "assoc_batch_read", ["POST"]),
    _r(_A4 + "/batch/archive", "assoc_batch_archive", ["POST"]),
    _r(_A4 + "/batch/labels/archive", "assoc_batch_labels_archive", ["POST"]),
    _r(_A4 + "/labels", "labels_list", ["GET"]),
    _r(_A4 + "/labels", "label_create", ["POST"]),
    _r(_A4 + "/labels", "label_update", ["PUT"]),
    _r(_A4 + "/labels/<int:type_id>", "label_delete", ["DELETE"]),
    _r(_O4 + "/<to_type>", "assoc_list", ["GET"]),
    _r(_O4 + "/<to_type>/<to_id>", "assoc_put", ["PUT"]),
    _r(_O4 + "/<to_type>/<to_id>", "assoc_delete", ["DELETE"]),
    _r(_O4 + "/default/<to_type>/<to_id>", "assoc_put_default", ["PUT"]),
    _r(_PIPE, "pipelines_list", ["GET"]),
    _r(_PIPE + "/<pipeline_id>", "pipeline_get", ["GET"]),
    _r(_PIPE + "/<pipeline_id>/stages", "stages_list", ["GET"]),
    _r(_PIPE + "/<pipeline_id>/stages/<stage_id>", "stage_get", ["GET"]),
]


def _template(rule: Rule) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)


class _Ctx:
    """Per-request context handed to handlers."""

    def __init__(self, request: Request, token: _Token | None, portal: Portal | None) -> None:
        self.request = request
        self.token = token
        self.portal = portal
        self._json: Any = None

    @property
    def json(self) -> Any:
        if self._json is None:
            raw = self.request.get_data()
            if not raw:
                self._json = {}
            else:
                try:
                    self._json = json.loads(raw)
                except ValueError as e:
                    raise ApiError(400, "VALIDATION_ERROR", f"Invalid input JSON: {e}")
        return self._json

    def arg_list(self, name: str) -> list[str]:
        out: list[str] = []
        for v in self.request.args.getlist(name):
            out += [x for x in v.split(",") if x]
        return out


def create_app(sandbox: HubSpotSandbox) -> Callable:
    """The WSGI app serving `sandbox` (auth and API base are the same server)."""
    url_map = Map([r.empty() for r in _RULES], strict_slashes=False)
    handlers = _Handlers(sandbox)

    def app(environ, start_response):
        request = Request(environ)
        response = _dispatch(sandbox, handlers, url_map, request)
        return response(environ, start_response)

    app.sandbox = sandbox  # type: ignore[attr-defined]
    return app


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    if body is None:
        return Response(status=status, headers=headers or {})
    return Response(
        _json_dumps(body),
        status=status,
        headers=headers or {},
        content_type="application/json;charset=utf-8",
    )


def _dispatch(sb: HubSpotSandbox, handlers: _Handlers, url_map: Map, request: Request) -> Response:
    adapter = url_map.bind_to_environ(request.environ)
    path, method = request.path, request.method
    try:
        rule, args = adapter.match(return_rule=True)
    except MethodNotAllowed:
        return _json_response(
            405, ApiError(405, "VALIDATION_ERROR", f"{method} is not allowed on {path}").body
        )
    except NotFound:
        sb.unrouted_calls.append({"method": method, "path": path})
        return _json_response(
            404, ApiError(404, "OBJECT_NOT_FOUND", f"No sandbox route for {method} {path}").body
        )
    except HTTPException as e:  # redirects for trailing slashes etc.
        return e.get_response(request.environ)  # type: ignore[return-value]
    (name, auth) = rule.endpoint
    if auth is None:
        return getattr(handlers, name)(request, **args)
    endpoint = f"{method} {_template(rule)}"

    token = None
    bearer = request.headers.get("Authorization", "")
    if bearer.lower().startswith("bearer "):
        token = sb.tokens.get(bearer[7:].strip())
    portal = sb.portals.get(token.portal_id) if token else None

    response = _handle(sb, handlers, request, name, auth, args, token, portal)
    if sb.contract is not None and sb.contract.enabled and not getattr(response, "_fault", False):
        response = _check_contract(sb, request, response)

    if portal is None and name == "token" and response.status_code == 200:
        try:
            portal = sb.portals.get(json.loads(response.get_data())["hub_id"])
        except (ValueError, KeyError):
            portal = None
    with sb.lock:
        entry = {
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "status": response.status_code,
            "at": sb.now(),
        }
        if portal is not None:
            portal.calls.append(entry)
            portal.call_counts[endpoint] += 1
        else:
            sb.unrouted_calls.append(entry)
    return response


def _handle(
    sb: HubSpotSandbox,
    handlers: _Handlers,
    request: Request,
    name: str,
    auth: str,
    args: dict,
    token: _Token | None,
    portal: Portal | None,
) -> Response:
    fault = sb._take_fault(request.method, request.path)
    if fault:
        resp = _fault_response(sb, fault, request)
        resp._fault = True  # type: ignore[attr-defined]
        return resp
    if sb.contract is not None and sb.contract.enabled:
        op = sb.contract.find(request.method, request.path)
        if op is not None:
            problems = sb.contract.check_request(
                op,
                {k: request.args.getlist(k) for k in request.args},
                request.headers.get("Content-Type", ""),
                request.get_data(),
            )
            if problems:
                msg = (
                    f"Sandbox contract violation: {request.method} {request.path} does not "
                    f"match {op.spec_file} {op.method} {op.template}: " + "; ".join(problems)
                )
                sb.contract_violations.append(msg)
                log.error(msg)
                if sb.contract_mode == "strict":
                    return _json_response(
                        500, ApiError(500, "SANDBOX_CONTRACT_VIOLATION", msg).body
                    )
    try:
        if auth == "api":
            if token is None or token.kind != "access":
                raise ApiError(
                    401,
                    "INVALID_AUTHENTICATION",
                    "Authentication credentials not found. This API supports OAuth 2.0 "
                    "authentication and you can find more details at "
                    "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                )
            if token.revoked:
                raise ApiError(
                    401,
                    "INVALID_AUTHENTICATION",
                    "The OAuth token used to make this call is no longer valid "
                    "(the app was uninstalled or the token revoked).",
                )
            now = sb.now()
            if token.expires_at is not None and now >= token.expires_at:
                raise _expired_error(now - token.expires_at)
            limited = _rate_limit(sb, token, name == "objects_search")
            if limited is not None:
                return limited
        ctx = _Ctx(request, token, portal)
        with sb.lock:
            result = getattr(handlers, name)(ctx, **args)
        if isinstance(result, Response):
            response = result
        else:
            status, body = result
            response = _json_response(status, body)
    except ApiError as e:
        response = _json_response(e.status, e.body, e.headers)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        # A body the handler could not read (only reachable with contract checks off or warn).
        log.exception("HubSpot sandbox: cannot handle %s %s", request.method, request.path)
        response = _json_response(
            400, ApiError(400, "VALIDATION_ERROR", f"Invalid input JSON: {e!r}").body
        )
    if auth == "api" and token is not None and name != "objects_search":
        _rate_headers(sb, token, response)
    return response


def _expired_error(ago: float) -> ApiError:
    if ago >= 86400:
        when = f"{int(ago // 86400)} day(s)"
    elif ago >= 3600:
        when = f"{int(ago // 3600)} hour(s)"
    elif ago >= 60:
        when = f"{int(ago // 60)} minute(s)"
    else:
        when = f"{max(1, int(ago))} second(s)"
    return ApiError(
        401, "EXPIRED_AUTHENTICATION", f"The OAuth token used to make this call expired {when} ago."
    )


def _window(sb: HubSpotSandbox, key: tuple) -> collections.deque:
    return sb._windows.setdefault(key, collections.deque())


def _rate_limit(sb: HubSpotSandbox, token: _Token, search: bool) -> Response | None:
    if not sb.rate_limits_enabled:
        return None
    now = sb.now()
    with sb.lock:
        if search:
            key, limit, span, policy = (
                ("search", token.token),
                sb.search_rate_per_second,
                1.0,
                "SECONDLY",
            )
        else:
            key, limit, span, policy = (
                ("ten", token.portal_id, token.app_id),
                sb.rate_limit_max,
                sb.rate_limit_window,
                "TEN_SECONDLY_ROLLING",
            )
        win = _window(sb, key)
        while win and win[0] <= now - span:
            win.popleft()
        if len(win) >= limit:
            return _rate_limited_response(sb, policy)
        win.append(now)
    return None


def _rate_limited_response(sb: HubSpotSandbox, policy: str) -> Response:
    what = "ten second rolling" if policy == "TEN_SECONDLY_ROLLING" else "secondly"
    body = {
        "status": "error",
        "message": f"You have reached your {what} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": _corr(),
        "policyName": policy,
        "requestId": str(uuid.uuid4()),
        "category": "RATE_LIMITS",
    }
    headers = {}
    if sb.rate_limit_retry_after is not None:
        headers["Retry-After"] = str(sb.rate_limit_retry_after)
    return _json_response(429, body, headers)


def _rate_headers(sb: HubSpotSandbox, token: _Token, response: Response) -> None:
    win = sb._windows.get(("ten", token.portal_id, token.app_id), ())
    response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(
        int(sb.rate_limit_window * 1000)
    )
    response.headers["X-HubSpot-RateLimit-Max"] = str(sb.rate_limit_max)
    response.headers["X-HubSpot-RateLimit-Remaining"] = str(max(0, sb.rate_limit_max - len(win)))


def _fault_response(sb: HubSpotSandbox, fault: str, request: Request) -> Response:
    if fault == "429":
        return _rate_limited_response(sb, "TEN_SECONDLY_ROLLING")
    if fault == "401_expired":
        return _json_response(401, _expired_error(120).body)
    if fault in ("500", "502", "503"):
        status = int(fault)
        cat = {500: "INTERNAL_ERROR", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE"}[status]
        return _json_response(
            status, ApiError(status, cat, f"Injected {status} from the HubSpot sandbox").body
        )
    if fault == "timeout":
        sb._stop.wait(sb.timeout_fault_seconds)
        return _json_response(504, ApiError(504, "GATEWAY_TIMEOUT", "Injected timeout").body)
    # drop: close the connection without answering
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return Response(b"", status=500)


def _check_contract(sb: HubSpotSandbox, request: Request, response: Response) -> Response:
    op = sb.contract.find(request.method, request.path)  # type: ignore[union-attr]
    if op is None:
        return response
    try:
        body = json.loads(response.get_data() or b"null")
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("category") == "SANDBOX_CONTRACT_VIOLATION":
        return response
    problems = sb.contract.check_response(  # type: ignore[union-attr]
        op, response.status_code, response.headers.get("Content-Type", ""), response.get_data()
    )
    if not problems:
        return response
    msg = (
        f"Sandbox contract violation: the sandbox's own answer to {request.method} "
        f"{request.path} does not match {op.spec_file} {op.method} {op.template}: "
        + "; ".join(problems)
    )
    sb.contract_violations.append(msg)
    log.error(msg)
    if sb.contract_mode == "strict":
        return _json_response(500, ApiError(500, "SANDBOX_CONTRACT_VIOLATION", msg).body)
    return response


# --------------------------------------------------------------------------------------------
# handlers


def _batch_meta(started: str, sb: HubSpotSandbox) -> dict:
    return {"status": "COMPLETE", "startedAt": started, "completedAt": _iso(sb.now())}


def _std_error(status: str, category: str, message: str, context: dict | None = None) -> dict:
    return {
        "status": status,
        "category": category,
        "message": message,
        "context": context or {},
        "errors": [],
        "links": {},
    }


class _Handlers:
    def __init__(self, sb: HubSpotSandbox) -> None:
        self.sb = sb

    # ---- helpers -------------------------------------------------------------------------
    def _need(self, ctx: _Ctx, *alternatives: str) -> None:
        scopes = set(ctx.token.scopes) if ctx.token else set()
        if not any(s in scopes for s in alternatives):
            raise ApiError(
                403,
                "MISSING_SCOPES",
                "This app hasn't been granted all required scopes to make this call. Read more "
                "about required scopes here: https://developers.hubspot.com/scopes.",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": list(alternatives)},
                    }
                ],
                links={"scopes": "https://developers.hubspot.com/scopes"},
            )

    def _type(self, ctx: _Ctx, object_type: str, write: bool = False, schema: bool = False) -> str:
        tid = self.sb._resolve(ctx.portal, object_type)
        if tid is None:
            raise ApiError(
                400, "VALIDATION_ERROR", f"Unable to infer object type from: {object_type}"
            )
        scope, *_ = self.sb._type_info(ctx.portal, tid)
        if schema:
            self._need(
                ctx,
                f"crm.schemas.{scope}.{'write' if write else 'read'}",
                *([] if write else [f"crm.objects.{scope}.read"]),
            )
        else:
            self._need(ctx, f"crm.objects.{scope}.{'write' if write else 'read'}")
        return tid

    def _record(
        self,
        ctx: _Ctx,
        tid: str,
        object_id: str,
        id_property: str | None = None,
        archived: bool = False,
    ) -> dict:
        objs = ctx.portal.objects[tid]
        if id_property and id_property != "hs_object_id":
            d = ctx.portal.properties[tid].get(id_property)
            if not d or not d["hasUniqueValue"]:
                raise ApiError(
                    400, "VALIDATION_ERROR", f"{id_property} is not a unique identifier property"
                )
            rec = next(
                (
                    r
                    for r in objs.values()
                    if r["properties"].get(id_property) == object_id and r["archived"] == archived
                ),
                None,
            )
        else:
            rec = objs.get(str(object_id))
            if rec and rec["archived"] != archived:
                rec = None
        if rec is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        return rec

    def _limit(self, ctx: _Ctx, default: int, maximum: int) -> int:
        try:
            return max(1, min(int(ctx.request.args.get("limit", default)), maximum))
        except ValueError:
            raise ApiError(400, "VALIDATION_ERROR", "limit must be an integer")

    def _inputs(self, ctx: _Ctx) -> list[dict]:
        inputs = ctx.json.get("inputs") if isinstance(ctx.json, dict) else None
        if not isinstance(inputs, list):
            raise ApiError(400, "VALIDATION_ERROR", "Invalid input JSON: 'inputs' is required")
        if len(inputs) > BATCH_LIMIT:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Batch input limit exceeded: {len(inputs)} inputs were given, "
                f"at most {BATCH_LIMIT} are allowed per request.",
                context={"maxInputs": [str(BATCH_LIMIT)]},
            )
        return inputs

    # ---- pages ---------------------------------------------------------------------------
    def home(self, request: Request) -> Response:
        """A small page for people running the sandbox by hand: portals, apps, deals, and a
        form to move a deal's stage as a sales rep would (fires the deal webhooks)."""
        sb = self.sb
        with sb.lock:
            rows = "".join(
                f"<tr><td>{p.portal_id}</td><td>{html.escape(p.name)}</td><td>{p.tier}</td>"
                f"<td>{', '.join(s['objectTypeId'] + ' ' + s['name'] for s in p.schemas.values())}"
                f"</td></tr>"
                for p in sb.portals.values()
            )
            apps = "".join(
                f"<tr><td>{a.app_id}</td><td><code>{html.escape(a.client_id)}</code></td>"
                f"<td><code>{html.escape(a.client_secret)}</code></td></tr>"
                for a in sb.apps.values()
            )
            deals = "".join(
                self._deal_row(p, d)
                for p in sb.portals.values()
                for d in p.objects.get("0-3", {}).values()
                if not d["archived"]
            )
        checks = sb.contract_mode if sb.contract and sb.contract.enabled else "off"
        hook = html.escape(sb.webhook_target_url or "not set: events wait for drain_events()")
        body = (
            "<!doctype html><title>HubSpot sandbox</title><h1>HubSpot sandbox</h1>"
            f"<p>API base and auth base: <code>{html.escape(request.host_url)}</code>. "
            f"Contract checks: {checks}. Webhook target: <code>{hook}</code>.</p>"
            "<h2>Portals</h2><table border=1><tr><th>id</th><th>name</th><th>tier</th>"
            f"<th>custom objects</th></tr>{rows}</table>"
            "<h2>Apps</h2><table border=1><tr><th>app id</th><th>client id</th>"
            f"<th>client secret</th></tr>{apps}</table>"
            "<h2>Deals</h2><table border=1><tr><th>portal</th><th>deal</th><th>name</th>"
            f"<th>pipeline</th><th>stage</th><th>move as a rep</th></tr>{deals}</table>"
        )
        return Response(body, content_type="text/html; charset=utf-8")

    @staticmethod
    def _deal_row(portal: Portal, deal: dict) -> str:
        props = deal["properties"]
        pipe = portal.pipelines.get("0-3", {}).get(props.get("pipeline", ""), {"stages": []})
        options = "".join(
            f'<option value="{html.escape(st["id"])}"'
            f"{' selected' if st['id'] == props.get('dealstage') else ''}>"
            f"{html.escape(st['label'])}</option>"
            for st in pipe["stages"]
        )
        return (
            f"<tr><td>{portal.portal_id}</td><td>{deal['id']}</td>"
            f"<td>{html.escape(props.get('dealname', ''))}</td>"
            f"<td>{html.escape(props.get('pipeline', ''))}</td>"
            f"<td>{html.escape(props.get('dealstage', ''))}</td>"
            f'<td><form method=post action="/_sandbox/rep-move">'
            f'<input type=hidden name=portal_id value="{portal.portal_id}">'
            f'<input type=hidden name=deal_id value="{deal["id"]}">'
            f"<select name=dealstage>{options}</select> <button>Move</button></form></td></tr>"
        )

    def rep_move(self, request: Request) -> Response:
        f = request.form
        try:
            self.sb.rep_update_deal(
                int(f["portal_id"]), f["deal_id"], {"dealstage": f["dealstage"]}
            )
        except (KeyError, ValueError, ApiError) as e:
            return self._page("Couldn't move the deal", f"<p>{html.escape(str(e))}</p>", 400)
        return Response(status=303, headers={"Location": "/"})

    def sandbox_state(self, request: Request) -> Response:
        sb = self.sb
        with sb.lock:
            state = {
                "portals": [
                    {
                        "portalId": p.portal_id,
                        "name": p.name,
                        "tier": p.tier,
                        "schemas": [s["objectTypeId"] for s in p.schemas.values()],
                        "records": {t: len(o) for t, o in p.objects.items()},
                        "callCounts": dict(p.call_counts),
                    }
                    for p in sb.portals.values()
                ],
                "apps": [{"appId": a.app_id, "clientId": a.client_id} for a in sb.apps.values()],
                "contractViolations": sb.contract_violations[-20:],
            }
        return _json_response(200, state)

    def authorize_page(self, request: Request, portal_hint: int | None = None) -> Response:
        a = request.args
        app = self.sb._app_by_client(a.get("client_id", ""))
        if app is None:
            return self._page("Invalid app", "<p>Unknown client_id.</p>", 400)
        if not a.get("redirect_uri"):
            return self._page("Invalid request", "<p>redirect_uri is required.</p>", 400)
        if app.redirect_uris and a["redirect_uri"] not in app.redirect_uris:
            return self._page(
                "Invalid redirect",
                "<p>redirect_uri does not match the app's redirect URLs.</p>",
                400,
            )
        required = a.get("scope", "").split()
        optional = a.get("optional_scope", "").split()
        portals = [
            p for p in self.sb.portals.values() if portal_hint is None or p.portal_id == portal_hint
        ]
        options = "".join(
            f'<option value="{p.portal_id}">{html.escape(p.name)} ({p.portal_id}, '
            f"{p.tier})</option>"
            for p in portals
        )
        scopes = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in required)
        opt = "".join(f"<li><code>{html.escape(s)}</code> (optional)</li>" for s in optional)
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(a.get(k, ""))}">'
            for k in ("client_id", "redirect_uri", "scope", "optional_scope", "state")
        )
        body = (
            f"<p><b>{html.escape(app.name)}</b> is requesting access to your HubSpot account."
            f'</p><ul>{scopes}{opt}</ul><form method=post action="/oauth/authorize">{hidden}'
            f"<label>Choose an account <select name=portal_id>{options}</select></label> "
            f"<button name=action value=connect>Connect app</button> "
            f"<button name=action value=deny>Deny</button></form>"
        )
        return self._page("Connect app", body, 200)

    def authorize_submit(self, request: Request) -> Response:
        f = request.form
        redirect_uri = f.get("redirect_uri", "")
        state = f.get("state")
        app = self.sb._app_by_client(f.get("client_id", ""))
        if app is None or not redirect_uri:
            return self._page(
                "Invalid request", "<p>Unknown client_id or missing redirect_uri.</p>", 400
            )
        if app.redirect_uris and redirect_uri not in app.redirect_uris:
            return self._page("Invalid redirect", "<p>redirect_uri mismatch.</p>", 400)
        params: dict[str, str] = {}
        if f.get("action") == "deny":
            params = {
                "error": "access_denied",
                "error_description": "The user denied access to the app.",
            }
        else:
            try:
                portal_id = int(f.get("portal_id", ""))
                if portal_id not in self.sb.portals:
                    raise ValueError("unknown account")
                params = {
                    "code": self.sb.authorize(
                        client_id=app.client_id,
                        redirect_uri=redirect_uri,
                        scopes=f.get("scope", "").split(),
                        optional_scopes=f.get("optional_scope", "").split(),
                        portal_id=portal_id,
                    )
                }
            except ValueError as e:
                return self._page("Couldn't connect app", f"<p>{html.escape(str(e))}</p>", 400)
        if state is not None:
            params["state"] = state
        sep = "&" if "?" in redirect_uri else "?"
        return Response(
            status=302, headers={"Location": redirect_uri + sep + urllib.parse.urlencode(params)}
        )

    @staticmethod
    def _page(title: str, body: str, status: int) -> Response:
        return Response(
            f"<!doctype html><title>{html.escape(title)} | HubSpot sandbox</title>"
            f"<h1>{html.escape(title)}</h1>{body}",
            status=status,
            content_type="text/html; charset=utf-8",
        )

    # ---- oauth ---------------------------------------------------------------------------
    def _oauth_error(self, status_code: str, error: str, message: str) -> ApiError:
        e = ApiError(400, "VALIDATION_ERROR", message)
        e.body.update({"status": status_code, "error": error, "error_description": message})
        return e

    def token(self, ctx: _Ctx):
        sb = self.sb
        form = ctx.request.form
        grant = form.get("grant_type")
        app = sb._app_by_client(form.get("client_id", ""))
        if app is None:
            raise self._oauth_error(
                "BAD_CLIENT_ID", "invalid_client", "missing or unknown client id"
            )
        secret = form.get("client_secret") or ctx.request.args.get("client_secret")
        if secret != app.client_secret:
            raise self._oauth_error(
                "BAD_CLIENT_SECRET", "invalid_client", "missing or invalid client secret"
            )
        if grant == "authorization_code":
            code = sb.codes.get(form.get("code", ""))
            if (
                code is None
                or code.get("used")
                or code["expires_at"] < sb.now()
                or code["client_id"] != app.client_id
            ):
                raise self._oauth_error(
                    "BAD_AUTH_CODE", "invalid_grant", "auth code not found, expired or already used"
                )
            if form.get("redirect_uri") != code["redirect_uri"]:
                raise self._oauth_error(
                    "BAD_REDIRECT_URI",
                    "invalid_grant",
                    "redirect_uri does not match the one used to authorize",
                )
            code["used"] = True
            portal = sb.portals[code["portal_id"]]
            portal.installed_apps.add(app.app_id)
            ctx.portal = portal
            return 200, sb._mint(portal, app, code["user_id"], code["user"], code["scopes"])
        if grant == "refresh_token":
            rt = form.get("refresh_token") or ctx.request.args.get("refresh_token", "")
            tok = sb.tokens.get(rt)
            if (
                tok is None
                or tok.kind != "refresh"
                or tok.revoked
                or tok.client_id != app.client_id
            ):
                raise self._oauth_error(
                    "BAD_REFRESH_TOKEN",
                    "invalid_grant",
                    "refresh token is invalid, expired or revoked",
                )
            portal = sb.portals[tok.portal_id]
            ctx.portal = portal
            return 200, sb._mint(portal, app, tok.user_id, tok.user, tok.scopes, refresh=rt)
        raise self._oauth_error(
            "BAD_GRANT_TYPE", "unsupported_grant_type", f"unsupported grant_type {grant!r}"
        )

    def access_token_info(self, ctx: _Ctx, token: str):
        t = self.sb.tokens.get(token)
        if t is None or t.kind != "access" or t.revoked:
            raise ApiError(404, "OBJECT_NOT_FOUND", "access token not found")
        remaining = int((t.expires_at or 0) - self.sb.now())
        if remaining <= 0:
            raise _expired_error(-remaining)
        ctx.portal = self.sb.portals[t.portal_id]
        return 200, {
            "token": t.token,
            "user": t.user,
            "hub_domain": ctx.portal.domain,
            "scopes": t.scopes,
            "hub_id": t.portal_id,
            "app_id": t.app_id,
            "expires_in": remaining,
            "user_id": t.user_id,
            "token_type": "access",
            "is_private_distribution": False,
        }

    def refresh_token_info(self, ctx: _Ctx, token: str):
        t = self.sb.tokens.get(token)
        if t is None or t.kind != "refresh" or t.revoked:
            raise ApiError(404, "OBJECT_NOT_FOUND", "refresh token not found")
        return 200, {
            "token": t.token,
            "user": t.user,
            "hub_domain": self.sb.portals[t.portal_id].domain,
            "scopes": t.scopes,
            "hub_id": t.portal_id,
            "client_id": t.client_id,
            "user_id": t.user_id,
            "token_type": "refresh",
        }

    def refresh_token_delete(self, ctx: _Ctx, token: str):
        t = self.sb.tokens.get(token)
        if t is None or t.kind != "refresh":
            raise ApiError(404, "OBJECT_NOT_FOUND", "refresh token not found")
        t.revoked = True
        return 204, None

    def external_uninstall(self, ctx: _Ctx):
        self._need(ctx, "oauth")
        self.sb.uninstall(ctx.portal.portal_id, ctx.token.app_id)
        return 204, None

    # ---- schemas -------------------------------------------------------------------------
    def _schema_out(self, portal: Portal, sch: dict) -> dict:
        tid = sch["objectTypeId"]
        props = [p for p in portal.properties[tid].values() if not p["archived"]]
        return {
            **{k: v for k, v in sch.items() if not k.startswith("_")},
            "properties": props,
            "associations": [dict(a) for a in sch["associations"]],
        }

    def schemas_list(self, ctx: _Ctx):
        self._need(ctx, "crm.schemas.custom.read", "crm.objects.custom.read")
        archived = ctx.request.args.get("archived", "false") == "true"
        return 200, {
            "results": [
                self._schema_out(ctx.portal, s)
                for s in ctx.portal.schemas.values()
                if s["archived"] == archived
            ]
        }

    def _schema(self, ctx: _Ctx, object_type: str) -> dict:
        tid = self.sb._resolve(ctx.portal, object_type)
        if tid is None or tid not in ctx.portal.schemas:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find object type {object_type}")
        return ctx.portal.schemas[tid]

    def schema_get(self, ctx: _Ctx, object_type: str):
        self._need(ctx, "crm.schemas.custom.read", "crm.objects.custom.read")
        return 200, self._schema_out(ctx.portal, self._schema(ctx, object_type))

    def schema_create(self, ctx: _Ctx):
        sb, portal, body = self.sb, ctx.portal, ctx.json
        self._need(ctx, "crm.schemas.custom.write")
        if not portal.is_enterprise:
            raise ApiError(
                403,
                "FORBIDDEN",
                f"Portal {portal.portal_id} does not have access to custom objects. "
                "Custom objects require an Enterprise subscription.",
            )
        name = body.get("name", "")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name or ""):
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Invalid object type name {name!r}: use "
                "letters, numbers and underscores, starting with a letter.",
            )
        if any(s["name"] == name for s in portal.schemas.values()):
            raise ApiError(
                409,
                "OBJECT_ALREADY_EXISTS",
                f"An object type with the name {name!r} already exists.",
            )
        props = body.get("properties") or []
        names = [p.get("name") for p in props]
        if len(set(names)) != len(names):
            raise ApiError(400, "VALIDATION_ERROR", "Duplicate property names in schema")
        if sum(1 for p in props if p.get("hasUniqueValue")) > 10:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "At most 10 unique value properties are allowed per object.",
            )
        for key in ("requiredProperties", "searchableProperties", "secondaryDisplayProperties"):
            missing = [n for n in body.get(key) or [] if n not in names]
            if missing:
                raise ApiError(
                    400, "VALIDATION_ERROR", f"{key} refers to unknown properties: {missing}"
                )
        pdp = body.get("primaryDisplayProperty")
        if pdp and pdp not in names:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"primaryDisplayProperty {pdp!r} is not one of the schema's properties",
            )
        targets = []
        for other in body.get("associatedObjects") or []:
            to = sb._resolve(portal, other)
            if to is None:
                raise ApiError(400, "VALIDATION_ERROR", f"Unknown associated object {other!r}")
            targets.append(to)
        tid = f"2-{next(sb._type_ids)}"
        ts = _iso(sb.now())
        portal.objects[tid] = {}
        portal.properties[tid] = {}
        portal.groups[tid] = {}
        group = f"{name}_information"
        sb._add_group(
            portal, tid, group, f"{body.get('labels', {}).get('singular', name)} information"
        )
        for p in props:
            sb._add_property(portal, tid, {"groupName": group, **p})
        for pname, label, ptype in (
            ("hs_object_id", "Record ID", "number"),
            ("hs_createdate", "Create date", "datetime"),
            ("hs_lastmodifieddate", "Last modified date", "datetime"),
        ):
            sb._add_property(
                portal,
                tid,
                {
                    "name": pname,
                    "label": label,
                    "type": ptype,
                    "fieldType": "number" if ptype == "number" else "date",
                    "groupName": group,
                },
                hubspot=True,
            )
        sch = {
            "id": tid.split("-")[1],
            "objectTypeId": tid,
            "name": name,
            "fullyQualifiedName": f"p{portal.portal_id}_{name}",
            "labels": body.get("labels", {}),
            "description": body.get("description", ""),
            "primaryDisplayProperty": pdp or names[0] if names else "hs_object_id",
            "secondaryDisplayProperties": body.get("secondaryDisplayProperties") or [],
            "searchableProperties": body.get("searchableProperties") or [],
            "requiredProperties": body.get("requiredProperties") or [],
            "archived": False,
            "createdAt": ts,
            "updatedAt": ts,
            "associations": [],
        }
        portal.schemas[tid] = sch
        for to in targets:
            self._schema_assoc(portal, sch, to, None)
        return 201, self._schema_out(portal, sch)

    def _schema_assoc(self, portal: Portal, sch: dict, to: str, name: str | None) -> dict:
        tid = sch["objectTypeId"]
        name = name or f"{sch['name']}_to_{self.sb._type_name(portal, to)}"
        fwd, _inv = self.sb._define_assoc(portal, tid, to, "USER_DEFINED", None, name)
        ts = _iso(self.sb.now())
        a = {
            "id": str(fwd),
            "fromObjectTypeId": tid,
            "toObjectTypeId": to,
            "name": name,
            "createdAt": ts,
            "updatedAt": ts,
        }
        sch["associations"].append(a)
        return a

    def schema_assoc_create(self, ctx: _Ctx, object_type: str):
        self._need(ctx, "crm.schemas.custom.write")
        sch = self._schema(ctx, object_type)
        body = ctx.json
        frm = self.sb._resolve(ctx.portal, body.get("fromObjectTypeId", ""))
        to = self.sb._resolve(ctx.portal, body.get("toObjectTypeId", ""))
        if frm != sch["objectTypeId"] or to is None:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "fromObjectTypeId must be the schema's type and toObjectTypeId a known object type",
            )
        return 201, self._schema_assoc(ctx.portal, sch, to, body.get("name"))

    def schema_patch(self, ctx: _Ctx, object_type: str):
        self._need(ctx, "crm.schemas.custom.write")
        sch = self._schema(ctx, object_type)
        body = ctx.json
        known = set(ctx.portal.properties[sch["objectTypeId"]])
        for key in ("requiredProperties", "searchableProperties", "secondaryDisplayProperties"):
            if key in body:
                missing = [n for n in body[key] if n not in known]
                if missing:
                    raise ApiError(
                        400, "VALIDATION_ERROR", f"{key} refers to unknown properties: {missing}"
                    )
                sch[key] = list(body[key])
        for key in ("primaryDisplayProperty", "description", "labels"):
            if key in body:
                sch[key] = body[key]
        sch["updatedAt"] = _iso(self.sb.now())
        out = {k: v for k, v in sch.items() if k not in ("associations",)}
        out["portalId"] = ctx.portal.portal_id
        return 200, out

    def schema_delete(self, ctx: _Ctx, object_type: str):
        self._need(ctx, "crm.schemas.custom.write")
        portal = ctx.portal
        tid = self.sb._resolve(portal, object_type)
        if tid is None:
            m = re.fullmatch(r"2-\d+", object_type)
            tid = object_type if m and object_type in portal.schemas else None
        if tid is None or tid not in portal.schemas:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find object type {object_type}")
        if any(not r["archived"] for r in portal.objects[tid].values()):
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "Delete all records of this object type before deleting the schema.",
            )
        if ctx.request.args.get("archived") == "true":
            del portal.schemas[tid]
        else:
            portal.schemas[tid]["archived"] = True
        return 204, None

    # ---- properties ----------------------------------------------------------------------
    def props_list(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, schema=True)
        archived = ctx.request.args.get("archived", "false") == "true"
        return 200, {
            "results": [p for p in ctx.portal.properties[tid].values() if p["archived"] == archived]
        }

    def _create_prop(self, ctx: _Ctx, tid: str, spec: dict) -> dict:
        portal = ctx.portal
        name = spec.get("name", "")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Invalid property name {name!r}: lowercase "
                "letters, numbers and underscores, starting with a letter.",
            )
        existing = portal.properties[tid].get(name)
        if existing and not existing["archived"]:
            raise ApiError(409, "OBJECT_ALREADY_EXISTS", f"Property named '{name}' already exists.")
        group = spec.get("groupName", "")
        if group not in portal.groups[tid] or portal.groups[tid][group]["archived"]:
            raise ApiError(400, "VALIDATION_ERROR", f"Property group {group!r} does not exist.")
        if (
            spec.get("hasUniqueValue")
            and sum(1 for p in portal.properties[tid].values() if p["hasUniqueValue"]) >= 10
        ):
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "At most 10 unique value properties are allowed per object.",
            )
        if (
            spec.get("type") == "enumeration"
            and not spec.get("options")
            and spec.get("fieldType") != "booleancheckbox"
        ):
            raise ApiError(400, "VALIDATION_ERROR", f"Enumeration property {name!r} needs options")
        return self.sb._add_property(portal, tid, spec)

    def prop_create(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        return 201, self._create_prop(ctx, tid, ctx.json)

    def props_batch_create(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        started = _iso(self.sb.now())
        results, errors = [], []
        for spec in self._inputs(ctx):
            try:
                results.append(self._create_prop(ctx, tid, spec))
            except ApiError as e:
                errors.append(
                    _std_error(
                        "error",
                        e.body["category"],
                        e.body["message"],
                        {"name": [str(spec.get("name"))]},
                    )
                )
        body = {**_batch_meta(started, self.sb), "results": results}
        if errors:
            return 207, {**body, "numErrors": len(errors), "errors": errors}
        return 201, body

    def props_batch_read(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, schema=True)
        started = _iso(self.sb.now())
        names = [i.get("name") for i in self._inputs(ctx)]
        props = ctx.portal.properties[tid]
        found = [props[n] for n in names if n in props and not props[n]["archived"]]
        missing = [n for n in names if n not in props or props[n]["archived"]]
        body = {**_batch_meta(started, self.sb), "results": found}
        if missing:
            return 207, {
                **body,
                "numErrors": 1,
                "errors": [
                    _std_error(
                        "error", "OBJECT_NOT_FOUND", "Properties not found", {"names": missing}
                    )
                ],
            }
        return 200, body

    def _prop(self, ctx: _Ctx, tid: str, name: str) -> dict:
        p = ctx.portal.properties[tid].get(name)
        if p is None or p["archived"]:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name}")
        return p

    def prop_get(self, ctx: _Ctx, object_type: str, property_name: str):
        tid = self._type(ctx, object_type, schema=True)
        return 200, self._prop(ctx, tid, property_name)

    def prop_patch(self, ctx: _Ctx, object_type: str, property_name: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        p = self._prop(ctx, tid, property_name)
        if p["hubspotDefined"]:
            raise ApiError(400, "VALIDATION_ERROR", "HubSpot-defined properties can't be changed")
        body = ctx.json
        if "options" in body:
            p["options"] = [
                {
                    "label": o.get("label"),
                    "value": str(o.get("value")),
                    "displayOrder": o.get("displayOrder", i),
                    "hidden": bool(o.get("hidden", False)),
                }
                for i, o in enumerate(body["options"])
            ]
        for k in (
            "label",
            "description",
            "groupName",
            "displayOrder",
            "hidden",
            "formField",
            "fieldType",
            "type",
            "numberDisplayHint",
            "textDisplayHint",
        ):
            if k in body:
                p[k] = body[k]
        p["updatedAt"] = _iso(self.sb.now())
        return 200, p

    def prop_delete(self, ctx: _Ctx, object_type: str, property_name: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        p = self._prop(ctx, tid, property_name)
        if p["hubspotDefined"]:
            raise ApiError(400, "VALIDATION_ERROR", "HubSpot-defined properties can't be deleted")
        p["archived"] = True
        p["archivedAt"] = _iso(self.sb.now())
        return 204, None

    def groups_list(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, schema=True)
        return 200, {"results": [g for g in ctx.portal.groups[tid].values() if not g["archived"]]}

    def group_create(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        body = ctx.json
        name = body.get("name", "")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ApiError(400, "VALIDATION_ERROR", f"Invalid group name {name!r}")
        g = ctx.portal.groups[tid].get(name)
        if g and not g["archived"]:
            raise ApiError(
                409, "OBJECT_ALREADY_EXISTS", f"Property group named '{name}' already exists."
            )
        return 201, self.sb._add_group(
            ctx.portal,
            tid,
            name,
            body.get("label", name),
            display_order=body.get("displayOrder", -1),
        )

    def _group(self, ctx: _Ctx, tid: str, name: str) -> dict:
        g = ctx.portal.groups[tid].get(name)
        if g is None or g["archived"]:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property group {name}")
        return g

    def group_get(self, ctx: _Ctx, object_type: str, group_name: str):
        tid = self._type(ctx, object_type, schema=True)
        return 200, self._group(ctx, tid, group_name)

    def group_patch(self, ctx: _Ctx, object_type: str, group_name: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        g = self._group(ctx, tid, group_name)
        for k in ("label", "displayOrder"):
            if k in ctx.json:
                g[k] = ctx.json[k]
        return 200, g

    def group_delete(self, ctx: _Ctx, object_type: str, group_name: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        self._group(ctx, tid, group_name)["archived"] = True
        return 204, None

    # ---- objects -------------------------------------------------------------------------
    def _after_write_events(
        self,
        ctx: _Ctx,
        tid: str,
        rec: dict,
        changed: dict | None,
        created: bool = False,
        deleted: bool = False,
    ) -> None:
        if tid == "0-3":
            self.sb._deal_events(
                ctx.portal,
                rec["id"],
                changed,
                None,
                "INTEGRATION",
                created=created,
                deleted=deleted,
                source_id=str(ctx.token.app_id) if ctx.token else None,
            )

    def _create(self, ctx: _Ctx, tid: str, props: dict) -> tuple[dict, list[str]]:
        if not isinstance(props, dict):
            raise ApiError(400, "VALIDATION_ERROR", "properties must be an object")
        clean, errors = self.sb._check_values(ctx.portal, tid, props)
        errors += self.sb._check_pipeline(ctx.portal, tid, None, clean)
        if tid in ctx.portal.schemas:
            missing = [n for n in ctx.portal.schemas[tid]["requiredProperties"] if not clean.get(n)]
            errors += [
                {"isValid": False, "message": f"{n} is required", "error": "REQUIRED", "name": n}
                for n in missing
            ]
        if errors:
            raise _prop_error(errors)
        self.sb._check_unique(ctx.portal, tid, None, clean)
        rec = self.sb._insert(ctx.portal, tid, clean, self.sb.now())
        self._after_write_events(
            ctx, tid, rec, {k: (None, v) for k, v in clean.items() if v}, created=True
        )
        return rec, list(clean)

    def object_create(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True)
        body = ctx.json
        assocs = body.get("associations") or []
        checked = []
        for a in assocs:
            to_id = str((a.get("to") or {}).get("id", ""))
            to_tid = self._find_assoc_target(ctx, tid, to_id, a.get("types") or [])
            checked.append((to_tid, to_id, a.get("types") or []))
        rec, written = self._create(ctx, tid, body.get("properties") or {})
        for to_tid, to_id, types in checked:
            self.sb._associate(ctx.portal, tid, rec["id"], to_tid, to_id, types)
        return 201, self.sb._out(ctx.portal, tid, rec, written=written)

    def _find_assoc_target(self, ctx: _Ctx, tid: str, to_id: str, types: list[dict]) -> str:
        """Inline associations name only the target id; the type id says which object type."""
        for spec in types:
            for (frm, to), defs in ctx.portal.assoc_types.items():
                if (
                    frm == tid
                    and any(d["typeId"] == spec.get("associationTypeId") for d in defs)
                    and to_id in ctx.portal.objects.get(to, {})
                ):
                    return to
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"Association target {to_id} not found for the given association types",
        )

    def object_get(self, ctx: _Ctx, object_type: str, object_id: str):
        tid = self._type(ctx, object_type)
        a = ctx.request.args
        rec = self._record(
            ctx, tid, object_id, a.get("idProperty"), a.get("archived", "false") == "true"
        )
        return 200, self.sb._out(
            ctx.portal,
            tid,
            rec,
            ctx.arg_list("properties"),
            associations=ctx.arg_list("associations"),
        )

    def object_patch(self, ctx: _Ctx, object_type: str, object_id: str):
        tid = self._type(ctx, object_type, write=True)
        rec = self._record(ctx, tid, object_id, ctx.request.args.get("idProperty"))
        props = ctx.json.get("properties") or {}
        changed = self.sb._update(ctx.portal, tid, rec, props)
        self._after_write_events(ctx, tid, rec, changed)
        return 200, self.sb._out(ctx.portal, tid, rec, written=props)

    def object_delete(self, ctx: _Ctx, object_type: str, object_id: str):
        tid = self._type(ctx, object_type, write=True)
        rec = ctx.portal.objects[tid].get(str(object_id))
        if rec is not None and not rec["archived"]:  # deleting a missing record answers 204 too
            self.sb._archive(ctx.portal, tid, rec)
            self._after_write_events(ctx, tid, rec, None, deleted=True)
        return 204, None

    def objects_list(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type)
        limit = self._limit(ctx, 10, 100)
        archived = ctx.request.args.get("archived", "false") == "true"
        after = ctx.request.args.get("after")
        recs = sorted(
            (r for r in ctx.portal.objects[tid].values() if r["archived"] == archived),
            key=lambda r: int(r["id"]),
        )
        if after:
            recs = [r for r in recs if int(r["id"]) > int(after)] if after.isdigit() else []
        page = recs[:limit]
        body = {
            "results": [
                self.sb._out(
                    ctx.portal,
                    tid,
                    r,
                    ctx.arg_list("properties"),
                    associations=ctx.arg_list("associations"),
                )
                for r in page
            ]
        }
        if len(recs) > limit:
            nxt = page[-1]["id"]
            body["paging"] = {
                "next": {
                    "after": nxt,
                    "link": f"{ctx.request.host_url.rstrip('/')}"
                    f"{ctx.request.path}?after={nxt}&limit={limit}",
                }
            }
        return 200, body

    def _check_dupes(self, ids: list[str]) -> None:
        seen, dupes = set(), set()
        for i in ids:
            (dupes if i in seen else seen).add(i)
        if dupes:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Duplicate IDs found in batch input: {sorted(dupes)}. IDs must be unique",
                context={"ids": sorted(dupes)},
            )

    def batch_create(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True)
        started = _iso(self.sb.now())
        inputs = self._inputs(ctx)
        # validate everything first: HubSpot's batch create is all or nothing
        for inp in inputs:
            clean, errors = self.sb._check_values(ctx.portal, tid, inp.get("properties") or {})
            errors += self.sb._check_pipeline(ctx.portal, tid, None, clean)
            if errors:
                raise _prop_error(errors)
        results = []
        for inp in inputs:
            rec, written = self._create(ctx, tid, inp.get("properties") or {})
            for a in inp.get("associations") or []:
                to_id = str((a.get("to") or {}).get("id", ""))
                to_tid = self._find_assoc_target(ctx, tid, to_id, a.get("types") or [])
                self.sb._associate(ctx.portal, tid, rec["id"], to_tid, to_id, a.get("types") or [])
            out = self.sb._out(ctx.portal, tid, rec, written=written)
            if inp.get("objectWriteTraceId"):
                out["objectWriteTraceId"] = inp["objectWriteTraceId"]
            results.append(out)
        return 201, {**_batch_meta(started, self.sb), "results": results}

    def batch_read(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type)
        started = _iso(self.sb.now())
        body = ctx.json
        inputs = self._inputs(ctx)
        id_prop = body.get("idProperty")
        archived = ctx.request.args.get("archived", "false") == "true"
        results, missing = [], []
        for inp in inputs:
            try:
                rec = self._record(ctx, tid, str(inp.get("id")), id_prop, archived)
                results.append(self.sb._out(ctx.portal, tid, rec, body.get("properties") or []))
            except ApiError:
                missing.append(str(inp.get("id")))
        out = {**_batch_meta(started, self.sb), "results": results}
        if missing:
            return 207, {
                **out,
                "numErrors": 1,
                "errors": [
                    _std_error(
                        "error",
                        "OBJECT_NOT_FOUND",
                        "Could not get some "
                        f"{object_type} objects, "
                        "they may be deleted or not exist. Check that ids are valid.",
                        {"ids": missing},
                    )
                ],
            }
        return 200, out

    def batch_update(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True)
        started = _iso(self.sb.now())
        inputs = self._inputs(ctx)
        self._check_dupes([str(i.get("id")) for i in inputs])
        targets, missing = [], []
        for inp in inputs:
            try:
                targets.append(
                    (self._record(ctx, tid, str(inp.get("id")), inp.get("idProperty")), inp)
                )
            except ApiError:
                missing.append(str(inp.get("id")))
        for rec, inp in targets:  # validate all before writing any
            clean, errors = self.sb._check_values(ctx.portal, tid, inp.get("properties") or {})
            errors += self.sb._check_pipeline(ctx.portal, tid, rec, clean)
            if errors:
                raise _prop_error(errors)
        results = []
        for rec, inp in targets:
            changed = self.sb._update(ctx.portal, tid, rec, inp.get("properties") or {})
            self._after_write_events(ctx, tid, rec, changed)
            out = self.sb._out(ctx.portal, tid, rec, written=inp.get("properties") or {})
            if inp.get("objectWriteTraceId"):
                out["objectWriteTraceId"] = inp["objectWriteTraceId"]
            results.append(out)
        out = {**_batch_meta(started, self.sb), "results": results}
        if missing:
            return 207, {
                **out,
                "numErrors": 1,
                "errors": [
                    _std_error(
                        "error", "OBJECT_NOT_FOUND", "Some objects were not found", {"ids": missing}
                    )
                ],
            }
        return 200, out

    def batch_upsert(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True)
        started = _iso(self.sb.now())
        portal = ctx.portal
        inputs = self._inputs(ctx)
        query_id_prop = ctx.request.args.get("idProperty")
        plan = []
        for inp in inputs:
            id_prop = inp.get("idProperty") or query_id_prop
            d = portal.properties[tid].get(id_prop or "")
            if not id_prop or d is None or not d["hasUniqueValue"]:
                raise ApiError(
                    400,
                    "VALIDATION_ERROR",
                    f"idProperty {id_prop!r} is not a unique value property of "
                    f"{object_type}; upsert needs a property with hasUniqueValue",
                    context={"idProperty": [str(id_prop)]},
                )
            if not inp.get("id"):
                raise ApiError(400, "VALIDATION_ERROR", "Each upsert input needs an id")
            props = dict(inp.get("properties") or {})
            if str(props.get(id_prop, inp["id"])) != str(inp["id"]):
                raise ApiError(400, "VALIDATION_ERROR", f"properties.{id_prop} differs from id")
            plan.append((id_prop, str(inp["id"]), props, inp))
        self._check_dupes([f"{p}={i}" for p, i, _x, _y in plan])
        existing = {}
        for id_prop, idv, props, _inp in plan:
            rec = next(
                (
                    r
                    for r in portal.objects[tid].values()
                    if not r["archived"] and r["properties"].get(id_prop) == idv
                ),
                None,
            )
            existing[(id_prop, idv)] = rec
            clean, errors = self.sb._check_values(portal, tid, props)
            errors += self.sb._check_pipeline(portal, tid, rec, clean)
            if rec is None and tid in portal.schemas:
                have = {**clean, id_prop: idv}
                errors += [
                    {
                        "isValid": False,
                        "message": f"{n} is required",
                        "error": "REQUIRED",
                        "name": n,
                    }
                    for n in portal.schemas[tid]["requiredProperties"]
                    if not have.get(n)
                ]
            if errors:
                raise _prop_error(errors)
        results = []
        for id_prop, idv, props, inp in plan:
            rec = existing[(id_prop, idv)]
            if rec is None:
                rec, written = self._create(ctx, tid, {**props, id_prop: idv})
                is_new = True
            else:
                changed = self.sb._update(portal, tid, rec, props)
                self._after_write_events(ctx, tid, rec, changed)
                written, is_new = list(props), False
            out = self.sb._out(
                portal, tid, rec, written=list(written) + [id_prop], extra={"new": is_new}
            )
            if inp.get("objectWriteTraceId"):
                out["objectWriteTraceId"] = inp["objectWriteTraceId"]
            results.append(out)
        return 200, {**_batch_meta(started, self.sb), "results": results}

    def batch_archive(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True)
        for inp in self._inputs(ctx):
            rec = ctx.portal.objects[tid].get(str(inp.get("id")))
            if rec is not None and not rec["archived"]:
                self.sb._archive(ctx.portal, tid, rec)
                self._after_write_events(ctx, tid, rec, None, deleted=True)
        return 204, None

    # ---- search --------------------------------------------------------------------------
    def objects_search(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type)
        body = ctx.json if isinstance(ctx.json, dict) else {}
        portal = ctx.portal
        limit = body.get("limit", 10)
        if not isinstance(limit, int) or limit < 0 or limit > SEARCH_PAGE_LIMIT:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"limit must be between 0 and {SEARCH_PAGE_LIMIT}; got {limit}",
            )
        try:
            offset = int(body.get("after") or 0)
        except (TypeError, ValueError):
            raise ApiError(400, "VALIDATION_ERROR", f"Invalid after: {body.get('after')!r}")
        if offset + limit > SEARCH_MAX_RESULTS:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"The search API returns at most "
                f"{SEARCH_MAX_RESULTS} results; page further with a narrower filter.",
            )
        groups = body.get("filterGroups") or []
        if len(groups) > 5 or sum(len(g.get("filters") or []) for g in groups) > 18:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "Too many filters: at most 5 filterGroups and 18 filters in total",
            )
        defs = portal.properties[tid]
        recs = [r for r in portal.objects[tid].values() if not r["archived"]]
        if groups:
            recs = [
                r
                for r in recs
                if any(all(self._match(defs, r, f) for f in g.get("filters") or []) for g in groups)
            ]
        q = (body.get("query") or "").strip().lower()
        if q:
            searchable = (
                portal.schemas[tid]["searchableProperties"]
                if tid in portal.schemas
                else ["dealname", "name", "email", "firstname", "lastname", "subject"]
            )
            recs = [
                r for r in recs if any(q in r["properties"].get(p, "").lower() for p in searchable)
            ]
        recs.sort(key=lambda r: int(r["id"]))
        for s in reversed(body.get("sorts") or []):
            if isinstance(s, dict):
                name, desc = s.get("propertyName", ""), s.get("direction") == "DESCENDING"
            else:
                name, desc = str(s).lstrip("-"), str(s).startswith("-")
            recs.sort(key=lambda r, n=name: self._sort_key(defs, r, n), reverse=desc)
        page = recs[offset : offset + limit]
        out = {
            "total": len(recs),
            "results": [self.sb._out(portal, tid, r, body.get("properties") or []) for r in page],
        }
        if offset + limit < len(recs):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return 200, out

    @staticmethod
    def _typed(defs: dict, name: str, value: Any):
        t = defs.get(name, {}).get("type")
        if value is None:
            return None
        if t in ("datetime", "date"):
            return _parse_time_ms(value)
        if t == "number":
            try:
                return float(value)
            except ValueError:
                return None
        return str(value).lower()

    def _sort_key(self, defs: dict, rec: dict, name: str):
        v = self._typed(defs, name, rec["properties"].get(name))
        return (v is None, v if v is not None else 0)

    def _match(self, defs: dict, rec: dict, f: dict) -> bool:
        name, op = f.get("propertyName", ""), f.get("operator", "EQ")
        raw = rec["properties"].get(name)
        if op == "HAS_PROPERTY":
            return raw not in (None, "")
        if op == "NOT_HAS_PROPERTY":
            return raw in (None, "")
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(f.get("value", "")).lower().strip("*")
            hit = raw is not None and token in str(raw).lower()
            return hit if op == "CONTAINS_TOKEN" else not hit
        have = self._typed(defs, name, raw)
        if op in ("IN", "NOT_IN"):
            vals = [self._typed(defs, name, v) for v in f.get("values") or []]
            hit = have is not None and have in vals
            return hit if op == "IN" else not hit
        want = self._typed(defs, name, f.get("value"))
        if op == "NEQ":
            return have != want
        if have is None or want is None:
            return False
        try:
            if op == "EQ":
                return have == want
            if op == "LT":
                return have < want
            if op == "LTE":
                return have <= want
            if op == "GT":
                return have > want
            if op == "GTE":
                return have >= want
            if op == "BETWEEN":
                high = self._typed(defs, name, f.get("highValue"))
                return high is not None and want <= have <= high
        except TypeError:
            return False
        raise ApiError(400, "VALIDATION_ERROR", f"Unsupported operator {op}")

    # ---- associations v4 -------------------------------------------------------------------
    def _pair(self, ctx: _Ctx, from_type: str, to_type: str, write: bool) -> tuple[str, str]:
        frm = self._type(ctx, from_type, write=write)
        to = self._type(ctx, to_type, write=write)
        return frm, to

    def _exists(self, ctx: _Ctx, tid: str, oid: str) -> bool:
        r = ctx.portal.objects[tid].get(str(oid))
        return r is not None and not r["archived"]

    def _labels_out(self, portal: Portal, frm: str, to: str, fid: str, tid: str) -> list[dict]:
        out = []
        for cat, type_id in sorted(portal.assocs.get((frm, fid, to), {}).get(tid, ())):
            d = self.sb._assoc_def(portal, frm, to, type_id)
            item = {"category": cat, "typeId": type_id}
            if d and d["label"]:
                item["label"] = d["label"]
            out.append(item)
        return out

    def assoc_batch_create(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, True)
        started = _iso(self.sb.now())
        results, errors = [], []
        for inp in self._inputs(ctx):
            fid, tid = str(inp["from"]["id"]), str(inp["to"]["id"])
            if not self._exists(ctx, frm, fid) or not self._exists(ctx, to, tid):
                errors.append(
                    _std_error(
                        "error",
                        "OBJECT_NOT_FOUND",
                        f"No {from_type} {fid} or {to_type} {tid} found",
                        {"fromObjectId": [fid], "toObjectId": [tid]},
                    )
                )
                continue
            labels = self.sb._associate(ctx.portal, frm, fid, to, tid, inp.get("types") or [])
            results.append(
                {
                    "fromObjectTypeId": frm,
                    "fromObjectId": fid,
                    "toObjectTypeId": to,
                    "toObjectId": tid,
                    "labels": labels,
                }
            )
        body = {**_batch_meta(started, self.sb), "results": results}
        if errors:
            return 207, {**body, "numErrors": len(errors), "errors": errors}
        return 201, body

    def assoc_batch_default(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, True)
        started = _iso(self.sb.now())
        defs = ctx.portal.assoc_types.get((frm, to)) or []
        if not defs:
            raise ApiError(
                400, "VALIDATION_ERROR", f"No default association between {frm} and {to}"
            )
        d = defs[0]
        spec = {"associationCategory": d["category"], "associationTypeId": d["typeId"]}
        results, errors = [], []
        for inp in self._inputs(ctx):
            fid, tid = str(inp["from"]["id"]), str(inp["to"]["id"])
            if not self._exists(ctx, frm, fid) or not self._exists(ctx, to, tid):
                errors.append(
                    _std_error(
                        "error",
                        "OBJECT_NOT_FOUND",
                        "Object not found",
                        {"fromObjectId": [fid], "toObjectId": [tid]},
                    )
                )
                continue
            self.sb._associate(ctx.portal, frm, fid, to, tid, [spec])
            results.append({"from": {"id": fid}, "to": {"id": tid}, "associationSpec": spec})
        body = {**_batch_meta(started, self.sb), "results": results}
        if errors:
            body.update(numErrors=len(errors), errors=errors)
        return 200, body

    def assoc_batch_read(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, False)
        started = _iso(self.sb.now())
        results = []
        for inp in self._inputs(ctx):
            fid = str(inp.get("id"))
            links = ctx.portal.assocs.get((frm, fid, to), {})
            results.append(
                {
                    "from": {"id": fid},
                    "to": [
                        {
                            "toObjectId": tid,
                            "associationTypes": self._labels_out(ctx.portal, frm, to, fid, tid),
                        }
                        for tid in sorted(links, key=int)
                        if links[tid]
                    ],
                }
            )
        return 200, {**_batch_meta(started, self.sb), "results": results}

    def assoc_batch_archive(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, True)
        for inp in self._inputs(ctx):
            fid = str(inp["from"]["id"])
            for t in inp.get("to") or []:
                self._unlink(ctx.portal, frm, fid, to, str(t["id"]))
        return 204, None

    def assoc_batch_labels_archive(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, True)
        portal = ctx.portal
        for inp in self._inputs(ctx):
            fid, tid = str(inp["from"]["id"]), str(inp["to"]["id"])
            for spec in inp.get("types") or []:
                d = self.sb._assoc_def(portal, frm, to, spec.get("associationTypeId"))
                key = (spec.get("associationCategory"), spec.get("associationTypeId"))
                portal.assocs.get((frm, fid, to), {}).get(tid, set()).discard(key)
                if d:
                    portal.assocs.get((to, tid, frm), {}).get(fid, set()).discard(
                        (key[0], d["inverse"])
                    )
        return 204, None

    def _unlink(self, portal: Portal, frm: str, fid: str, to: str, tid: str) -> None:
        portal.assocs.get((frm, fid, to), {}).pop(tid, None)
        portal.assocs.get((to, tid, frm), {}).pop(fid, None)

    def assoc_list(self, ctx: _Ctx, object_type: str, object_id: str, to_type: str):
        frm, to = self._pair(ctx, object_type, to_type, False)
        if not self._exists(ctx, frm, object_id):
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        limit = self._limit(ctx, 500, 500)
        after = ctx.request.args.get("after")
        links = ctx.portal.assocs.get((frm, str(object_id), to), {})
        ids = sorted((t for t in links if links[t]), key=int)
        if after and after.isdigit():
            ids = [t for t in ids if int(t) > int(after)]
        page = ids[:limit]
        body = {
            "results": [
                {
                    "toObjectId": t,
                    "associationTypes": self._labels_out(ctx.portal, frm, to, str(object_id), t),
                }
                for t in page
            ]
        }
        if len(ids) > limit:
            body["paging"] = {"next": {"after": page[-1]}}
        return 200, body

    def assoc_put(self, ctx: _Ctx, object_type: str, object_id: str, to_type: str, to_id: str):
        frm, to = self._pair(ctx, object_type, to_type, True)
        if not self._exists(ctx, frm, object_id) or not self._exists(ctx, to, to_id):
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        types = ctx.json if isinstance(ctx.json, list) else []
        labels = self.sb._associate(ctx.portal, frm, str(object_id), to, str(to_id), types)
        return 201, {
            "fromObjectTypeId": frm,
            "fromObjectId": str(object_id),
            "toObjectTypeId": to,
            "toObjectId": str(to_id),
            "labels": labels,
        }

    def assoc_put_default(
        self, ctx: _Ctx, object_type: str, object_id: str, to_type: str, to_id: str
    ):
        frm, to = self._pair(ctx, object_type, to_type, True)
        if not self._exists(ctx, frm, object_id) or not self._exists(ctx, to, to_id):
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        started = _iso(self.sb.now())
        defs = ctx.portal.assoc_types.get((frm, to)) or []
        if not defs:
            raise ApiError(
                400, "VALIDATION_ERROR", f"No default association between {frm} and {to}"
            )
        spec = {"associationCategory": defs[0]["category"], "associationTypeId": defs[0]["typeId"]}
        self.sb._associate(ctx.portal, frm, str(object_id), to, str(to_id), [spec])
        return 200, {
            **_batch_meta(started, self.sb),
            "results": [
                {"from": {"id": str(object_id)}, "to": {"id": str(to_id)}, "associationSpec": spec}
            ],
        }

    def assoc_delete(self, ctx: _Ctx, object_type: str, object_id: str, to_type: str, to_id: str):
        frm, to = self._pair(ctx, object_type, to_type, True)
        self._unlink(ctx.portal, frm, str(object_id), to, str(to_id))
        return 204, None

    def labels_list(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, False)
        return 200, {
            "results": [
                {
                    "category": d["category"],
                    "typeId": d["typeId"],
                    **({"label": d["label"]} if d["label"] else {}),
                }
                for d in ctx.portal.assoc_types.get((frm, to), [])
            ]
        }

    def label_create(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, True)
        body = ctx.json
        if not body.get("label") or not body.get("name"):
            raise ApiError(400, "VALIDATION_ERROR", "label and name are required")
        if any(d["name"] == body["name"] for d in ctx.portal.assoc_types.get((frm, to), [])):
            raise ApiError(
                409,
                "OBJECT_ALREADY_EXISTS",
                f"An association label named {body['name']!r} already exists",
            )
        fwd, inv = self.sb._define_assoc(
            ctx.portal, frm, to, "USER_DEFINED", body["label"], body["name"]
        )
        if frm != to and body.get("inverseLabel"):
            for d in ctx.portal.assoc_types[(to, frm)]:
                if d["typeId"] == inv:
                    d["label"] = body["inverseLabel"]
        results = [{"category": "USER_DEFINED", "typeId": fwd, "label": body["label"]}]
        if inv != fwd:
            results.append(
                {
                    "category": "USER_DEFINED",
                    "typeId": inv,
                    "label": body.get("inverseLabel") or body["label"],
                }
            )
        return 200, {"results": results}

    def label_update(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, True)
        body = ctx.json
        d = self.sb._assoc_def(ctx.portal, frm, to, body.get("associationTypeId"))
        if d is None or d["category"] != "USER_DEFINED":
            raise ApiError(404, "OBJECT_NOT_FOUND", "association type not found")
        d["label"] = body.get("label")
        return 204, None

    def label_delete(self, ctx: _Ctx, from_type: str, to_type: str, type_id: int):
        frm, to = self._pair(ctx, from_type, to_type, True)
        defs = ctx.portal.assoc_types.get((frm, to), [])
        d = next(
            (x for x in defs if x["typeId"] == type_id and x["category"] == "USER_DEFINED"), None
        )
        if d is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", "association type not found")
        defs.remove(d)
        inv = ctx.portal.assoc_types.get((to, frm), [])
        inv[:] = [x for x in inv if x["typeId"] != d["inverse"]]
        return 204, None

    # ---- pipelines -----------------------------------------------------------------------
    def _pipes(self, ctx: _Ctx, object_type: str) -> dict:
        tid = self.sb._resolve(ctx.portal, object_type)
        if tid != "0-3":
            if tid is None:
                raise ApiError(
                    400, "VALIDATION_ERROR", f"Unable to infer object type from: {object_type}"
                )
            return ctx.portal.pipelines.get(tid, {})
        self._need(
            ctx, "crm.objects.deals.read", "crm.schemas.deals.read", "crm.objects.deals.write"
        )
        return ctx.portal.pipelines["0-3"]

    def pipelines_list(self, ctx: _Ctx, object_type: str):
        return 200, {"results": list(self._pipes(ctx, object_type).values())}

    def _pipe(self, ctx: _Ctx, object_type: str, pipeline_id: str) -> dict:
        p = self._pipes(ctx, object_type).get(pipeline_id)
        if p is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find pipeline {pipeline_id}")
        return p

    def pipeline_get(self, ctx: _Ctx, object_type: str, pipeline_id: str):
        return 200, self._pipe(ctx, object_type, pipeline_id)

    def stages_list(self, ctx: _Ctx, object_type: str, pipeline_id: str):
        return 200, {"results": self._pipe(ctx, object_type, pipeline_id)["stages"]}

    def stage_get(self, ctx: _Ctx, object_type: str, pipeline_id: str, stage_id: str):
        s = next(
            (s for s in self._pipe(ctx, object_type, pipeline_id)["stages"] if s["id"] == stage_id),
            None,
        )
        if s is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find stage {stage_id}")
        return 200, s


# --------------------------------------------------------------------------------------------
# server


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the sandbox's logger at DEBUG, not werkzeug's at INFO."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, self.path, code)


class SandboxServer:
    """A running sandbox: `.url` (e.g. http://127.0.0.1:54321), `.shutdown()`; a context manager."""

    def __init__(self, sandbox: HubSpotSandbox, host: str, port: int, ssl_context=None) -> None:
        self.sandbox = sandbox
        self._server = make_server(
            host,
            port,
            create_app(sandbox),
            threaded=True,
            ssl_context=ssl_context,
            request_handler=_QuietHandler,
        )
        self.host = host
        self.port = self._server.server_port
        scheme = "https" if ssl_context else "http"
        shown = "localhost" if ssl_context and host in ("127.0.0.1", "localhost") else host
        self.url = f"{scheme}://{shown}:{self.port}"
        sandbox.base_url = self.url
        sandbox._stop.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),
            name=f"hubspot-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def shutdown(self) -> None:
        self.sandbox._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def serve(
    sandbox: HubSpotSandbox, host: str = "127.0.0.1", port: int = 0, ssl_context=None
) -> SandboxServer:
    """Start the sandbox on a daemon thread; port 0 picks a free port.

    `ssl_context` is passed to werkzeug (an `ssl.SSLContext` or a (cert, key) tuple), e.g. from
    trustme; with TLS the URL uses the host name `localhost`, so the certificate must cover it.
    """
    return SandboxServer(sandbox, host, port, ssl_context)


def main(argv: list[str] | None = None) -> None:
    """`python -m connector.sandbox.hubspot [--host H] [--port P] [--contract strict|warn|off]`.

    Seeds an app whose client id / secret / app id come from HUBSPOT_CLIENT_ID,
    HUBSPOT_CLIENT_SECRET and HUBSPOT_APP_ID (defaults sandbox-client-id, sandbox-client-secret,
    1000001), an Enterprise portal 100001 and a Professional portal 100002, each with the default
    pipeline and two demo deals. Deal events (rep moves on the home page, API writes) are POSTed
    to HUBSPOT_SANDBOX_WEBHOOK_URL when it is set; the port defaults to HUBSPOT_SANDBOX_PORT or
    8765.
    """
    ap = argparse.ArgumentParser(description="Local HubSpot emulator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("HUBSPOT_SANDBOX_PORT", "8765")))
    ap.add_argument("--contract", default="warn", choices=["strict", "warn", "off"])
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sb = HubSpotSandbox(seed=False, contract=args.contract)
    sb.add_app(
        app_id=int(os.environ.get("HUBSPOT_APP_ID") or 1000001),
        client_id=os.environ.get("HUBSPOT_CLIENT_ID") or "sandbox-client-id",
        client_secret=os.environ.get("HUBSPOT_CLIENT_SECRET") or "sandbox-client-secret",
    )
    sb.add_portal(portal_id=100001, tier="enterprise", name="Acme Enterprise (sandbox)")
    sb.add_portal(portal_id=100002, tier="professional", name="Globex Pro (sandbox)")
    sb.webhook_target_url = os.environ.get("HUBSPOT_SANDBOX_WEBHOOK_URL") or None
    server = serve(sb, args.host, args.port)
    print(f"HubSpot sandbox on {server.url} (HUBSPOT_API_BASE and HUBSPOT_AUTH_BASE)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
