"""The Salesforce sandbox's state: orgs, users, connected apps, sessions, records and their rules."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import secrets
import threading
import warnings
import xml.etree.ElementTree as ET
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Response

from ..kit import CallLog, Fault, FaultQueue, SandboxClock
from .schema import (
    _F,
    _NUMERIC,
    DEFAULT_PACKAGE_OBJECTS,
    REPO_PACKAGE_SOURCE,
    _Field,
    _mk,
    _soql_type_name,
    _standard_types,
    _SType,
    _system_fields,
    load_package_schema,
    record_type_field,
)

Clock = SandboxClock  # the name callers and tests know: Clock(start=...) starts frozen

MIN_API_VERSION = 31
DEFAULT_LATEST_API_VERSION = "66.0"
DAILY_API_LIMIT = 15000          # Developer Edition allocation; configurable per sandbox and org
SESSION_TIMEOUT = 2 * 3600       # seconds of inactivity (Salesforce default session timeout)
AUTH_CODE_TTL = 15 * 60
QUERY_LOCATOR_TTL = 15 * 60
MAX_BATCH = 2000
FAULT_KINDS = ("500", "503", "timeout", "invalid_session", "request_limit",
               "composite_partial", "unable_to_lock_row")

# --------------------------------------------------------------------------------------------
# ids
# --------------------------------------------------------------------------------------------
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")


def _b62(n: int, width: int) -> str:
    s = ""
    while n:
        n, r = divmod(n, 62)
        s = _B62[r] + s
    return s.rjust(width, "0")[-width:]


def id18(id15: str) -> str:
    """15-char Salesforce id -> 18-char (case-safe checksum suffix)."""
    suffix = ""
    for i in range(3):
        n = 0
        for j, c in enumerate(id15[i * 5:(i + 1) * 5]):
            if "A" <= c <= "Z":
                n |= 1 << j
        suffix += _SUFFIX[n]
    return id15[:15] + suffix


def normalize_id(value: Any) -> str | None:
    """Return the canonical 18-char id for a 15/18-char id, or None if malformed."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        return None
    full = id18(value[:15])
    if len(value) == 18 and value[15:].upper() != full[15:]:
        return None
    return full




class ApiError(Exception):
    """An error answered by the REST API: ``[{"message", "errorCode", "fields"?}]``."""

    def __init__(self, status: int, code: str, message: str, fields: list | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.fields = status, code, message, fields

    def body(self) -> list:
        item: dict = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


class _OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(error)
        self.error, self.description, self.status = error, description, status


@dataclass
class Stage:
    label: str
    is_closed: bool = False
    is_won: bool = False
    default_probability: float = 0.0
    forecast_category: str = "Pipeline"
    is_active: bool = True
    api_name: str = ""
    id: str = ""
    sort_order: int = 0


DEFAULT_STAGES = (
    ("Prospecting", False, False, 10, "Pipeline"),
    ("Qualification", False, False, 10, "Pipeline"),
    ("Needs Analysis", False, False, 20, "Pipeline"),
    ("Value Proposition", False, False, 50, "Pipeline"),
    ("Id. Decision Makers", False, False, 60, "Pipeline"),
    ("Perception Analysis", False, False, 70, "Pipeline"),
    ("Proposal/Price Quote", False, False, 75, "Pipeline"),
    ("Negotiation/Review", False, False, 90, "Pipeline"),
    ("Closed Won", True, True, 100, "Closed"),
    ("Closed Lost", True, False, 0, "Omitted"),
)


@dataclass
class SalesProcess:
    id: str
    name: str
    stages: list


@dataclass
class RecordType:
    id: str
    name: str
    developer_name: str
    sobject_type: str
    sales_process: str | None = None     # SalesProcess name (Opportunity)
    is_active: bool = True


@dataclass
class User:
    id: str
    username: str
    name: str
    email: str
    is_admin: bool = True
    can_approve_uninstalled_apps: bool | None = None   # None -> is_admin
    active: bool = True
    timezone: str = "America/Los_Angeles"
    locale: str = "en_US"
    language: str = "en_US"


@dataclass
class ConnectedApp:
    """OAuth client (External Client App). Empty ``redirect_uris`` accepts any (dev only)."""
    client_id: str
    client_secret: str
    redirect_uris: list = field(default_factory=list)
    rotate_refresh_tokens: bool = False
    require_pkce: bool = True
    require_secret: bool = True            # for web-server and refresh-token flows
    name: str = "MutualPlan"
    scopes: tuple = ("api", "refresh_token", "id")


@dataclass
class _Session:
    token: str
    org_id: str
    user_id: str
    client_id: str
    scope: str
    issued_at: datetime
    last_used: datetime
    refresh_token: str | None = None
    revoked: bool = False


@dataclass
class _RefreshToken:
    token: str
    org_id: str
    user_id: str
    client_id: str
    scope: str
    created_at: datetime
    revoked: bool = False


@dataclass
class _AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    org_id: str
    user_id: str
    scope: str
    challenge: str | None
    expires_at: datetime
    used: bool = False



@dataclass
class CallRecord:
    at: datetime
    method: str
    path: str
    endpoint: str        # normalised, e.g. "GET /services/data/vXX.X/sobjects/{type}/{id}"
    status: int
    org_id: str | None



# --------------------------------------------------------------------------------------------
# org
# --------------------------------------------------------------------------------------------
class Org:
    """One Salesforce org. Created by ``SalesforceSandbox.add_org``."""

    def __init__(self, sandbox: SalesforceSandbox, index: int, name: str, my_domain: str,
                 is_sandbox: bool, sandbox_name: str, edition: str):
        self.sandbox = sandbox
        self.index = index
        self.pod = _b62(100 + index * 7, 2)
        self.id = id18("00D" + self.pod + "0" + _b62(index, 9))
        self.name = name
        self.my_domain = my_domain
        self.is_sandbox = is_sandbox
        self.sandbox_name = sandbox_name
        self.edition = edition
        self.users: dict = {}
        self.stages: list = []
        self.sales_processes: dict = {}
        self.record_types: dict = {}
        self.package_installed = False
        self.namespace: str | None = None
        self.daily_api_limit: int = sandbox.daily_api_limit
        self.session_timeout: float = SESSION_TIMEOUT
        self.instance_url: str | None = None      # None -> the URL the request came to
        self.api_calls: deque = deque()
        self.schema: dict = {}
        self.records: dict = {}                      # lower type -> {id18: record}
        self.package_key_prefixes: dict = {}
        self._journal: list | None = None
        self._last_stamp: datetime | None = None

    # -- convenience --------------------------------------------------------------------------
    @property
    def my_domain_host(self) -> str:
        if self.is_sandbox:
            return f"{self.my_domain}--{self.sandbox_name}.sandbox.my.salesforce.com"
        return f"{self.my_domain}.my.salesforce.com"

    @property
    def admin(self) -> User:
        return next(u for u in self.users.values() if u.is_admin)

    def qualified(self, name: str) -> str:
        """Apply the package namespace to a package object/field name (no-op without one)."""
        if self.namespace and name.endswith(("__c", "__r")) and name.count("__") == 1:
            return f"{self.namespace}__{name}"
        return name

    def api_usage(self) -> int:
        cutoff = self.sandbox.clock.now() - timedelta(hours=24)
        while self.api_calls and self.api_calls[0] < cutoff:
            self.api_calls.popleft()
        return len(self.api_calls)

    def stage(self, label: str) -> Stage | None:
        for s in self.stages:
            if s.label == label:
                return s
        return None

    def stype(self, name: str, default_ns: str | None = None) -> _SType | None:
        st = self.schema.get(name.lower())
        if st is None and default_ns and "__" in name and name.count("__") == 1:
            st = self.schema.get(f"{default_ns}__{name}".lower())
        return st


# --------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------
def _fmt_dt(d: datetime) -> str:
    return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


_DT_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")


def _parse_dt(s: str) -> datetime | None:
    m = _DT_RE.match(s.strip()) if isinstance(s, str) else None
    if not m:
        return None
    y, mo, d, h, mi, se, tz = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(se), tzinfo=UTC)
    except ValueError:
        return None
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        tz = tz[1:].replace(":", "")
        dt -= sign * timedelta(hours=int(tz[:2]), minutes=int(tz[2:]))
    return dt


