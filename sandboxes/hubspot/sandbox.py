"""The HubSpot sandbox's state: portals, apps, tokens, CRM records and their rules."""

from __future__ import annotations

import collections
import datetime as _dt
import itertools
import json
import logging
import re
import secrets
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..kit import CallLog, FaultQueue, SandboxClock
from .contract import (
    _WARNED,
    ContractChecker,
    SpecsMissing,
)
from .webhooks import (
    DEFAULT_WEBHOOK_SUBSCRIPTIONS,
    Delivery,
    WebhookSender,
    _json_dumps,
)

log = logging.getLogger("sandboxes.hubspot")


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
    # Notes (engagements): writes need crm.objects.contacts.write, as the notes spec's
    # security says (PublicApiSpecs/CRM/Notes/Rollouts/424/v3/notes.json).
    "0-46": (
        "notes",
        "note",
        "contacts",
        ["hs_createdate", "hs_lastmodifieddate", "hs_object_id", "hs_timestamp"],
        "hs_createdate",
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
# Note to deal is 214, deal to note 213 ("Association type ID values",
# https://developers.hubspot.com/docs/api-reference/crm-associations-v4/guide#association-type-id-values).
STANDARD_ASSOCIATIONS = (("0-3", "0-1", 3, 4), ("0-3", "0-2", 341, 342), ("0-5", "0-3", 28, 27),
                         ("0-46", "0-3", 214, 213))


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
# state


@dataclass
class App:
    app_id: int
    client_id: str
    client_secret: str
    name: str = "MutualPlan (sandbox)"
    redirect_uris: tuple[str, ...] = ()
    developer_api_key: str = "sandbox-developer-key"  # `?hapikey=` of the app's developer account


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
    installed_apps: set[int] = field(default_factory=set)
    # (type id, record id) -> the associations an archive removed, put back by a restore
    archived_assocs: dict[tuple[str, str], list[tuple[str, str, set, set]]] = field(
        default_factory=dict
    )

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


class HubSpotSandbox(WebhookSender):
    """In-memory HubSpot: portals, apps, tokens, CRM data, call log, faults, webhook sender."""

    def __init__(
        self,
        *,
        seed: bool = True,
        contract: str = "strict",
        specs_dir: str | Path | None = None,
        clock: SandboxClock | None = None,
        rate_limits: bool = True,
        v1_oauth: bool = True,
    ) -> None:
        """`v1_oauth=False` makes every /oauth/v1/ call answer as after HubSpot removes the
        v1 OAuth API on 2027-02-16 (404, recorded in `v1_oauth_calls`); the default keeps v1
        working, as it does on HubSpot until then."""
        if contract not in ("strict", "warn", "off"):
            raise ValueError("contract must be 'strict', 'warn' or 'off'")
        self.clock = clock or SandboxClock()
        self.lock = threading.RLock()
        self.portals: dict[int, Portal] = {}
        self.apps: dict[int, App] = {}
        self.tokens: dict[str, _Token] = {}
        self.codes: dict[str, dict] = {}
        self.faults = FaultQueue(FAULTS)
        self.call_log = CallLog()  # per portal id
        self.events: list[dict] = []
        # Timeline: app id -> template id -> template; portal id -> (template id, event id) -> event
        self.event_templates: dict[int, dict[str, dict]] = {}
        self.timeline_events: dict[int, dict[tuple[str, str], dict]] = {}
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
        if self.contract is not None and not self.contract.enabled and contract == "strict":
            raise SpecsMissing(
                f"HubSpot sandbox: contract checks cannot run ({self.contract.reason}); "
                "strict mode never passes unchecked (use contract='warn' or 'off' on purpose)"
            )
        if (
            self.contract is not None
            and not self.contract.enabled
            and self.contract.reason not in _WARNED
        ):
            _WARNED.add(self.contract.reason)
            log.warning("HubSpot sandbox: contract checks are OFF (%s)", self.contract.reason)
        self.v1_oauth = v1_oauth
        self.v1_oauth_calls: list[dict] = []
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
            "0-46": [
                ("hs_note_body", "Note body", "string", "html"),
                ("hs_timestamp", "Activity date", "datetime", "date"),
                ("hs_createdate", "Create date", "datetime", "date"),
                ("hs_lastmodifieddate", "Last modified date", "datetime", "date"),
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
            # Demo deals start at the pipeline's first open stage, so completing the first
            # stage-gate milestone visibly moves the deal (issue 11, "the demo").
            now = self.now()
            stage = self.first_open_stage(portal.portal_id)
            for name, amount in (
                ("Acme - Platform rollout", "48000"),
                ("Acme - Expansion", "12500"),
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

    def first_open_stage(self, portal_id: int, pipeline_id: str = "default") -> str:
        """The id of the first stage (by displayOrder) whose metadata.isClosed is "false"."""
        with self.lock:
            pipe = self.portals[portal_id].pipelines["0-3"][pipeline_id]
            stages = sorted(pipe["stages"], key=lambda st: st["displayOrder"])
            return next(st["id"] for st in stages if st["metadata"]["isClosed"] != "true")

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
        self.faults.add(fault, times, path_contains, method)

    def clear_faults(self) -> None:
        self.faults.clear()

    # ---- call log -----------------------------------------------------------------------
    def deal_timeline(self, portal_id: int, deal_id: str) -> list[dict]:
        """What the deal's timeline shows from apps: timeline events (with their template's
        name) and associated notes, oldest first."""
        with self.lock:
            portal = self.portals[portal_id]
            names = {tid: t["name"] for ts in self.event_templates.values() for tid, t in ts.items()}
            out = [{"type": "event", "template": names.get(e["eventTemplateId"], ""),
                    "timestamp": e["timestamp"], "tokens": dict(e["tokens"]), "id": e["id"]}
                   for e in self.timeline_events.get(portal_id, {}).values()
                   if e["objectType"] == "DEAL" and e["objectId"] == str(deal_id)]
            for note_id in portal.assocs.get(("0-3", str(deal_id), "0-46"), {}):
                note = portal.objects["0-46"].get(note_id)
                if note and not note["archived"]:
                    out.append({"type": "note", "timestamp": note["properties"].get("hs_timestamp", ""),
                                "body": note["properties"].get("hs_note_body", ""), "id": note_id})
            return sorted(out, key=lambda x: str(x["timestamp"]))

    def calls(self, portal_id: int) -> list[dict]:
        """Each API call for the portal: method, path, endpoint (template), status, at (s)."""
        return self.call_log.entries(portal_id)

    def call_counts(self, portal_id: int) -> dict[str, int]:
        """Counts by endpoint, e.g. {"PATCH /crm/v3/objects/{object_type}/{object_id}": 2}."""
        return dict(self.call_log.counts(portal_id))

    def reset_calls(self, portal_id: int | None = None) -> None:
        self.call_log.reset(portal_id)

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
            pipeline = properties.get("pipeline", "default")
            props = {
                "pipeline": pipeline,
                "dealstage": self.first_open_stage(portal_id, pipeline),
                **properties,
            }
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
        """A rep deletes the deal in HubSpot's UI: it goes to the recycle bin (archived, still
        listed with `?archived=true`, restorable with `restore_deal`) and `deal.deletion` is
        recorded."""
        with self.lock:
            portal = self.portals[portal_id]
            rec = portal.objects["0-3"][str(deal_id)]
            self._archive(portal, "0-3", rec)
            return self._deal_events(portal, rec["id"], None, None, "CRM_UI", deleted=True)

    def restore_deal(
        self, portal_id: int, deal_id: str, *, user_id: int | None = None
    ) -> list[dict]:
        """A user restores a deleted deal from HubSpot's recycle bin.

        "You can use the restore records tool to restore ... records ... up to 90 days after
        they were deleted" (https://knowledge.hubspot.com/records/restore-deleted-records). The
        deal is un-archived with its property values, hs_lastmodifieddate moves, and HubSpot's
        `deal.restore` webhook event is recorded ("Restore: When an object is restored
        (opposite of delete)"; "No new payload properties were added for restore":
        https://developers.hubspot.com/changelog/new-subscription-types-for-webhooks; the
        type is in the webhooks v3 spec's subscription enum). It is delivered only if
        `webhook_subscriptions` contains ("deal.restore", None), as HubSpot delivers only
        subscribed types; `drain_events(all_types=True)` shows it either way. Its associations
        come back too (*emulator choice*: the knowledge base says restored contacts get their
        activities back; it says nothing explicit about associations).
        """
        return self.restore_record(portal_id, "0-3", deal_id, user_id=user_id)

    def restore_record(
        self, portal_id: int, object_type: str, object_id: str, *, user_id: int | None = None
    ) -> list[dict]:
        """Restore any archived record (deal, custom object) as a user would from the recycle
        bin; see `restore_deal`. Returns the webhook events recorded (deals only; custom-object
        events do not reach a public app's webhooks). 409 CONFLICT if an active record holds
        the same unique value (the knowledge base's rule for contacts' emails)."""
        with self.lock:
            portal = self.portals[portal_id]
            tid = self._resolve(portal, object_type)
            rec = portal.objects.get(tid, {}).get(str(object_id)) if tid else None
            if rec is None or not rec["archived"]:
                raise KeyError(f"{object_type} {object_id} is not in the recycle bin")
            self._unarchive(portal, tid, rec)
            if tid != "0-3":
                return []
            uid, _ = self._user(portal, user_id or portal.users[-1][0])
            return self._deal_events(
                portal, rec["id"], None, None, "CRM_UI", restored=True,
                source_id=f"userId:{uid}",
            )

    def ui_delete(self, portal_id: int, object_type: str, object_id: str) -> None:
        """A user deletes a record (e.g. a plan or milestone) in HubSpot's UI: archived, into
        the recycle bin, no webhook (custom-object events do not reach public apps)."""
        with self.lock:
            portal = self.portals[portal_id]
            tid = self._resolve(portal, object_type)
            rec = portal.objects.get(tid, {}).get(str(object_id)) if tid else None
            if rec is None or rec["archived"]:
                raise KeyError(f"{object_type} {object_id} not found")
            self._archive(portal, tid, rec)

    def ui_create_record(
        self,
        portal_id: int,
        object_type: str,
        properties: dict[str, str],
        *,
        associations: Iterable[tuple[str, str]] = (),
    ) -> dict:
        """A user creates a record (e.g. a plan or milestone) in HubSpot's UI: no UUID of ours
        unless the user types one, associated to the given (object type, id) records with the
        first association type defined between the pair (the one the record page's
        association card uses), no webhook.

        Like the UI's create form, it enforces the schema's `requiredProperties` ("The names of
        properties that should be required when creating an object of this type", the
        `ObjectSchemaEgg` in the schemas v3 spec), unique values and property validation. So a
        schema that lists our UUID property as required makes this fail: a UI user would have
        to invent a UUID.
        """
        with self.lock:
            portal = self.portals[portal_id]
            tid = self._resolve(portal, object_type)
            if tid is None:
                raise KeyError(f"unknown object type {object_type}")
            clean, errors = self._check_values(portal, tid, dict(properties))
            errors += self._check_pipeline(portal, tid, None, clean)
            if tid in portal.schemas:
                errors += [
                    {"isValid": False, "message": f"{n} is required", "error": "REQUIRED",
                     "name": n}
                    for n in portal.schemas[tid]["requiredProperties"]
                    if not clean.get(n)
                ]
            targets = []
            for to_type, to_id in associations:
                to = self._resolve(portal, to_type)
                target = portal.objects.get(to or "", {}).get(str(to_id))
                defs = portal.assoc_types.get((tid, to or ""), [])
                if target is None or target["archived"] or not defs:
                    raise KeyError(f"cannot associate to {to_type} {to_id}")
                targets.append((to, str(to_id), defs[0]))
            if errors:
                raise _prop_error(errors)
            self._check_unique(portal, tid, None, clean)
            rec = self._insert(portal, tid, clean, self.now())
            for to, to_id, d in targets:
                self._associate(
                    portal, tid, rec["id"], to, to_id,
                    [{"associationCategory": d["category"], "associationTypeId": d["typeId"]}],
                )
            if tid == "0-3":
                self._deal_events(portal, rec["id"], None, clean, "CRM_UI", created=True)
            return json.loads(json.dumps(rec))

    def upgrade_portal(self, portal_id: int, tier: str = "enterprise") -> Portal:
        """The account changes subscription (e.g. buys an Enterprise hub): custom objects
        become available ("Requires one of the following products or higher: ...
        Enterprise", https://developers.hubspot.com/crm-custom-objects). Tokens keep the scopes
        they were granted: optional custom-object scopes dropped at install (the account could
        not have them) need a new authorization (consent page, `authorize`, or `issue_tokens`)
        before schema calls succeed. A downgrade keeps existing schemas and records (*emulator
        choice*) but new schema creates answer 403."""
        with self.lock:
            portal = self.portals[portal_id]
            portal.tier = tier
            return portal

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
        stash = portal.archived_assocs.setdefault((tid, rec["id"]), [])
        for (f, fid, t), links in list(portal.assocs.items()):
            if f == tid and fid == rec["id"]:
                for to_id, types in links.items():
                    back = portal.assocs.get((t, to_id, f), {}).pop(rec["id"], None)
                    stash.append((t, to_id, set(types), set(back or ())))
                links.clear()

    def _unarchive(self, portal: Portal, tid: str, rec: dict) -> None:
        """Restore from the recycle bin: the record and the associations it had come back."""
        defs = portal.properties.get(tid, {})
        for name, value in rec["properties"].items():
            if value and defs.get(name, {}).get("hasUniqueValue"):
                for other in portal.objects[tid].values():
                    if not other["archived"] and other["properties"].get(name) == value:
                        raise ApiError(
                            409,
                            "CONFLICT",
                            f"Cannot restore {rec['id']}: an active record ({other['id']}) has "
                            f"the same {name} {value!r}",
                        )
        rec["archived"] = False
        rec.pop("archivedAt", None)
        ts = self.now()
        _scope, _d, _c, modified = self._type_info(portal, tid)
        rec["properties"][modified] = _iso(ts)
        rec["updatedAt"] = _iso(ts)
        for to, to_id, types, back in portal.archived_assocs.pop((tid, rec["id"]), []):
            target = portal.objects.get(to, {}).get(to_id)
            if target is None or target["archived"]:
                continue
            portal.assocs.setdefault((tid, rec["id"], to), {}).setdefault(to_id, set()).update(
                types
            )
            portal.assocs.setdefault((to, to_id, tid), {}).setdefault(rec["id"], set()).update(
                back
            )

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


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    if body is None:
        return Response(status=status, headers=headers or {})
    return Response(
        _json_dumps(body),
        status=status,
        headers=headers or {},
        content_type="application/json;charset=utf-8",
    )


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


class HandlerBase:
    """What every API-area handler mixin uses: scopes, object types, records, inputs."""

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

    @staticmethod
    def _archived_arg(ctx: _Ctx) -> bool:
        """The boolean `archived` query parameter (typed boolean in HubSpot's specs).
        hubspot-api-client 12 sends Python's `str(True)`, i.e. `archived=True`, and its
        `archived=True` is how the SDK lists the recycle bin, so the value is read
        case-insensitively; anything but true/false is a 400."""
        raw = ctx.request.args.get("archived", "false").strip().lower()
        if raw not in ("true", "false"):
            raise ApiError(400, "VALIDATION_ERROR", f"archived must be true or false, got {raw!r}")
        return raw == "true"

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