def _parse_date(s: Any) -> str | None:
    if not isinstance(s, str) or not re.match(r"^\d{4}-\d{2}-\d{2}$", s):
        return None
    try:
        date.fromisoformat(s)
    except ValueError:
        return None
    return s


def _out(value: Any, f: _Field | None) -> Any:
    if isinstance(value, datetime):
        return _fmt_dt(value)
    return value






class SalesforceSandbox:
    """All emulator state. Thread-safe (one lock). See the module docstring."""

    def __init__(self, clock: SandboxClock | None = None, daily_api_limit: int = DAILY_API_LIMIT,
                 latest_api_version: str = DEFAULT_LATEST_API_VERSION,
                 query_batch_size: int = MAX_BATCH, package_source: str | None = "auto",
                 timeout_delay: float = 2.0, call_log_size: int = 100_000,
                 legacy_record_type_column: bool = False,
                 legacy_updateable_master_detail: bool = False):
        """Two switches bring back an old relaxation (True); both default to the strict, real
        behaviour (False), which connector/salesforce.py follows:

        ``legacy_record_type_column`` - every org's Opportunity has a ``RecordTypeId`` column.
        Real orgs have it only once a record type is defined for the object (observed in real
        orgs, issue 11 and DESIGN.md section 5; the Object Reference lists RecordTypeId without
        saying so, and no Salesforce page found states it outright). With False, an org added
        without
        ``record_types=True`` has no such column: describe lists no ``RecordTypeId`` and SOQL
        selecting it answers 400 INVALID_FIELD "No such column 'RecordTypeId' on entity
        'Opportunity'".

        ``legacy_updateable_master_detail`` - a master-detail field is updateable although the
        relationship is not reparentable. With False, such a field (``reparentableMasterDetail``
        false, the default in the package's ``Plan__c``) is describe ``createable: true,
        updateable: false`` and an update that sets it, including an upsert (sObject Rows by
        external id, Composite, sObject Collections) that matches an existing record, answers
        400 INVALID_FIELD_FOR_INSERT_UPDATE. Sources: "By default, records can't be reparented
        in master-detail relationships" (Salesforce Help, "Considerations for Relationships",
        https://help.salesforce.com/s/articleView?id=sf.relationships_considerations.htm);
        Metadata API ``CustomField.reparentableMasterDetail`` "Indicates whether the child
        records in a master-detail relationship on a custom object can be reparented to
        different parent records. The default value is false."
        (https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/customfield.htm);
        a field whose describe says ``updateable: false`` is refused with
        INVALID_FIELD_FOR_INSERT_UPDATE "Unable to create/update fields: ... Please check the
        security settings of this field" (SOAP API Developer Guide, "Field Properties" and
        "StatusCode", https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_concepts_core_data_objects.htm).
        """
        self.legacy_record_type_column = legacy_record_type_column
        self.legacy_updateable_master_detail = legacy_updateable_master_detail
        self.clock = clock or SandboxClock()
        self.daily_api_limit = daily_api_limit
        self.latest_api_version = latest_api_version
        self.query_batch_size = query_batch_size
        self.timeout_delay = timeout_delay
        self.package_objects = DEFAULT_PACKAGE_OBJECTS
        if package_source == "auto":
            package_source = None
            if (REPO_PACKAGE_SOURCE / "objects").is_dir():
                try:
                    self.package_objects = load_package_schema(str(REPO_PACKAGE_SOURCE))
                    package_source = str(REPO_PACKAGE_SOURCE)
                except (ET.ParseError, OSError, ValueError) as exc:
                    warnings.warn(f"salesforce sandbox: cannot read {REPO_PACKAGE_SOURCE} "
                                  f"({exc}); using the built-in package schema")
        elif package_source:
            self.package_objects = load_package_schema(package_source)
        self.package_source = package_source
        self.orgs: dict = {}
        self.apps: dict = {}
        self.sessions: dict = {}
        self.refresh_tokens: dict = {}
        self.auth_codes: dict = {}
        self.calls = CallLog(maxlen=call_log_size)   # newest CallRecords, per org id
        self.faults = FaultQueue(FAULT_KINDS)
        self.auto_approve: Any = None     # (org_id, user_id) or True: authorize skips the page
        self.base_url: str | None = None   # set by serve(); used by issue_tokens()
        self.lock = threading.RLock()
        self._seq = 0
        self._cursors: dict = {}

    # ---- setup -------------------------------------------------------------------------------
    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def new_id(self, org: Org | str, prefix: str) -> str:
        org = self.org(org)
        return id18(prefix + org.pod + "0" + _b62(self._next(), 9))

    def org(self, org: Org | str) -> Org:
        if isinstance(org, Org):
            return org
        key = normalize_id(org) or org
        if key in self.orgs:
            return self.orgs[key]
        raise KeyError(f"unknown org {org!r}")

    def add_connected_app(self, client_id: str, client_secret: str,
                          redirect_uris: Iterable[str] = (), *, rotate_refresh_tokens=False,
                          require_pkce=True, require_secret=True, name="MutualPlan",
                          scopes: Iterable[str] = ("api", "refresh_token", "id")) -> ConnectedApp:
        app = ConnectedApp(client_id, client_secret, list(redirect_uris), rotate_refresh_tokens,
                           require_pkce, require_secret, name, tuple(scopes))
        self.apps[client_id] = app
        return app

    def add_org(self, name: str = "Acme", *, my_domain: str | None = None,
                is_sandbox: bool = False, sandbox_name: str = "uat",
                package_installed: bool = True, namespace: str | None = None,
                daily_api_limit: int | None = None, edition: str = "Enterprise Edition",
                stages: Iterable | None = None, admin_username: str | None = None,
                session_timeout: float = SESSION_TIMEOUT, record_types: bool = False) -> Org:
        """Add an org with an admin user and the standard sales process.

        ``record_types=False`` (a new org's default): no Opportunity record types, so (unless
        ``legacy_record_type_column``) no ``RecordTypeId`` column; ``add_record_type`` adds it
        later. ``record_types=True``: one record type "Sales" on the standard sales process.

        ``stages``: iterable of ``Stage`` or tuples ``(label, is_closed, is_won, probability,
        forecast_category)``; default: Salesforce's default stages.
        """
        with self.lock:
            index = len(self.orgs) + 1
            slug = my_domain or re.sub(r"[^a-z0-9]+", "", name.lower()) or f"org{index}"
            org = Org(self, index, name, slug, is_sandbox, sandbox_name, edition)
            org.daily_api_limit = daily_api_limit or self.daily_api_limit
            org.session_timeout = session_timeout
            self.orgs[org.id] = org
            for n, s in enumerate(stages if stages is not None else DEFAULT_STAGES):
                if not isinstance(s, Stage):
                    s = Stage(s[0], s[1], s[2], float(s[3]), s[4])
                s.id = s.id or self.new_id(org, "01J")
                s.api_name = s.api_name or s.label
                s.sort_order = n + 1
                org.stages.append(s)
            org.schema = _standard_types()
            if not self.legacy_record_type_column:
                org.schema["opportunity"].fields.pop("recordtypeid")
            self.add_sales_process(org, "Standard", [s.label for s in org.stages])
            if record_types:
                self.add_record_type(org, "Sales", "Standard")
            user = admin_username or f"admin@{slug}.example.com" + (f".{sandbox_name}"
                                                                      if is_sandbox else "")
            self.add_user(org, user, name=f"{name} Admin", is_admin=True)
            if package_installed:
                self.install_package(org, namespace)
            return org

    def add_user(self, org: Org | str, username: str, name: str = "", email: str = "",
                 is_admin: bool = False, can_approve_uninstalled_apps: bool | None = None
                 ) -> User:
        org = self.org(org)
        u = User(self.new_id(org, "005"), username, name or username.split("@")[0],
                 email or username, is_admin, can_approve_uninstalled_apps)
        org.users[u.id] = u
        return u

    def add_stage(self, org: Org | str, label: str, is_closed=False, is_won=False,
                  probability: float = 0, forecast_category: str = "Pipeline",
                  sales_processes: Iterable[str] = ("Standard",)) -> Stage:
        org = self.org(org)
        s = Stage(label, is_closed, is_won, float(probability), forecast_category,
                  id=self.new_id(org, "01J"), api_name=label, sort_order=len(org.stages) + 1)
        org.stages.append(s)
        for p in sales_processes:
            org.sales_processes[p].stages.append(label)
        return s

    def first_open_stage(self, org: Org | str, sales_process: str = "Standard") -> str:
        """The first active, open stage of a sales process (the demo's starting stage)."""
        org = self.org(org)
        for label in org.sales_processes[sales_process].stages:
            st = org.stage(label)
            if st and st.is_active and not st.is_closed:
                return label
        raise ValueError(f"sales process {sales_process!r} has no open stage")

    def deactivate_stage(self, org: Org | str, label: str) -> None:
        stage = self.org(org).stage(label)
        if stage:
            stage.is_active = False

    def add_sales_process(self, org: Org | str, name: str, stage_labels: Iterable[str]
                          ) -> SalesProcess:
        org = self.org(org)
        labels = list(stage_labels)
        for label in labels:
            if not org.stage(label):
                raise ValueError(f"unknown stage {label!r}")
        sp = SalesProcess(self.new_id(org, "019"), name, labels)
        org.sales_processes[name] = sp
        return sp

    def add_record_type(self, org: Org | str, name: str, sales_process: str,
                        sobject: str = "Opportunity") -> RecordType:
        org = self.org(org)
        rt = RecordType(self.new_id(org, "012"), name, re.sub(r"\W+", "_", name), sobject,
                        sales_process)
        org.record_types[rt.id] = rt
        st = org.schema.get(sobject.lower())
        if st is not None and "recordtypeid" not in st.fields:  # the column appears now
            st.fields["recordtypeid"] = record_type_field()
        return rt

    def install_package(self, org: Org | str, namespace: str | None = None) -> None:
        """Install "the package": creates the custom objects/fields (namespaced if given)."""
        with self.lock:
            org = self.org(org)
            org.package_installed, org.namespace = True, namespace
            q = org.qualified
            for base, spec in self.package_objects.items():
                fields = []
                for f in spec["fields"]:
                    f2 = copy.copy(f)
                    f2.name = q(f.name)
                    if f.relationship_name:
                        f2.relationship_name = q(f.relationship_name)
                    if f.child_relationship_name:
                        f2.child_relationship_name = q(f.child_relationship_name)
                    f2.reference_to = tuple(q(r) for r in f.reference_to)
                    if f2.master_detail and self.legacy_updateable_master_detail:
                        f2.updateable = True
                    fields.append(f2)
                if spec.get("extends"):
                    st = org.schema.get(base.lower())
                    if st is None:
                        continue
                    for f2 in fields:
                        st.fields[f2.name.lower()] = f2
                    continue
                name = q(base)
                if base not in org.package_key_prefixes:
                    org.package_key_prefixes[base] = "a0" + _B62[
                        (org.index * 2 + len(org.package_key_prefixes)) % 62]
                detail = bool(spec.get("detail"))
                name_f = _F("Name", "string", length=spec.get("name_length", 80),
                            required=not spec.get("autonumber"),
                            label=spec.get("label", base) + " Name")
                if spec.get("autonumber"):
                    name_f.ro()
                st = _mk(name, spec.get("label", base), spec.get("plural", base),
                         org.package_key_prefixes[base],
                         _system_fields(owner=not detail) + [name_f] + fields,
                         custom=True, has_owner=not detail,
                         autonumber=spec.get("autonumber") or None)
                org.schema[name.lower()] = st

    def uninstall_package(self, org: Org | str) -> None:
        """Uninstall: custom objects and their data disappear, package fields too."""
        with self.lock:
            org = self.org(org)
            for st in list(org.schema.values()):
                if st.custom:
                    org.schema.pop(st.name.lower())
                    org.records.pop(st.name.lower(), None)
                else:
                    for k, f in list(st.fields.items()):
                        if f.custom:
                            st.fields.pop(k)
            org.package_installed, org.namespace = False, None

    # ---- tokens without the browser ---------------------------------------------------------
    def issue_tokens(self, org: Org | str, client_id: str | None = None,
                     user_id: str | None = None, base_url: str | None = None,
                     scope: str = "api refresh_token id") -> dict:
        """Mint a token response as the token endpoint would (skips the OAuth dance)."""
        with self.lock:
            org = self.org(org)
            app = self.apps[client_id] if client_id else next(iter(self.apps.values()))
            user = org.users[normalize_id(user_id)] if user_id else org.admin
            return self._token_response(app, org, user, scope,
                                        base_url or self.base_url or "https://127.0.0.1",
                                        new_refresh=True)

    def expire_sessions(self, org: Org | str | None = None) -> int:
        """Force every access token (of one org) to be expired. Returns how many."""
        with self.lock:
            n = 0
            for s in self.sessions.values():
                if org is None or s.org_id == self.org(org).id:
                    s.revoked, n = True, n + 1
            return n

    # ---- faults, usage, call log ------------------------------------------------------------
    def inject(self, fault: str, times: int = 1, path_contains: str | None = None,
               **options) -> None:
        """Queue a fault: "500", "503", "timeout" (option ``delay``), "invalid_session",
        "request_limit", "composite_partial" (option ``index``: which sub-request; default the
        last write), "unable_to_lock_row" (first write of a composite/collection, or a write)."""
        self.faults.add(fault, times, path_contains, **options)

    def clear_faults(self) -> None:
        self.faults.clear()

    def _take_fault(self, kinds: Iterable[str], path: str) -> Fault | None:
        return self.faults.take(path, kinds=kinds)

    def api_usage(self, org: Org | str) -> int:
        with self.lock:
            return self.org(org).api_usage()

    def set_daily_limit(self, org: Org | str, limit: int) -> None:
        self.org(org).daily_api_limit = limit

    def reset_api_usage(self, org: Org | str | None = None) -> None:
        with self.lock:
            for o in ([self.org(org)] if org else self.orgs.values()):
                o.api_calls.clear()

    def call_counts(self, org: Org | str | None = None) -> Counter:
        """Counter of normalised endpoints ("POST /services/data/vXX.X/composite", ...) since
        the last ``reset_calls``; ``org`` limits it to calls made with that org's tokens."""
        return self.calls.counts(self.org(org).id if org else None)

    def reset_calls(self) -> None:
        self.calls.reset()

    # ---- rep edits (as a user in the Salesforce UI) -------------------------------------------
    def create_record(self, org: Org | str, sobject: str, fields: dict,
                      user_id: str | None = None) -> str:
        """Create a record as a user (seeding, or a rep creating it). Returns the 18-char id."""
        with self.lock:
            org = self.org(org)
            st = self._stype(org, sobject)
            return self._write(org, st, None, dict(fields), user_id or org.admin.id)

    def rep_update(self, org: Org | str, sobject: str, record_id: str, fields: dict,
                   user_id: str | None = None) -> dict:
        """Edit a record like a rep would (validates, bumps SystemModstamp). Returns it."""
        with self.lock:
            org = self.org(org)
            st = self._stype(org, sobject)
            rid = self._existing(org, st, record_id)
            self._write(org, st, rid, dict(fields), user_id or org.admin.id)
            return self.get_record(org, sobject, rid)

    def rep_change_stage(self, org: Org | str, opportunity_id: str,
                         stage_name: str | None = None, close_date: str | None = None,
                         user_id: str | None = None) -> dict:
        data: dict = {}
        if stage_name is not None:
            data["StageName"] = stage_name
        if close_date is not None:
            data["CloseDate"] = close_date
        return self.rep_update(org, "Opportunity", opportunity_id, data, user_id)

    def rep_delete(self, org: Org | str, sobject: str, record_id: str,
                   user_id: str | None = None) -> None:
        """Delete to the recycle bin: IsDeleted=true, visible to queryAll, cascades."""
        with self.lock:
            org = self.org(org)
            st = self._stype(org, sobject)
            self._delete(org, st, self._existing(org, st, record_id), user_id or org.admin.id)

    def rep_undelete(self, org: Org | str, sobject: str, record_id: str,
                     user_id: str | None = None) -> None:
        """Restore a record from the recycle bin, as a user does (Recycle Bin > Undelete) or
        Apex/SOAP ``undelete()``: IsDeleted goes back to false, SystemModstamp moves, and the
        detail records its delete cascaded to come back with it.

        Sources: "Deleted records are moved to the Recycle Bin ... you can restore them"
        and queryAll "includes records that have been deleted because of a merge or delete"
        (REST API Developer Guide, "QueryAll",
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_queryall.htm);
        SOAP API ``undelete()`` "Undeletes records from the Recycle Bin"
        (https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_undelete.htm);
        "undeleting the master record also undeletes detail records" is the documented
        master-detail rule (Salesforce Help, "Considerations for Relationships"). The REST API
        has no undelete resource, so this is a helper only.
        """
        with self.lock:
            org = self.org(org)
            st = self._stype(org, sobject)
            rid = normalize_id(record_id)
            rec = org.records.get(st.name.lower(), {}).get(rid)
            if rec is None or not rec["IsDeleted"]:
                raise ApiError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin")
            self._undelete(org, st, rid, user_id or org.admin.id)

    undelete = rep_undelete

    def _undelete(self, org: Org, st: _SType, rid: str, user_id: str) -> None:
        rec = org.records[st.name.lower()][rid]
        self._journal_put(org, st, rid)
        rec["IsDeleted"] = False
        rec.pop("_deleted_with", None)
        self._stamp(org, rec, user_id)
        for cst in list(org.schema.values()):
            if not cst.stored:
                continue
            for cid, child in list(org.records.get(cst.name.lower(), {}).items()):
                if child.get("IsDeleted") and child.get("_deleted_with") == rid:
                    self._undelete(org, cst, cid, user_id)

    # ---- Lightning Data Service (the LWC) ----------------------------------------------------
    def lds_create(self, org: Org | str, sobject: str, fields: dict,
                   user_id: str | None = None) -> dict:
        """Create a record exactly as the component's ``createRecord(recordInput)`` does:
        ``POST /services/data/vXX.X/ui-api/records`` with the RecordInput
        ``{"apiName": sobject, "fields": {...}}`` in the rep's session (``user_id``, default
        the org's first non-admin user, else the admin). Nothing is added: a record created
        there has no Plan_UUID__c / Milestone_UUID__c unless ``fields`` has one, and its
        CreatedById / LastModifiedById / OwnerId are the rep's. Returns the UI API Record
        representation (``{"apiName", "id", "fields": {name: {"value", "displayValue"}},
        ...}``), as the promise resolves.

        Sources: https://developer.salesforce.com/docs/platform/lwc/guide/reference-create-record.html
        ("createRecord uses this User Interface API resource": POST /ui-api/records;
        recordInput "takes two properties": apiName, fields); RecordInput,
        https://developer.salesforce.com/docs/atlas.en-us.uiapi.meta/uiapi/ui_api_requests_record_input.htm.
        The same code serves the HTTP endpoint, so a test may also call it over HTTPS with a
        rep's token."""
        with self.lock:
            org = self.org(org)
            return self._ui_create(org, {"apiName": sobject, "fields": dict(fields)},
                                   self._rep(org, user_id), self.latest_api_version)

    def lds_update(self, org: Org | str, record_id: str, fields: dict,
                   user_id: str | None = None) -> dict:
        """``updateRecord({fields: {Id, ...}})``: ``PATCH /ui-api/records/{Id}`` with
        ``{"fields": {...}}`` (the Id travels in the URL), as the rep. Only the fields given
        change; setting a non-updateable field (e.g. a non-reparentable master-detail) is
        refused like any API update.
        https://developer.salesforce.com/docs/platform/lwc/guide/reference-update-record.html"""
        with self.lock:
            org = self.org(org)
            body = {"fields": {k: v for k, v in fields.items() if k != "Id"}}
            return self._ui_update(org, fields.get("Id") or record_id, body,
                                   self._rep(org, user_id), self.latest_api_version)

    def lds_delete(self, org: Org | str, record_id: str, user_id: str | None = None) -> None:
        """``deleteRecord(recordId)``: ``DELETE /ui-api/records/{recordId}`` as the rep; the
        record (and its master-detail children) goes to the recycle bin, visible to queryAll
        with IsDeleted = true, restorable with ``undelete``.
        https://developer.salesforce.com/docs/platform/lwc/guide/reference-delete-record.html"""
        with self.lock:
            org = self.org(org)
            self._ui_delete(org, record_id, self._rep(org, user_id))

    def _rep(self, org: Org, user_id: str | None) -> str:
        if user_id:
            uid = normalize_id(user_id)
            if uid not in org.users:
                raise KeyError(f"unknown user {user_id}")
            return uid
        return next((u.id for u in org.users.values() if not u.is_admin), org.admin.id)

    def _ui_target(self, org: Org, record_id: str) -> tuple:
        rid = normalize_id(record_id)
        found = self._find_by_id(org, rid) if rid else None
        if found is None or found[1].get("IsDeleted"):
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return found[0], rid

    def _ui_create(self, org: Org, body: Any, user_id: str, version: str) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("apiName"), str) \
                or not isinstance(body.get("fields", {}), dict):
            raise ApiError(400, "INVALID_INPUT",
                           "The request body must be a RecordInput: {apiName, fields}")
        st = self._stype(org, body["apiName"])
        self._begin(org)
        try:
            rid = self._write(org, st, None, dict(body.get("fields") or {}), user_id)
        except ApiError:
            self._rollback(org)
            raise
        self._commit(org)
        return self._ui_record(org, st, rid, version)

    def _ui_update(self, org: Org, record_id: str, body: Any, user_id: str,
                   version: str) -> dict:
        st, rid = self._ui_target(org, record_id)
        if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
            raise ApiError(400, "INVALID_INPUT", "The request body must be {fields: {...}}")
        if body.get("apiName") not in (None, st.name):
            raise ApiError(400, "INVALID_INPUT", f"apiName {body['apiName']} does not match "
                           f"the record's object {st.name}")
        self._begin(org)
        try:
            self._write(org, st, rid, dict(body["fields"]), user_id)
        except ApiError:
            self._rollback(org)
            raise
        self._commit(org)
        return self._ui_record(org, st, rid, version)

    def _ui_delete(self, org: Org, record_id: str, user_id: str) -> None:
        st, rid = self._ui_target(org, record_id)
        self._delete(org, st, rid, user_id)

    def _ui_record(self, org: Org, st: _SType, rid: str, version: str) -> dict:
        """The UI API Record representation (a subset: fields with value and displayValue)."""
        rec = org.records[st.name.lower()][rid]
        fields = {f.name: {"displayValue": None, "value": _out(rec.get(f.name), f)}
                  for f in st.fields.values()}
        stamp = _out(rec["SystemModstamp"], None)
        return {
            "apiName": st.name, "childRelationships": {}, "eTag": hashlib.md5(
                f"{rid}{stamp}".encode()).hexdigest(), "fields": fields, "id": rid,
            "lastModifiedById": rec.get("LastModifiedById"),
            "lastModifiedDate": _out(rec.get("LastModifiedDate"), None),
            "recordTypeId": rec.get("RecordTypeId") or "012000000000000AAA",
            "recordTypeInfo": None, "systemModstamp": stamp,
            "weakEtag": int(rec["SystemModstamp"].timestamp() * 1000),
        }

    def get_record(self, org: Org | str, sobject: str, record_id: str) -> dict:
        """A copy of the stored record (typed values; datetimes as datetime)."""
        with self.lock:
            org = self.org(org)
            st = self._stype(org, sobject)
            rec = org.records.get(st.name.lower(), {}).get(normalize_id(record_id) or "")
            if rec is None:
                raise KeyError(record_id)
            return dict(rec)

    def records(self, org: Org | str, sobject: str, include_deleted: bool = False) -> list:
        with self.lock:
            org = self.org(org)
            st = self._stype(org, sobject)
            return [dict(r) for r in org.records.get(st.name.lower(), {}).values()
                    if include_deleted or not r["IsDeleted"]]

    # ---- internals: schema lookups ----------------------------------------------------------
    def _stype(self, org: Org, name: str, default_ns: str | None = None) -> _SType:
        st = org.stype(name, default_ns)
        if st is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return st

    def _existing(self, org: Org, st: _SType, record_id: str, *, allow_deleted=False) -> str:
        rid = normalize_id(record_id)
        rec = org.records.get(st.name.lower(), {}).get(rid or "")
        if rid is None or rec is None:
            if rid is None:
                raise ApiError(400, "MALFORMED_ID",
                               f"{st.label} ID: id value of incorrect type: {record_id}")
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if rec["IsDeleted"] and not allow_deleted:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return rid

    def _field(self, org: Org, st: _SType, name: str, default_ns: str | None = None
               ) -> _Field | None:
        f = st.field(name)
        if f is None and default_ns and name.endswith("__c") and name.count("__") == 1:
            f = st.field(f"{default_ns}__{name}")
        return f

    # ---- internals: rows --------------------------------------------------------------------
    def _rows(self, org: Org, st: _SType) -> list:
        if st.stored:
            return list(org.records.get(st.name.lower(), {}).values())
        now = self.clock.now().replace(microsecond=0)
        if st.name == "User":
            return [{"Id": u.id, "Username": u.username, "Name": u.name, "Email": u.email,
                     "IsActive": u.active, "TimeZoneSidKey": u.timezone,
                     "LanguageLocaleKey": u.language, "SystemModstamp": now, "IsDeleted": False}
                    for u in org.users.values()]
        if st.name == "OpportunityStage":
            return [{"Id": s.id, "MasterLabel": s.label, "ApiName": s.api_name,
                     "IsActive": s.is_active, "IsClosed": s.is_closed, "IsWon": s.is_won,
                     "DefaultProbability": s.default_probability,
                     "ForecastCategoryName": s.forecast_category, "SortOrder": s.sort_order,
                     "SystemModstamp": now, "IsDeleted": False} for s in org.stages]
        if st.name == "RecordType":
            return [{"Id": r.id, "Name": r.name, "DeveloperName": r.developer_name,
                     "SobjectType": r.sobject_type, "IsActive": r.is_active,
                     "BusinessProcessId": (org.sales_processes[r.sales_process].id
                                           if r.sales_process else None), "IsDeleted": False}
                    for r in org.record_types.values()]
        if st.name == "BusinessProcess":
            return [{"Id": p.id, "Name": p.name, "TableEnumOrId": "Opportunity",
                     "IsActive": True, "IsDeleted": False}
                    for p in org.sales_processes.values() if p.name != "Standard"]
        if st.name == "Organization":
            return [{"Id": org.id, "Name": org.name, "IsSandbox": org.is_sandbox,
                     "OrganizationType": org.edition, "NamespacePrefix": None,
                     "InstanceName": "CS" + org.pod if org.is_sandbox else "NA" + org.pod,
                     "IsDeleted": False}]
        return []

    def _find_by_id(self, org: Org, rid: str) -> tuple | None:
        """(stype, record) for any id of this org, including generated rows."""
        prefix = rid[:3]
        for st in org.schema.values():
            if st.key_prefix == prefix:
                if st.stored:
                    rec = org.records.get(st.name.lower(), {}).get(rid)
                    return (st, rec) if rec else None
                for r in self._rows(org, st):
                    if r["Id"] == rid:
                        return st, r
        return None

    def _stamp(self, org: Org, rec: dict, user_id: str) -> None:
        now = self.clock.now().replace(microsecond=0)
        rec["LastModifiedDate"] = rec["SystemModstamp"] = now
        rec["LastModifiedById"] = user_id

    def _journal_put(self, org: Org, st: _SType, rid: str) -> None:
        if org._journal is not None:
            old = org.records.get(st.name.lower(), {}).get(rid)
            org._journal.append((st.name.lower(), rid, dict(old) if old else None))

    def _begin(self, org: Org) -> None:
        org._journal = []

    def _commit(self, org: Org) -> None:
        org._journal = None

    def _rollback(self, org: Org) -> None:
        for tname, rid, old in reversed(org._journal or []):
            table = org.records.setdefault(tname, {})
            if old is None:
                table.pop(rid, None)
            else:
                table[rid] = old
        org._journal = None

    def _coerce(self, org: Org, st: _SType, f: _Field, value: Any) -> Any:
        if value is None:
            return None
        t = f.type
        bad = ApiError(400, "JSON_PARSER_ERROR",
                       f"Cannot deserialize instance of {_soql_type_name(f)} from "
                       f"{type(value).__name__} value {value!r} or request may be missing a "
                       f"required field")
        if t in ("id", "reference"):
            rid = normalize_id(value)
            if rid is None:
                raise ApiError(400, "MALFORMED_ID",
                               f"{f.label}: id value of incorrect type: {value}", [f.name])
            found = self._find_by_id(org, rid)
            targets = {r.lower() for r in f.reference_to}
            if found is None:
                if any((org.stype(r) or st).key_prefix == rid[:3] for r in f.reference_to):
                    raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY",
                                   "invalid cross reference id", [f.name])
                raise ApiError(400, "FIELD_INTEGRITY_EXCEPTION",
                               f"field integrity exception: unknown ({f.label}: id value of "
                               f"incorrect type: {value})", [f.name])
            tst, trec = found
            if tst.name.lower() not in targets:
                raise ApiError(400, "FIELD_INTEGRITY_EXCEPTION",
                               f"field integrity exception: unknown ({f.label}: id value of "
                               f"incorrect type: {value})", [f.name])
            if trec.get("IsDeleted"):
                raise ApiError(400, "ENTITY_IS_DELETED", "entity is deleted", [f.name])
            return rid
        if t == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise bad
        if t in _NUMERIC:
            if isinstance(value, bool):
                raise bad
            try:
                return float(value)
            except (TypeError, ValueError):
                raise bad from None
        if t == "date":
            d = _parse_date(value) if isinstance(value, str) else None
            if d is None and isinstance(value, str) and _parse_dt(value):
                d = _parse_dt(value).date().isoformat()
            if d is None:
                raise bad
            return d
        if t == "datetime":
            d = _parse_dt(value) if isinstance(value, str) else None
            if d is None:
                raise bad
            return d
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad
        value = str(value) if not isinstance(value, str) else value
        if f.length and len(value) > f.length:
            raise ApiError(400, "STRING_TOO_LONG",
                           f"{f.label}: data value too large: {value[:40]} (max length="
                           f"{f.length})", [f.name])
        if t == "picklist" and f.restricted and f.picklist and value not in f.picklist:
            raise ApiError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                           f"{f.label}: bad value for restricted picklist field: {value}",
                           [f.name])
        return value

    def _write(self, org: Org, st: _SType, rid: str | None, data: Any, user_id: str,
               default_ns: str | None = None) -> str:
        """Create (rid None) or update one record. Returns the id. Raises ApiError."""
        if not isinstance(data, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        if not st.writable:
            raise ApiError(400, "INVALID_TYPE_FOR_OPERATION",
                           f"entity type {st.name} does not support this operation")
        data.pop("attributes", None)
        create = rid is None
        table = org.records.setdefault(st.name.lower(), {})
        current = {} if create else table[rid]
        changes: dict = {}
        ro_fields = []
        for key, value in data.items():
            f = self._field(org, st, key, default_ns)
            if f is None:
                raise ApiError(400, "INVALID_FIELD",
                               f"No such column '{key}' on sobject of type {st.name}")
            if f.name == "Id" and not create and normalize_id(value) == rid:
                continue
            if not (f.createable if create else f.updateable):
                ro_fields.append(f.name)
                continue
            changes[f.name] = self._coerce(org, st, f, value)
        if ro_fields:
            raise ApiError(400, "INVALID_FIELD_FOR_INSERT_UPDATE",
                           f"Unable to create/update fields: {', '.join(ro_fields)}. Please check "
                           f"the security settings of this field and verify that it is read/write"
                           f" for your profile or permission set.", ro_fields)
        new = dict(current)
        if create:
            for f in st.fields.values():
                new.setdefault(f.name, f.default if f.default is not None
                               else (False if f.type == "boolean" else None))
            if st.has_owner and "ownerid" in st.fields:
                new["OwnerId"] = user_id
        new.update(changes)
        if st.name == "Contact":
            new["Name"] = " ".join(p for p in (new.get("FirstName"), new.get("LastName")) if p)
        if st.name == "Opportunity":
            self._opportunity_rules(org, new, changes, create)
        if st.name == "Task":
            new["IsClosed"] = new.get("Status") == "Completed"
        missing = [f.name for f in st.fields.values()
                   if f.required and f.createable and new.get(f.name) in (None, "")]
        if missing:
            raise ApiError(400, "REQUIRED_FIELD_MISSING",
                           f"Required fields are missing: [{', '.join(missing)}]", missing)
        for f in st.fields.values():
            if f.unique and new.get(f.name) is not None and f.name in changes:
                v = new[f.name]
                for orid, other in table.items():
                    if orid != rid and not other["IsDeleted"] and other.get(f.name) is not None \
                            and (other[f.name] == v if f.case_sensitive
                                 else str(other[f.name]).lower() == str(v).lower()):
                        raise ApiError(400, "DUPLICATE_VALUE",
                                       f"duplicate value found: {f.name} duplicates value on "
                                       f"record with id: {orid}", [])
        if create:
            if st.autonumber:
                m = re.search(r"\{(0+)\}", st.autonumber)
                width = len(m.group(1)) if m else 1
                num = str(st.autonumber_next).zfill(width)
                new["Name"] = re.sub(r"\{0+\}", num, st.autonumber) if m else \
                    st.autonumber + num
                st.autonumber_next += 1
            rid = self.new_id(org, st.key_prefix)
            now = self.clock.now().replace(microsecond=0)
            new.update(Id=rid, IsDeleted=False, CreatedDate=now, CreatedById=user_id)
        self._journal_put(org, st, rid)
        self._stamp(org, new, user_id)
        table[rid] = new
        return rid

    def _opportunity_rules(self, org: Org, new: dict, changes: dict, create: bool) -> None:
        if not (create or "StageName" in changes or "RecordTypeId" in changes):
            return
        label = new.get("StageName")
        if label in (None, ""):
            return          # REQUIRED_FIELD_MISSING follows
        stage = org.stage(label)
        allowed = [s.label for s in org.stages if s.is_active]
        rt_id = new.get("RecordTypeId")
        if rt_id and rt_id in org.record_types and org.record_types[rt_id].sales_process:
            sp = org.sales_processes[org.record_types[rt_id].sales_process]
            allowed = [s for s in sp.stages if org.stage(s) and org.stage(s).is_active]
        if stage is None or label not in allowed:
            raise ApiError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                           f"Stage: bad value for restricted picklist field: {label}",
                           ["StageName"])
        new["IsClosed"], new["IsWon"] = stage.is_closed, stage.is_won
        if "ForecastCategoryName" not in changes:
            new["ForecastCategoryName"] = stage.forecast_category
        if "Probability" not in changes:
            new["Probability"] = stage.default_probability

    def _delete(self, org: Org, st: _SType, rid: str, user_id: str) -> None:
        if not st.writable:
            raise ApiError(400, "INVALID_TYPE_FOR_OPERATION",
                           f"entity type {st.name} does not support delete")
        rec = org.records[st.name.lower()][rid]
        self._journal_put(org, st, rid)
        rec["IsDeleted"] = True
        self._stamp(org, rec, user_id)
        for cst in list(org.schema.values()):
            if not cst.stored:
                continue
            for f in cst.fields.values():
                if f.type != "reference" or st.name.lower() not in \
                        {r.lower() for r in f.reference_to} or not f.delete_constraint:
                    continue
                for cid, child in list(org.records.get(cst.name.lower(), {}).items()):
                    if child.get(f.name) != rid or child["IsDeleted"]:
                        continue
                    if f.delete_constraint == "Cascade":
                        self._delete(org, cst, cid, user_id)
                        child["_deleted_with"] = rid  # undeleting the master brings it back
                    else:
                        self._journal_put(org, cst, cid)
                        child[f.name] = None
                        self._stamp(org, child, user_id)

    # ---- internals: serialisation -------------------------------------------------------------
    def _serialize(self, st: _SType, rec: dict, version: str,
                   fields: list | None = None) -> dict:
        out: dict = {"attributes": {"type": st.name,
                                    "url": f"/services/data/v{version}/sobjects/{st.name}/"
                                           f"{rec['Id']}"}}
        for f in (fields if fields is not None else st.fields.values()):
            out[f.name] = _out(rec.get(f.name), f)
        return out

    # ---- internals: OAuth ---------------------------------------------------------------------
    def _token_response(self, app: ConnectedApp, org: Org, user: User, scope: str,
                        base_url: str, *, new_refresh: bool,
                        refresh: _RefreshToken | None = None) -> dict:
        now = self.clock.now()
        access = f"{org.id[:15]}!AQ{secrets.token_urlsafe(40)}"
        rt_token = refresh.token if refresh else None
        body: dict = {}
        scopes = scope.split()
        if new_refresh and ("refresh_token" in scopes or "offline_access" in scopes):
            rt = _RefreshToken("5Aep861" + secrets.token_urlsafe(48), org.id, user.id,
                               app.client_id, scope, now)
            self.refresh_tokens[rt.token] = rt
            rt_token = rt.token
            body["refresh_token"] = rt.token
        self.sessions[access] = _Session(access, org.id, user.id, app.client_id, scope, now, now,
                                         rt_token)
        issued_at = str(int(now.timestamp() * 1000))
        id_url = f"{base_url.rstrip('/')}/id/{org.id}/{user.id}"
        sig = base64.b64encode(hmac.new(app.client_secret.encode(),
                                        (id_url + issued_at).encode(),
                                        hashlib.sha256).digest()).decode()
        body.update({
            "access_token": access,
            "signature": sig,
            "scope": scope,
            "instance_url": (org.instance_url or base_url).rstrip("/"),
            "id": id_url,
            "token_type": "Bearer",
            "issued_at": issued_at,
        })
        return body

    def _session(self, token: str | None) -> _Session | None:
        s = self.sessions.get(token or "")
        if s is None or s.revoked:
            return None
        org = self.orgs.get(s.org_id)
        now = self.clock.now()
        if org is None or (now - s.last_used).total_seconds() > org.session_timeout:
            return None
        s.last_used = now
        return s



# --------------------------------------------------------------------------------------------
# WSGI application
# --------------------------------------------------------------------------------------------
def _json(body: Any, status: int = 200, headers: dict | None = None) -> Response:
    r = Response(json.dumps(body), status=status,
                 content_type="application/json;charset=UTF-8")
    for k, v in (headers or {}).items():
        r.headers[k] = v
    return r


_VERSION_RE = re.compile(r"^v(\d+)\.(\d)$")


def _release_label(v: int) -> str:
    d = v - 66
    cycle = d % 3
    year = 26 + d // 3 + (1 if cycle == 2 else 0)
    return f"{('Spring', 'Summer', 'Winter')[cycle]} '{year:02d}"


class _Ctx:
    def __init__(self, org: Org, session: _Session, version: str, headers: dict):
        self.org, self.session, self.version = org, session, version
        self.user_id = session.user_id
        self.default_ns = None
        opts = headers.get("Sforce-Call-Options") or ""
        m = re.search(r"defaultNamespace=([A-Za-z0-9_]+)", opts)
        if m:
            self.default_ns = m.group(1)
        self.batch_size = None
        qo = headers.get("Sforce-Query-Options") or ""
        m = re.search(r"batchSize=(\d+)", qo)
        if m:
            self.batch_size = max(200, min(MAX_BATCH, int(m.group(1))))


