"""Local emulator of the Salesforce APIs MutualPlan uses (OAuth web-server flow + REST).

One module, no Flask, no database: werkzeug Request/Response for the WSGI app, a small
keep-alive HTTP/1.1 server on ``http.server`` (werkzeug's dev server closes every connection,
i.e. one TLS handshake per call), the standard library for the rest, ``trustme`` for TLS.

Used by the tests (in-process, on a thread, ``serve(sandbox, port=0)``), by ``make run`` as the
local Salesforce (``python -m connector.sandbox.salesforce --port 8443 --ca-dir instance``,
seeded by ``demo_sandbox()``), and by the benchmarks (~2-3 ms per call over TLS).

Quick start::

    from connector.sandbox.salesforce import SalesforceSandbox, serve
    sb = SalesforceSandbox()
    sb.add_connected_app("cid", "secret", ["https://localhost:5000/oauth/salesforce/callback"])
    org = sb.add_org("Acme", my_domain="acme", package_installed=True)
    handle = serve(sb)        # handle.url = https://127.0.0.1:PORT; handle.ca_path = CA bundle
    tok = sb.issue_tokens(org, "cid") # or the real web-server flow against handle.url
    ...
    handle.shutdown()

Custom objects: by default (``package_source="auto"``) the package's objects and fields are read
from ``salesforce_package/force-app/main/default`` (this repo), so the emulator always matches
the package; ``package_source=None`` uses the built-in ``DEFAULT_PACKAGE_OBJECTS``.  They exist
in an org only while the package is installed (``add_org(package_installed=...)``,
``install_package(org, namespace=...)``, ``uninstall_package``); otherwise describe answers 404
``NOT_FOUND`` and SOQL 400 ``INVALID_TYPE``.  AutoNumber Name fields are generated and
read-only; restricted picklists are enforced; master-detail deletes cascade.

Addressing (what the connector must know)
-----------------------------------------
* **TLS only by default.** simple-salesforce hardcodes ``https://``.  ``serve()`` makes a local CA
  with trustme; trust it with ``requests.Session().verify = handle.ca_path`` **and**
  ``session.trust_env = False`` (otherwise ``REQUESTS_CA_BUNDLE`` silently wins).  In the app this
  is ``CRM_CA_BUNDLE``.
* **One server plays every Salesforce host.** ``login.salesforce.com``, ``test.salesforce.com``
  (sandbox orgs) and every My Domain (``acme.my.salesforce.com``,
  ``acme--uat.sandbox.my.salesforce.com``) are all ``handle.url``.  Make the login base URL
  configurable (``SALESFORCE_LOGIN_URL=handle.url``); for sandbox orgs real code would use
  ``https://test.salesforce.com`` and for "log in with My Domain" the customer's My Domain -
  here all of them are ``handle.url``.  The token response's ``instance_url`` is the URL the token
  request arrived at (or ``Org.instance_url`` when set), the org's nominal My Domain host is
  ``Org.my_domain_host``; REST calls must always go to ``instance_url`` from the token response.
  simple-salesforce drops the path of ``instance_url``, so orgs are told apart by the token, not
  by host or path.  The ``id`` URL is ``<login base>/id/<orgId>/<userId>`` (18-char ids).
* **API versions:** ``/services/data`` lists v31.0 .. ``latest_api_version`` (default 66.0 =
  Spring '26; 67.0 Summer '26, 68.0 Winter '27 can be enabled).  Older (21-30) answer 410,
  newer 404.
  Pin simple-salesforce with ``version="66.0"`` (its default 59.0 also works here).

Fidelity notes (deliberate, so bugs show up locally)
----------------------------------------------------
* The token response has no ``expires_in``; sessions expire after ``Org.session_timeout``
  seconds of *inactivity* measured on the sandbox clock -> 401 ``INVALID_SESSION_ID``.
* Refresh responses carry no ``refresh_token`` unless the connected app has
  ``rotate_refresh_tokens=True``; then the old refresh token is dead immediately.
* Date/time fields have **second precision** (like Salesforce: ``...:08.000+0000``).  A poll on
  ``SystemModstamp > :hwm`` can miss an edit made in the same second as the previous poll; use
  ``>=`` and de-duplicate.  Advance the clock (``sandbox.clock.advance(1)``) in tests.
* SOQL date/datetime literals must not be quoted (``SystemModstamp > 2026-01-01T00:00:00Z``);
  quoting answers 400 ``INVALID_FIELD`` like Salesforce.  String ``=`` is case-insensitive.
* Unknown fields answer 400 ``INVALID_FIELD``; namespaced orgs need fully-qualified names
  (``mapns__Mutual_Action_Plan__c``, ``mapns__Status__c``) unless the request carries
  ``Sforce-Call-Options: defaultNamespace=mapns`` (honoured on rows and query, not composite).
* Composite and sObject Collections answer 200 even when parts fail.
* A "timeout" fault sleeps and *then processes the request*: the write happens although the
  client gave up (use idempotent upserts).
* ``invalid_session`` fault answers 401 and really kills the access token presented.
"""
from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import hmac
import html
import http.server
import io
import json
import os
import re
import secrets
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time
import traceback
import warnings
import xml.etree.ElementTree as ET
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from werkzeug.wrappers import Request, Response

__all__ = [
    "DEFAULT_PACKAGE_OBJECTS",
    "DEFAULT_STAGES",
    "FAULT_KINDS",
    "REPO_PACKAGE_SOURCE",
    "ApiError",
    "CallRecord",
    "Clock",
    "ConnectedApp",
    "Org",
    "RecordType",
    "SalesProcess",
    "SalesforceSandbox",
    "ServerHandle",
    "Stage",
    "User",
    "create_app",
    "demo_sandbox",
    "id18",
    "load_package_schema",
    "main",
    "normalize_id",
    "serve",
]

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


# --------------------------------------------------------------------------------------------
# clock, errors, small records
# --------------------------------------------------------------------------------------------
class Clock:
    """Sandbox clock. Real time plus an offset, or frozen at ``start`` plus an offset."""

    def __init__(self, start: datetime | None = None):
        self._base = start
        self._offset = 0.0

    def now(self) -> datetime:
        base = self._base if self._base is not None else datetime.now(UTC)
        return base + timedelta(seconds=self._offset)

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def set(self, when: datetime) -> None:
        """Freeze the clock at ``when`` (aware datetime)."""
        self._base, self._offset = when, 0.0

    def time(self) -> float:
        return self.now().timestamp()


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
class _Fault:
    kind: str
    times: int
    path_contains: str | None
    options: dict


@dataclass
class CallRecord:
    at: datetime
    method: str
    path: str
    endpoint: str        # normalised, e.g. "GET /services/data/vXX.X/sobjects/{type}/{id}"
    status: int
    org_id: str | None


# --------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------
@dataclass
class _Field:
    name: str
    type: str                       # id reference string textarea picklist email url phone
    label: str = ""                 # boolean date datetime double percent currency int
    length: int = 0
    reference_to: tuple = ()
    relationship_name: str | None = None
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    required: bool = False
    createable: bool = True
    updateable: bool = True
    picklist: tuple = ()
    restricted: bool = False
    default: Any = None
    delete_constraint: str | None = None    # "Cascade" (master-detail) | "SetNull"
    custom: bool = False
    master_detail: bool = False
    child_relationship_name: str | None = None   # parent-side name, e.g. "Milestones__r"

    def ro(self) -> _Field:
        self.createable = self.updateable = False
        return self


def _F(name, type_, **kw) -> _Field:
    kw.setdefault("label", name.replace("__c", "").replace("_", " "))
    if type_ in ("string", "picklist", "email", "url", "phone") and not kw.get("length"):
        kw["length"] = 255
    if type_ == "textarea" and not kw.get("length"):
        kw["length"] = 32768
    return _Field(name, type_, **kw)


@dataclass
class _SType:
    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: dict                    # lower name -> _Field
    custom: bool = False
    stored: bool = True             # False: generated rows (User, OpportunityStage...)
    writable: bool = True
    has_owner: bool = True
    autonumber: str | None = None     # Name display format, e.g. "MAP-{00000}"
    autonumber_next: int = 1

    def field(self, name: str) -> _Field | None:
        return self.fields.get(name.lower())

    @property
    def name_field(self) -> _Field | None:
        return self.fields.get("name")


def _system_fields(owner: bool = True) -> list:
    fs = [
        _F("Id", "id", label="Record ID").ro(),
        _F("IsDeleted", "boolean", label="Deleted").ro(),
        _F("CreatedDate", "datetime", label="Created Date").ro(),
        _F("CreatedById", "reference", reference_to=("User",), relationship_name="CreatedBy").ro(),
        _F("LastModifiedDate", "datetime", label="Last Modified Date").ro(),
        _F("LastModifiedById", "reference", reference_to=("User",),
           relationship_name="LastModifiedBy").ro(),
        _F("SystemModstamp", "datetime", label="System Modstamp").ro(),
    ]
    if owner:
        fs.append(_F("OwnerId", "reference", reference_to=("User",), relationship_name="Owner",
                     label="Owner ID"))
    return fs


def _mk(name, label, plural, prefix, fields, **kw) -> _SType:
    return _SType(name, label, plural, prefix, {f.name.lower(): f for f in fields}, **kw)


# The package's DX source in this repository; read by default (``package_source="auto"``) so
# the emulator's custom objects are exactly the package's.
REPO_PACKAGE_SOURCE = Path(__file__).resolve().parents[2] / "salesforce_package" / "force-app" \
    / "main" / "default"

# Fallback package schema (un-namespaced), used with ``package_source=None`` (the emulator's
# own tests) or when the DX source is missing.
_STATUS = ("Not_Started", "In_Progress", "Done", "Blocked", "Skipped")
_RISK = ("On_Track", "At_Risk", "Off_Track")
DEFAULT_PACKAGE_OBJECTS: dict = {
    "Mutual_Action_Plan__c": {
        "label": "Mutual Action Plan", "plural": "Mutual Action Plans", "name_length": 80,
        "fields": [
            _F("Opportunity__c", "reference", reference_to=("Opportunity",),
               relationship_name="Opportunity__r", delete_constraint="SetNull", custom=True),
            _F("External_Id__c", "string", length=64, external_id=True, unique=True, custom=True),
            _F("Status__c", "picklist", picklist=("Active", "Closed", "Archived"), custom=True),
            _F("Progress__c", "percent", custom=True),
            _F("Overall_Risk__c", "picklist", picklist=_RISK, custom=True),
            _F("Next_Milestone__c", "string", custom=True),
            _F("Next_Milestone_Due__c", "date", custom=True),
            _F("Overdue_Count__c", "double", custom=True),
            _F("Days_Slipped__c", "double", custom=True),
            _F("Buyer_Link__c", "url", custom=True),
            _F("Last_Buyer_Activity__c", "datetime", custom=True),
            _F("Value_Summary__c", "textarea", custom=True),
        ]},
    "MAP_Milestone__c": {
        "label": "MAP Milestone", "plural": "MAP Milestones", "name_length": 80, "detail": True,
        "fields": [
            _F("Mutual_Action_Plan__c", "reference", reference_to=("Mutual_Action_Plan__c",),
               relationship_name="Mutual_Action_Plan__r", delete_constraint="Cascade",
               required=True, master_detail=True, custom=True),
            _F("External_Id__c", "string", length=64, external_id=True, unique=True, custom=True),
            _F("Status__c", "picklist", picklist=_STATUS, custom=True),
            _F("Stage__c", "string", custom=True),
            _F("Sequence__c", "double", custom=True),
            _F("Due_Date__c", "date", custom=True),
            _F("Completed_Date__c", "date", custom=True),
            _F("Owner_Side__c", "picklist", picklist=("Buyer", "Seller", "Both"), custom=True),
            _F("Owner_Names__c", "string", custom=True),
            _F("Risk__c", "picklist", picklist=_RISK, custom=True),
            _F("Description__c", "textarea", custom=True),
            _F("Internal_Only__c", "boolean", default=False, custom=True),
        ]},
    # extra fields the package adds to standard objects
    "Opportunity": {"extends": True, "fields": [
        _F("MAP_Progress__c", "percent", custom=True),
        _F("MAP_Next_Milestone__c", "string", custom=True),
        _F("MAP_Next_Milestone_Due__c", "date", custom=True),
        _F("MAP_Overall_Risk__c", "string", custom=True),
        _F("MAP_Overdue_Count__c", "double", custom=True),
        _F("MAP_Days_Slipped__c", "double", custom=True),
        _F("MAP_Buyer_Link__c", "url", custom=True),
        _F("MAP_Last_Buyer_Activity__c", "datetime", custom=True),
    ]},
}

_XML_TYPES = {
    "Text": "string", "TextArea": "textarea", "LongTextArea": "textarea", "Html": "textarea",
    "Picklist": "picklist", "MultiselectPicklist": "multipicklist", "Checkbox": "boolean",
    "Date": "date", "DateTime": "datetime", "Number": "double", "Percent": "percent",
    "Currency": "currency", "Url": "url", "Email": "email", "Phone": "phone",
    "Lookup": "reference", "MasterDetail": "reference",
}


def load_package_schema(source_dir: str) -> dict:
    """Read custom objects/fields from a DX source dir (``.../force-app/main/default``).

    Returns a dict shaped like ``DEFAULT_PACKAGE_OBJECTS``.  Custom fields on standard objects
    (e.g. ``objects/Opportunity/fields/MAP_Progress__c.field-meta.xml``) become ``extends``.
    """
    ns = {"m": "http://soap.sforce.com/2006/04/metadata"}
    out: dict = {}
    objects = Path(source_dir) / "objects"
    for obj_dir in sorted(p for p in objects.iterdir() if p.is_dir()) if objects.is_dir() else []:
        name = obj_dir.name
        entry: dict = {"fields": []}
        meta = obj_dir / f"{name}.object-meta.xml"
        if name.endswith("__c"):
            entry.update(label=name[:-3].replace("_", " "), plural=name[:-3].replace("_", " "),
                         name_length=80)
            if meta.exists():
                root = ET.parse(meta).getroot()
                entry["label"] = root.findtext("m:label", entry["label"], ns)
                entry["plural"] = root.findtext("m:pluralLabel", entry["plural"], ns)
                if root.findtext("m:nameField/m:type", "", ns) == "AutoNumber":
                    entry["autonumber"] = root.findtext("m:nameField/m:displayFormat", "", ns)
                entry["detail"] = root.findtext("m:sharingModel", "", ns) == "ControlledByParent"
        else:
            entry["extends"] = True
        for fpath in sorted((obj_dir / "fields").glob("*.field-meta.xml")):
            r = ET.parse(fpath).getroot()

            def t(tag: str, d: str = "", r=r) -> str:
                return (r.findtext(f"m:{tag}", d, ns) or d).strip()
            fname = t("fullName") or fpath.name.split(".")[0]
            xtype = t("type", "Text")
            kind = _XML_TYPES.get(xtype, "string")
            kw: dict = {"label": t("label", fname), "custom": True}
            if t("length"):
                kw["length"] = int(t("length"))
            if kind == "reference":
                kw["reference_to"] = (t("referenceTo"),)
                kw["relationship_name"] = fname[:-3] + "__r"
                if t("relationshipName"):
                    kw["child_relationship_name"] = t("relationshipName") + "__r"
                if xtype == "MasterDetail":
                    kw.update(master_detail=True, required=True, delete_constraint="Cascade")
                else:
                    kw["delete_constraint"] = t("deleteConstraint", "SetNull")
            if t("externalId") == "true":
                kw["external_id"] = True
            if t("unique") == "true":
                kw["unique"] = True
            if t("caseSensitive") == "true":
                kw["case_sensitive"] = True
            if t("required") == "true":
                kw["required"] = True
            if kind == "boolean":
                kw["default"] = t("defaultValue", "false") == "true"
            if kind in ("picklist", "multipicklist"):
                vals = [v.findtext("m:fullName", "", ns)
                        for v in r.findall("m:valueSet/m:valueSetDefinition/m:value", ns)]
                kw["picklist"] = tuple(vals)
                kw["restricted"] = r.findtext("m:valueSet/m:restricted", "", ns) == "true"
            if xtype in ("Formula",) or t("formula"):
                kw["createable"] = kw["updateable"] = False
            entry["fields"].append(_F(fname, kind, **kw))
        out[name] = entry
    return out


def _standard_types() -> dict:
    types = [
        _mk("Account", "Account", "Accounts", "001", _system_fields() + [
            _F("Name", "string", required=True, label="Account Name"),
            _F("Type", "picklist"), _F("Industry", "picklist"), _F("Website", "url"),
            _F("Description", "textarea"),
        ]),
        _mk("Contact", "Contact", "Contacts", "003", _system_fields() + [
            _F("FirstName", "string", length=40), _F("LastName", "string", length=80,
                                                        required=True),
            _F("Name", "string", length=121).ro(), _F("Email", "email"), _F("Title", "string"),
            _F("Phone", "phone"),
            _F("AccountId", "reference", reference_to=("Account",), relationship_name="Account",
               delete_constraint="SetNull"),
        ]),
        _mk("Opportunity", "Opportunity", "Opportunities", "006", _system_fields() + [
            _F("Name", "string", length=120, required=True, label="Name"),
            _F("AccountId", "reference", reference_to=("Account",), relationship_name="Account",
               delete_constraint="SetNull", label="Account ID"),
            _F("StageName", "picklist", required=True, label="Stage"),
            _F("CloseDate", "date", required=True, label="Close Date"),
            _F("Amount", "currency"), _F("Probability", "percent", label="Probability (%)"),
            _F("IsClosed", "boolean", label="Closed").ro(),
            _F("IsWon", "boolean", label="Won").ro(),
            _F("ForecastCategoryName", "picklist", label="Forecast Category",
               picklist=("Omitted", "Pipeline", "BestCase", "Commit", "Closed")),
            _F("RecordTypeId", "reference", reference_to=("RecordType",),
               relationship_name="RecordType", label="Record Type ID"),
            _F("Type", "picklist"), _F("NextStep", "string", label="Next Step"),
            _F("Description", "textarea"), _F("LeadSource", "picklist", label="Lead Source"),
        ]),
        _mk("User", "User", "Users", "005", [
            _F("Id", "id").ro(), _F("Username", "string").ro(), _F("Name", "string").ro(),
            _F("Email", "email").ro(), _F("IsActive", "boolean").ro(),
            _F("TimeZoneSidKey", "picklist").ro(), _F("LanguageLocaleKey", "picklist").ro(),
            _F("SystemModstamp", "datetime").ro(),
        ], stored=False, writable=False, has_owner=False),
        _mk("RecordType", "Record Type", "Record Types", "012", [
            _F("Id", "id").ro(), _F("Name", "string").ro(), _F("DeveloperName", "string").ro(),
            _F("SobjectType", "picklist").ro(), _F("IsActive", "boolean").ro(),
            _F("BusinessProcessId", "reference", reference_to=("BusinessProcess",),
               relationship_name="BusinessProcess").ro(),
        ], stored=False, writable=False, has_owner=False),
        _mk("BusinessProcess", "Business Process", "Business Processes", "019", [
            _F("Id", "id").ro(), _F("Name", "string").ro(), _F("TableEnumOrId", "string").ro(),
            _F("IsActive", "boolean").ro(),
        ], stored=False, writable=False, has_owner=False),
        _mk("OpportunityStage", "Opportunity Stage", "Opportunity Stages", "01J", [
            _F("Id", "id").ro(), _F("MasterLabel", "string").ro(), _F("ApiName", "string").ro(),
            _F("IsActive", "boolean").ro(), _F("IsClosed", "boolean").ro(),
            _F("IsWon", "boolean").ro(), _F("DefaultProbability", "percent").ro(),
            _F("ForecastCategoryName", "picklist").ro(), _F("SortOrder", "int").ro(),
            _F("SystemModstamp", "datetime").ro(),
        ], stored=False, writable=False, has_owner=False),
        _mk("Organization", "Organization", "Organizations", "00D", [
            _F("Id", "id").ro(), _F("Name", "string").ro(), _F("IsSandbox", "boolean").ro(),
            _F("OrganizationType", "picklist").ro(), _F("NamespacePrefix", "string").ro(),
            _F("InstanceName", "string").ro(),
        ], stored=False, writable=False, has_owner=False),
    ]
    return {t.name.lower(): t for t in types}


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


_NUMERIC = ("double", "percent", "currency", "int")


# --------------------------------------------------------------------------------------------
# SOQL subset
# --------------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(r"""\s*(?:
  (?P<str>'(?:\\.|[^'\\])*')
 |(?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
 |(?P<date>\d{4}-\d{2}-\d{2})
 |(?P<num>-?\d+(?:\.\d+)?)
 |(?P<op><=|>=|!=|<>|=|<|>)
 |(?P<punct>[(),])
 |(?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
)""", re.VERBOSE)
_ESC = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def _malformed(msg: str) -> ApiError:
    return ApiError(400, "MALFORMED_QUERY", msg)


def _tokenize(q: str) -> list:
    out, pos, q = [], 0, q.rstrip()
    while pos < len(q):
        m = _TOKEN_RE.match(q, pos)
        if not m or m.end() == pos:
            raise _malformed(f"unexpected token: '{q[pos:].strip()[:20]}'")
        pos = m.end()
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "str":
            val = re.sub(r"\\(.)", lambda mm: _ESC.get(mm.group(1), mm.group(1)), val[1:-1])
        out.append((kind, val))
    return out


class _Parser:
    def __init__(self, q: str):
        self.toks = _tokenize(q)
        self.i = 0

    def peek(self, k: int = 0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else (None, None)

    def kw(self, *words) -> bool:
        kind, val = self.peek()
        if kind == "ident" and val.upper() == words[0]:
            for n, w in enumerate(words[1:], 1):
                k2, v2 = self.peek(n)
                if k2 != "ident" or v2.upper() != w:
                    return False
            self.i += len(words)
            return True
        return False

    def expect(self, kind, val=None):
        k, v = self.peek()
        if k != kind or (val is not None and (v or "").upper() != val):
            raise _malformed(f"unexpected token: '{v}'" if v else "unexpected end of query")
        self.i += 1
        return v

    def query(self) -> dict:
        if not self.kw("SELECT"):
            raise _malformed("unexpected token: expected SELECT")
        q: dict = {"fields": [], "count": False, "where": None, "order": [], "limit": None,
                   "offset": 0}
        while True:
            k, v = self.peek()
            if k == "ident" and v.upper() == "COUNT" and self.peek(1) == ("punct", "("):
                self.i += 2
                self.expect("punct", ")")
                q["count"] = True
            else:
                q["fields"].append(self.expect("ident"))
            if self.peek() == ("punct", ","):
                self.i += 1
                continue
            break
        if not self.kw("FROM"):
            raise _malformed("unexpected token: expected FROM")
        q["type"] = self.expect("ident")
        if self.kw("WHERE"):
            q["where"] = self.expr()
        if self.kw("WITH"):
            self.expect("ident")
        if self.kw("ORDER", "BY"):
            while True:
                path = self.expect("ident")
                desc = False
                if self.kw("DESC"):
                    desc = True
                else:
                    self.kw("ASC")
                nulls_first = not desc
                if self.kw("NULLS", "FIRST"):
                    nulls_first = True
                elif self.kw("NULLS", "LAST"):
                    nulls_first = False
                q["order"].append((path, desc, nulls_first))
                if self.peek() == ("punct", ","):
                    self.i += 1
                    continue
                break
        if self.kw("LIMIT"):
            q["limit"] = int(self.expect("num"))
        if self.kw("OFFSET"):
            q["offset"] = int(self.expect("num"))
            if q["offset"] > 2000:
                raise ApiError(400, "NUMBER_OUTSIDE_VALID_RANGE",
                               "Maximum SOQL offset allowed is 2000")
        return q

    def done(self) -> bool:
        return self.i >= len(self.toks)

    def expr(self):
        left = self.term()
        while self.kw("OR"):
            left = ("or", left, self.term())
        return left

    def term(self):
        left = self.factor()
        while self.kw("AND"):
            left = ("and", left, self.factor())
        return left

    def factor(self):
        if self.kw("NOT"):
            return ("not", self.factor())
        if self.peek() == ("punct", "("):
            self.i += 1
            e = self.expr()
            self.expect("punct", ")")
            return e
        path = self.expect("ident")
        if self.kw("NOT", "IN"):
            return ("in", path, True, self.in_values())
        if self.kw("IN"):
            return ("in", path, False, self.in_values())
        if self.kw("LIKE"):
            k, v = self.peek()
            if k != "str":
                raise _malformed("LIKE needs a string literal")
            self.i += 1
            return ("like", path, v)
        op = self.expect("op")
        return ("cmp", path, "!=" if op == "<>" else op, self.literal())

    def in_values(self):
        self.expect("punct", "(")
        if self.peek()[0] == "ident" and self.peek()[1].upper() == "SELECT":
            depth, start = 0, self.i
            while True:
                k, v = self.peek()
                if k is None:
                    raise _malformed("unbalanced parentheses")
                if (k, v) == ("punct", "("):
                    depth += 1
                if (k, v) == ("punct", ")"):
                    if depth == 0:
                        break
                    depth -= 1
                self.i += 1
            sub = _Parser.__new__(_Parser)
            sub.toks, sub.i = self.toks[start:self.i], 0
            self.i += 1
            parsed = sub.query()
            return ("sub", parsed)
        vals = [self.literal()]
        while self.peek() == ("punct", ","):
            self.i += 1
            vals.append(self.literal())
        self.expect("punct", ")")
        return vals

    def literal(self):
        k, v = self.peek()
        if k is None:
            raise _malformed("unexpected end of query")
        self.i += 1
        if k == "str":
            return ("str", v)
        if k == "num":
            return ("num", float(v))
        if k == "date":
            return ("date", v)
        if k == "dt":
            return ("dt", _parse_dt(v))
        if k == "ident" and v.upper() in ("TRUE", "FALSE"):
            return ("bool", v.upper() == "TRUE")
        if k == "ident" and v.upper() == "NULL":
            return ("null", None)
        raise _malformed(f"unexpected token: '{v}'")


def _soql_type_name(f: _Field) -> str:
    return {"datetime": "dateTime", "date": "date", "boolean": "boolean", "id": "id",
            "reference": "id"}.get(f.type, "double" if f.type in _NUMERIC else "string")


# --------------------------------------------------------------------------------------------
# sandbox
# --------------------------------------------------------------------------------------------
class SalesforceSandbox:
    """All emulator state. Thread-safe (one lock). See the module docstring."""

    def __init__(self, clock: Clock | None = None, daily_api_limit: int = DAILY_API_LIMIT,
                 latest_api_version: str = DEFAULT_LATEST_API_VERSION,
                 query_batch_size: int = MAX_BATCH, package_source: str | None = "auto",
                 timeout_delay: float = 2.0, call_log_size: int = 100_000):
        self.clock = clock or Clock()
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
        self.calls: deque = deque(maxlen=call_log_size)   # newest CallRecords
        self._call_counts: Counter = Counter()            # (org_id, endpoint) -> n, unbounded
        self.faults: list = []
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
                session_timeout: float = SESSION_TIMEOUT) -> Org:
        """Add an org with an admin user and the standard sales process.

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
            self.add_sales_process(org, "Standard", [s.label for s in org.stages])
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
        if fault not in FAULT_KINDS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULT_KINDS}")
        with self.lock:
            self.faults.append(_Fault(fault, times, path_contains, options))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def _take_fault(self, kinds: Iterable[str], path: str) -> _Fault | None:
        for f in self.faults:
            if f.kind in kinds and (f.path_contains is None or f.path_contains in path):
                f.times -= 1
                if f.times <= 0:
                    self.faults.remove(f)
                return f
        return None

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
        with self.lock:
            oid = self.org(org).id if org else None
            out: Counter = Counter()
            for (o, endpoint), n in self._call_counts.items():
                if oid is None or o == oid:
                    out[endpoint] += n
            return out

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()
            self._call_counts.clear()

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

    def rep_undelete(self, org: Org | str, sobject: str, record_id: str) -> None:
        with self.lock:
            org = self.org(org)
            st = self._stype(org, sobject)
            rid = normalize_id(record_id)
            rec = org.records.get(st.name.lower(), {}).get(rid)
            if rec is None or not rec["IsDeleted"]:
                raise ApiError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin")
            self._journal_put(org, st, rid)
            rec["IsDeleted"] = False
            self._stamp(org, rec, org.admin.id)

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


class SandboxApp:
    """The WSGI app. ``create_app(sandbox)`` returns one."""

    def __init__(self, sandbox: SalesforceSandbox):
        self.sb = sandbox

    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    # ---- entry ------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        sb = self.sb
        path = request.path.rstrip("/") or "/"
        with sb.lock:
            fault = sb._take_fault(("timeout",), path)
        if fault:
            time.sleep(float(fault.options.get("delay", sb.timeout_delay)))
        with sb.lock:
            org_id: str | None = None
            endpoint = f"{request.method} {path}"
            try:
                fault = sb._take_fault(("500", "503"), path)
                if fault and fault.kind == "500":
                    response = _json([{"message": "An unexpected error occurred. Please include "
                                       "this ErrorId if you contact support: 1234567890-12345 "
                                       "(-1234567890)", "errorCode": "UNKNOWN_EXCEPTION"}], 500)
                elif fault:
                    response = _json([{"message": "Server is temporarily unavailable",
                                       "errorCode": "SERVER_UNAVAILABLE"}], 503)
                elif path.startswith("/services/oauth2/"):
                    endpoint = f"{request.method} {path}"
                    response = self.oauth(request, path)
                elif path.startswith("/id/"):
                    endpoint = f"{request.method} /id/{{org}}/{{user}}"
                    response = self.identity(request, path)
                elif path == "/services/data":
                    response = self.versions(request)
                elif path.startswith("/services/data/"):
                    endpoint, org_id, response = self.data(request, path)
                else:
                    response = _json([{"errorCode": "NOT_FOUND",
                                       "message": "The requested resource does not exist"}], 404)
            except Exception as exc:  # noqa: BLE001 - an emulator bug must still answer
                traceback.print_exc()
                response = _json([{"message": f"sandbox error: {exc!r}",
                                   "errorCode": "UNKNOWN_EXCEPTION"}], 500)
            sb.calls.append(CallRecord(sb.clock.now(), request.method, request.path, endpoint,
                                       response.status_code, org_id))
            sb._call_counts[(org_id, endpoint)] += 1
            return response

    # ---- OAuth --------------------------------------------------------------------------------
    def oauth(self, request: Request, path: str) -> Response:
        try:
            if path == "/services/oauth2/authorize":
                return self.authorize(request)
            if path == "/services/oauth2/token" and request.method == "POST":
                return self.token(request)
            if path == "/services/oauth2/revoke" and request.method in ("POST", "GET"):
                return self.revoke(request)
            if path == "/services/oauth2/introspect" and request.method == "POST":
                return self.introspect(request)
            if path == "/services/oauth2/userinfo":
                return self.userinfo(request)
        except _OAuthError as e:
            return _json({"error": e.error, "error_description": e.description}, e.status)
        return Response("Not Found", status=404)

    def _client_creds(self, request: Request) -> tuple:
        auth = request.authorization
        if auth and auth.type == "basic":
            return auth.username, auth.password
        return request.form.get("client_id"), request.form.get("client_secret")

    def authorize(self, request: Request) -> Response:
        sb = self.sb
        params = request.args if request.method == "GET" else request.form
        app = sb.apps.get(params.get("client_id", ""))
        if app is None:
            return self._page("Error", "<p>error=invalid_client_id: client identifier "
                                       "invalid</p>", 400)
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or (app.redirect_uris and redirect_uri not in app.redirect_uris):
            return self._page("Error", "<p>error=redirect_uri_mismatch: redirect_uri must match "
                                       "configuration</p>", 400)
        state = params.get("state")

        def back(**q) -> Response:
            if state is not None:
                q["state"] = state
            parts = urlsplit(redirect_uri)
            query = (parts.query + "&" if parts.query else "") + urlencode(q)
            return Response(status=302, headers={
                "Location": urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))})

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type",
                        error_description="response type not supported")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method", "S256")
        if app.require_pkce and not challenge:
            return back(error="invalid_request",
                        error_description="missing required code challenge")
        if challenge and method != "S256":
            return back(error="invalid_request",
                        error_description="invalid code challenge method")
        scope = params.get("scope") or " ".join(app.scopes)
        choice = None
        if request.method == "POST":
            if params.get("action") != "allow":
                return back(error="access_denied",
                            error_description="end-user denied authorization")
            choice = params.get("login", "")
        elif sb.auto_approve:
            if sb.auto_approve is True:
                org = next(iter(sb.orgs.values()))
                choice = f"{org.id}:{org.admin.id}"
            else:
                choice = ":".join(sb.auto_approve)
        if choice is None:
            return self.login_page(app, params, scope)
        org_id, _, user_id = choice.partition(":")
        org = sb.orgs.get(normalize_id(org_id) or "")
        user = org.users.get(normalize_id(user_id) or "") if org else None
        if org is None or user is None:
            return self._page("Error", "<p>Please choose a user.</p>", 400)
        may = user.can_approve_uninstalled_apps
        if may is None:
            may = user.is_admin
        if not org.package_installed and not may:
            return back(error="invalid_client",
                        error_description="app must be installed into org")
        code = "aPrx" + secrets.token_urlsafe(40)
        sb.auth_codes[code] = _AuthCode(code, app.client_id, redirect_uri, org.id, user.id,
                                        scope, challenge,
                                        sb.clock.now() + timedelta(seconds=AUTH_CODE_TTL))
        return back(code=code)

    def login_page(self, app: ConnectedApp, params, scope: str) -> Response:
        hint = params.get("login_hint", "")
        options = []
        for org in self.sb.orgs.values():
            for u in org.users.values():
                label = (f"{u.username} — {org.name}"
                         f"{' (sandbox)' if org.is_sandbox else ''}"
                         f"{'' if org.package_installed else ' [package not installed]'}"
                         f" [{org.my_domain_host}]")
                sel = " selected" if hint and hint == u.username else ""
                options.append(f'<option value="{org.id}:{u.id}"{sel}>{html.escape(label)}'
                               f'</option>')
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items(multi=True)
                         if k not in ("action", "login"))
        body = (f"<h1>Log in to Salesforce (sandbox)</h1>"
                f"<form method=\"post\" action=\"/services/oauth2/authorize\">{hidden}"
                f"<p><label for=\"login\">Org and user</label> "
                f"<select id=\"login\" name=\"login\">{''.join(options)}</select></p>"
                f"<h2>Allow Access?</h2><p><b>{html.escape(app.name)}</b> is asking to: "
                f"{html.escape(scope)}</p>"
                f"<button type=\"submit\" name=\"action\" value=\"allow\" id=\"oaapprove\">Allow"
                f"</button> <button type=\"submit\" name=\"action\" value=\"deny\" "
                f"id=\"oadeny\">Deny</button></form>")
        return self._page("Log in | Salesforce sandbox", body)

    def _page(self, title: str, body: str, status: int = 200) -> Response:
        return Response(f"<!doctype html><html><head><meta charset=\"utf-8\"><title>"
                        f"{html.escape(title)}</title></head><body>{body}</body></html>",
                        status=status, content_type="text/html; charset=utf-8")

    def token(self, request: Request) -> Response:
        sb = self.sb
        form = request.form
        client_id, secret = self._client_creds(request)
        app = sb.apps.get(client_id or "")
        if app is None:
            raise _OAuthError("invalid_client_id", "client identifier invalid")
        grant = form.get("grant_type")
        if grant not in ("authorization_code", "refresh_token"):
            raise _OAuthError("unsupported_grant_type", "grant type not supported")
        if secret is not None and secret != app.client_secret:
            raise _OAuthError("invalid_client", "invalid client credentials")
        if app.require_secret and secret is None:
            raise _OAuthError("invalid_client", "invalid client credentials")
        base = request.host_url
        if grant == "authorization_code":
            code = sb.auth_codes.get(form.get("code", ""))
            if code is None or code.client_id != app.client_id or code.used:
                if code is not None:
                    code.used = True
                raise _OAuthError("invalid_grant", "invalid authorization code")
            if sb.clock.now() > code.expires_at:
                raise _OAuthError("invalid_grant", "expired authorization code")
            if form.get("redirect_uri") != code.redirect_uri:
                raise _OAuthError("redirect_uri_mismatch",
                                  "redirect_uri must match configuration")
            if code.challenge:
                verifier = form.get("code_verifier")
                computed = base64.urlsafe_b64encode(
                    hashlib.sha256((verifier or "").encode()).digest()).decode().rstrip("=")
                if not verifier or not hmac.compare_digest(computed, code.challenge):
                    raise _OAuthError("invalid_grant", "invalid code verifier")
            elif form.get("code_verifier"):
                raise _OAuthError("invalid_grant", "invalid code verifier")
            code.used = True
            org = sb.orgs[code.org_id]
            return _json(sb._token_response(app, org, org.users[code.user_id], code.scope, base,
                                            new_refresh=True),
                         headers={"Cache-Control": "no-cache,must-revalidate,max-age=0,"
                                                   "no-store,private"})
        rt = sb.refresh_tokens.get(form.get("refresh_token", ""))
        if rt is None or rt.revoked or rt.client_id != app.client_id or \
                rt.org_id not in sb.orgs or rt.user_id not in sb.orgs[rt.org_id].users:
            raise _OAuthError("invalid_grant", "expired access/refresh token")
        org = sb.orgs[rt.org_id]
        if app.rotate_refresh_tokens:
            rt.revoked = True
            body = sb._token_response(app, org, org.users[rt.user_id], rt.scope, base,
                                      new_refresh=True)
        else:
            body = sb._token_response(app, org, org.users[rt.user_id], rt.scope, base,
                                      new_refresh=False, refresh=rt)
        return _json(body, headers={"Cache-Control": "no-cache,must-revalidate,max-age=0,"
                                                     "no-store,private"})

    def revoke(self, request: Request) -> Response:
        sb = self.sb
        token = request.values.get("token", "")
        s = sb.sessions.get(token)
        if s is not None and not s.revoked:
            s.revoked = True
            return Response(status=200)
        rt = sb.refresh_tokens.get(token)
        if rt is not None and not rt.revoked:
            rt.revoked = True
            for s in sb.sessions.values():
                if s.refresh_token == token:
                    s.revoked = True
            return Response(status=200)
        raise _OAuthError("invalid_token", "invalid token")

    def introspect(self, request: Request) -> Response:
        sb = self.sb
        client_id, secret = self._client_creds(request)
        app = sb.apps.get(client_id or "")
        if app is None or secret != app.client_secret:
            raise _OAuthError("invalid_client", "invalid client credentials", 401)
        token = request.form.get("token", "")
        s = sb._session(token) if token in sb.sessions else None
        if s is not None:
            user = sb.orgs[s.org_id].users[s.user_id]
            return _json({"active": True, "scope": s.scope, "client_id": s.client_id,
                          "username": user.username, "sub": f"{request.host_url}id/{s.org_id}/"
                                                           f"{s.user_id}",
                          "token_type": "access_token", "iat": int(s.issued_at.timestamp()),
                          "nbf": int(s.issued_at.timestamp()),
                          "exp": int(s.last_used.timestamp()
                                     + sb.orgs[s.org_id].session_timeout)})
        rt = sb.refresh_tokens.get(token)
        if rt is not None and not rt.revoked:
            user = sb.orgs[rt.org_id].users[rt.user_id]
            return _json({"active": True, "scope": rt.scope, "client_id": rt.client_id,
                          "username": user.username, "token_type": "refresh_token",
                          "sub": f"{request.host_url}id/{rt.org_id}/{rt.user_id}",
                          "iat": int(rt.created_at.timestamp())})
        return _json({"active": False})

    def _bearer(self, request: Request) -> _Session | None:
        auth = request.headers.get("Authorization", "")
        token = None
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        elif auth[:6].lower() == "oauth ":
            token = auth[6:].strip()
        token = token or request.args.get("oauth_token")
        return self.sb._session(token)

    def _user_doc(self, request: Request, org: Org, user: User, version: str | None) -> dict:
        inst = (org.instance_url or request.host_url).rstrip("/")
        v = version or "{version}"
        if v == "latest":
            v = self.sb.latest_api_version
        urls = {
            "enterprise": f"{inst}/services/Soap/c/{v}/{org.id}",
            "metadata": f"{inst}/services/Soap/m/{v}/{org.id}",
            "partner": f"{inst}/services/Soap/u/{v}/{org.id}",
            "rest": f"{inst}/services/data/v{v}/",
            "sobjects": f"{inst}/services/data/v{v}/sobjects/",
            "search": f"{inst}/services/data/v{v}/search/",
            "query": f"{inst}/services/data/v{v}/query/",
            "recent": f"{inst}/services/data/v{v}/recent/",
            "tooling_rest": f"{inst}/services/data/v{v}/tooling/",
            "profile": f"{inst}/{user.id}",
            "users": f"{inst}/services/data/v{v}/chatter/users",
            "custom_domain": f"https://{org.my_domain_host}",
        }
        return urls

    def identity(self, request: Request, path: str) -> Response:
        sb = self.sb
        parts = path.split("/")
        s = self._bearer(request)
        if s is None:
            return Response("Bad_OAuth_Token", status=403, content_type="text/plain")
        if len(parts) != 4:
            return Response("Bad_Id", status=404, content_type="text/plain")
        org_id, user_id = normalize_id(parts[2]), normalize_id(parts[3])
        org = sb.orgs.get(org_id or "")
        if org is None or org.id != s.org_id or user_id not in org.users:
            return Response("Bad_Id", status=403, content_type="text/plain")
        user = org.users[user_id]
        first, _, last = user.name.partition(" ")
        return _json({
            "id": f"{request.host_url}id/{org.id}/{user.id}", "asserted_user": user.id == s.user_id,
            "user_id": user.id, "organization_id": org.id, "username": user.username,
            "nick_name": user.username.split("@")[0], "display_name": user.name,
            "email": user.email, "email_verified": True, "first_name": first, "last_name": last,
            "timezone": user.timezone, "photos": {}, "status": {"created_date": None,
                                                                "body": None},
            "urls": self._user_doc(request, org, user, request.args.get("version")),
            "active": user.active, "user_type": "STANDARD", "language": user.language,
            "locale": user.locale, "utcOffset": -28800000,
            "last_modified_date": _fmt_dt(sb.clock.now()),
            "is_app_installed": org.package_installed,
        })

    def userinfo(self, request: Request) -> Response:
        s = self._bearer(request)
        if s is None:
            return Response("Bad_OAuth_Token", status=403, content_type="text/plain")
        org = self.sb.orgs[s.org_id]
        user = org.users[s.user_id]
        first, _, last = user.name.partition(" ")
        return _json({
            "sub": f"{request.host_url}id/{org.id}/{user.id}", "user_id": user.id,
            "organization_id": org.id, "preferred_username": user.username,
            "nickname": user.username.split("@")[0], "name": user.name, "email": user.email,
            "email_verified": True, "given_name": first, "family_name": last,
            "zoneinfo": user.timezone, "photos": {},
            "urls": self._user_doc(request, org, user, request.args.get("version")),
            "active": user.active, "user_type": "STANDARD", "language": user.language,
            "locale": user.locale, "utcOffset": -28800000,
            "updated_at": _fmt_dt(self.sb.clock.now()),
            "is_app_installed": org.package_installed,
        })

    # ---- REST ---------------------------------------------------------------------------------
    def versions(self, request: Request) -> Response:
        latest = int(float(self.sb.latest_api_version))
        return _json([{"label": _release_label(v), "url": f"/services/data/v{v}.0",
                       "version": f"{v}.0"} for v in range(MIN_API_VERSION, latest + 1)])

    def data(self, request: Request, path: str) -> tuple:
        sb = self.sb
        parts = path.split("/")[3:]          # ['v66.0', 'sobjects', ...]
        m = _VERSION_RE.match(parts[0])
        endpoint = f"{request.method} /services/data/vXX.X/" + "/".join(
            _endpoint_shape(parts[1:]))
        endpoint = endpoint.rstrip("/")
        if not m:
            return endpoint, None, _json([{"errorCode": "NOT_FOUND", "message":
                                           "The requested resource does not exist"}], 404)
        major = int(m.group(1))
        if major < MIN_API_VERSION:
            return endpoint, None, _json([{"errorCode": "GONE", "message":
                                           "This version of the API has been retired."}], 410)
        if major > int(float(sb.latest_api_version)):
            return endpoint, None, _json([{"errorCode": "NOT_FOUND", "message":
                                           "The requested resource does not exist"}], 404)
        session = self._bearer(request)
        if session is None:
            return endpoint, None, _json([{"message": "Session expired or invalid",
                                           "errorCode": "INVALID_SESSION_ID"}], 401)
        org = sb.orgs[session.org_id]
        fault = sb._take_fault(("invalid_session", "request_limit"), path)
        if fault and fault.kind == "invalid_session":
            session.revoked = True
            return endpoint, org.id, _json([{"message": "Session expired or invalid",
                                             "errorCode": "INVALID_SESSION_ID"}], 401)
        limit_header = lambda: {"Sforce-Limit-Info":
                                f"api-usage={org.api_usage()}/{org.daily_api_limit}"}
        if fault or org.api_usage() >= org.daily_api_limit:
            return endpoint, org.id, _json([{"message": "TotalRequests Limit exceeded.",
                                             "errorCode": "REQUEST_LIMIT_EXCEEDED"}], 403,
                                           limit_header())
        org.api_calls.append(sb.clock.now())
        ctx = _Ctx(org, session, f"{m.group(1)}.{m.group(2)}", request.headers)
        raw = request.get_data()
        body: Any = None
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise ApiError(400, "JSON_PARSER_ERROR",
                                   "Unexpected character: was expecting a JSON value") from None
            if request.method in ("POST", "PATCH", "PUT", "DELETE"):
                lock = sb._take_fault(("unable_to_lock_row",), path) \
                    if parts[1:2] != ["composite"] else None
                if lock:
                    raise ApiError(400, "UNABLE_TO_LOCK_ROW",
                                   "unable to obtain exclusive access to this record or 1 "
                                   "records: " + (parts[-1] if len(parts) > 3 else ""))
            status, payload, headers = self.rest(ctx, request.method, parts[1:],
                                                 dict(request.args.items()), body, path)
        except ApiError as e:
            status, payload, headers = e.status, e.body(), {}
        headers = dict(headers or {})
        headers.update(limit_header())
        if status == 204:
            resp = Response(status=204)
            del resp.headers["Content-Type"]
            for k, v in headers.items():
                resp.headers[k] = v
        else:
            resp = _json(payload, status, headers)
        return endpoint, org.id, resp

    def rest(self, ctx: _Ctx, method: str, parts: list, args: dict, body: Any,
             path: str = "", in_composite: bool = False) -> tuple:
        """Dispatch one REST call below /services/data/vXX.X/. Returns (status, body, headers)."""
        org, v = ctx.org, ctx.version
        p = [x for x in parts if x != ""]
        n = len(p)

        def allow(*methods):
            if method not in methods:
                raise ApiError(405, "METHOD_NOT_ALLOWED",
                               f"HTTP Method '{method}' not allowed. Allowed are "
                               f"{','.join(methods)}")

        if n == 0:
            allow("GET")
            base = f"/services/data/v{v}"
            return 200, {k: f"{base}/{k}" for k in (
                "sobjects", "query", "queryAll", "composite", "limits", "search", "ui-api")}, {}
        head = p[0]
        if head == "sobjects":
            return self.sobjects(ctx, method, p[1:], args, body, allow)
        if head in ("query", "queryAll"):
            allow("GET")
            if n == 2:
                return 200, self.query_more(ctx, p[1]), {}
            if "q" not in args:
                raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
            return 200, self.query(ctx, args["q"], head == "queryAll"), {}
        if head == "composite":
            if n == 1:
                allow("POST")
                if in_composite:
                    raise ApiError(400, "INVALID_INPUT", "Composite can't be nested")
                return 200, self.composite(ctx, body, path), {}
            if p[1] == "sobjects":
                return self.collections(ctx, method, p[2:], args, body, path, allow)
        if head == "limits" and n == 1:
            allow("GET")
            used = org.api_usage()
            return 200, {
                "DailyApiRequests": {"Max": org.daily_api_limit,
                                     "Remaining": max(0, org.daily_api_limit - used)},
                "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
                "DataStorageMB": {"Max": 5, "Remaining": 5},
                "FileStorageMB": {"Max": 20, "Remaining": 20},
            }, {}
        if head == "ui-api" and n == 6 and p[1] == "object-info" and p[3] == "picklist-values":
            allow("GET")
            return 200, self.picklist_values(ctx, p[2], p[4], p[5]), {}
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    # ---- sobjects -----------------------------------------------------------------------------
    def sobjects(self, ctx: _Ctx, method: str, p: list, args: dict, body: Any, allow) -> tuple:
        sb, org, v = self.sb, ctx.org, ctx.version
        if not p:
            allow("GET")
            return 200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
                self._describe_basic(st, v) for st in sorted(org.schema.values(),
                                                             key=lambda s: s.name)]}, {}
        st = sb._stype(org, p[0], ctx.default_ns)
        n = len(p)
        if n == 1:
            allow("GET", "POST")
            if method == "GET":
                return 200, {"objectDescribe": self._describe_basic(st, v),
                             "recentItems": []}, {}
            rid = sb._write(org, st, None, body, ctx.user_id, ctx.default_ns)
            return 201, {"id": rid, "success": True, "errors": []}, {
                "Location": f"/services/data/v{v}/sobjects/{st.name}/{rid}"}
        if n == 2 and p[1] == "describe":
            allow("GET")
            return 200, self._describe(org, st, v), {}
        if n == 2 and p[1] in ("updated", "deleted"):
            allow("GET")
            return 200, self._changed(org, st, p[1], args), {}
        if n == 2:
            allow("GET", "PATCH", "DELETE")
            if method == "GET":
                rid = sb._existing(org, st, p[1])
                rec = org.records[st.name.lower()][rid]
                return 200, sb._serialize(st, rec, v, self._fields_arg(org, st, args, ctx)), {}
            if method == "PATCH":
                rid = sb._existing(org, st, p[1])
                sb._write(org, st, rid, body, ctx.user_id, ctx.default_ns)
                return 204, None, {}
            rid = sb._existing(org, st, p[1])
            sb._delete(org, st, rid, ctx.user_id)
            return 204, None, {}
        if n == 3:
            allow("GET", "PATCH", "DELETE", "POST")
            f = sb._field(org, st, p[1], ctx.default_ns)
            if f is None or not (f.external_id or f.name == "Id"):
                raise ApiError(404, "NOT_FOUND",
                               f"Provided external ID field does not exist or is not "
                               f"accessible: {p[1]}")
            value = p[2]
            matches = self._match_ext(org, st, f, value)
            if method == "GET":
                if not matches:
                    raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
                if len(matches) > 1:
                    raise ApiError(300, "MULTIPLE_CHOICES", "Multiple records match")
                rec = org.records[st.name.lower()][matches[0]]
                return 200, sb._serialize(st, rec, v, self._fields_arg(org, st, args, ctx)), {}
            if method == "DELETE":
                if not matches:
                    raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
                sb._delete(org, st, matches[0], ctx.user_id)
                return 204, None, {}
            return self._upsert(ctx, st, f, value, body, matches)
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    def _match_ext(self, org: Org, st: _SType, f: _Field, value: str) -> list:
        table = org.records.get(st.name.lower(), {})
        if f.name == "Id":
            rid = normalize_id(value)
            return [rid] if rid in table and not table[rid]["IsDeleted"] else []
        lv = value if f.case_sensitive else value.lower()
        return [rid for rid, r in table.items() if not r["IsDeleted"] and r.get(f.name) is not None
                and (r[f.name] if f.case_sensitive else str(r[f.name]).lower()) == lv]

    def _upsert(self, ctx: _Ctx, st: _SType, f: _Field, value: str, body: Any,
                matches: list) -> tuple:
        sb, org, v = self.sb, ctx.org, ctx.version
        if len(matches) > 1:
            raise ApiError(300, "MULTIPLE_CHOICES", "Multiple records match the external id")
        data = dict(body) if isinstance(body, dict) else body
        if isinstance(data, dict):
            for k in list(data):
                kf = sb._field(org, st, k, ctx.default_ns)
                if kf is not None and kf.name == f.name:
                    if str(data[k]).lower() != value.lower():
                        raise ApiError(400, "INVALID_FIELD",
                                       f"The value of the external ID field in the body "
                                       f"({data[k]}) doesn't match the URL ({value})", [f.name])
                    data.pop(k)
        if matches:
            sb._write(org, st, matches[0], data, ctx.user_id, ctx.default_ns)
            if float(v) >= 46:
                return 200, {"id": matches[0], "success": True, "errors": [],
                             "created": False}, {}
            return 204, None, {}
        if f.name == "Id":
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if isinstance(data, dict):
            data[f.name] = value
        rid = sb._write(org, st, None, data, ctx.user_id, ctx.default_ns)
        return 201, {"id": rid, "success": True, "errors": [], "created": True}, {
            "Location": f"/services/data/v{v}/sobjects/{st.name}/{rid}"}

    def _fields_arg(self, org: Org, st: _SType, args: dict, ctx: _Ctx) -> list | None:
        if not args.get("fields"):
            return None
        out = []
        for name in args["fields"].split(","):
            f = self.sb._field(org, st, name.strip(), ctx.default_ns)
            if f is None:
                raise ApiError(400, "INVALID_FIELD",
                               f"No such column '{name.strip()}' on sobject of type {st.name}")
            out.append(f)
        return out

    def _changed(self, org: Org, st: _SType, which: str, args: dict) -> dict:
        start, end = _parse_dt(args.get("start", "")), _parse_dt(args.get("end", ""))
        if start is None or end is None:
            raise ApiError(400, "INVALID_INPUT", "start and end must be ISO 8601 date-times")
        rows = org.records.get(st.name.lower(), {}).values()
        sel = [r for r in rows if start <= r["SystemModstamp"] <= end
               and r["IsDeleted"] == (which == "deleted")]
        latest = _fmt_dt(end.replace(second=0))
        if which == "updated":
            return {"ids": [r["Id"] for r in sel], "latestDateCovered": latest}
        return {"deletedRecords": [{"id": r["Id"], "deletedDate": _fmt_dt(r["SystemModstamp"])}
                                   for r in sel],
                "earliestDateAvailable": _fmt_dt(self.sb.clock.now() - timedelta(days=15)),
                "latestDateCovered": latest}

    def _describe_basic(self, st: _SType, v: str) -> dict:
        base = f"/services/data/v{v}/sobjects/{st.name}"
        return {"name": st.name, "label": st.label, "labelPlural": st.label_plural,
                "keyPrefix": st.key_prefix, "custom": st.custom, "queryable": True,
                "createable": st.writable, "updateable": st.writable, "deletable": st.writable,
                "retrieveable": True, "searchable": st.stored, "layoutable": st.stored,
                "urls": {"sobject": base, "describe": f"{base}/describe",
                         "rowTemplate": f"{base}/{{ID}}"}}

    def _describe(self, org: Org, st: _SType, v: str) -> dict:
        d = self._describe_basic(st, v)
        fields = []
        for f in st.fields.values():
            pick = []
            if f.name == "StageName" and st.name == "Opportunity":
                pick = [{"active": s.is_active, "defaultValue": False, "label": s.label,
                         "value": s.api_name, "validFor": None} for s in org.stages]
            elif f.picklist:
                pick = [{"active": True, "defaultValue": False, "label": p.replace("_", " "),
                         "value": p, "validFor": None} for p in f.picklist]
            fields.append({
                "name": f.name, "label": f.label, "type": f.type, "length": f.length,
                "custom": f.custom, "externalId": f.external_id, "unique": f.unique,
                "caseSensitive": f.case_sensitive, "idLookup": f.external_id or f.name == "Id",
                "nillable": not f.required and f.type != "boolean" and f.name != "Id",
                "createable": f.createable, "updateable": f.updateable,
                "defaultedOnCreate": f.type == "boolean" or f.name in ("OwnerId",),
                "calculated": False, "referenceTo": list(f.reference_to),
                "relationshipName": f.relationship_name, "cascadeDelete":
                    f.delete_constraint == "Cascade", "restrictedPicklist": f.restricted
                    or f.name == "StageName", "picklistValues": pick,
                "soapType": "xsd:" + {"datetime": "dateTime", "boolean": "boolean",
                                      "date": "date", "int": "int"}.get(
                    f.type, "double" if f.type in _NUMERIC else "string"),
            })
        d["fields"] = fields
        children = []
        for cst in org.schema.values():
            for f in cst.fields.values():
                if st.name in f.reference_to and cst.stored and f.custom:
                    children.append({"childSObject": cst.name, "field": f.name,
                                     "cascadeDelete": f.delete_constraint == "Cascade",
                                     "relationshipName": f.child_relationship_name})
        d["childRelationships"] = children
        rts = []
        if st.name == "Opportunity":
            rts.append({"active": True, "available": True, "defaultRecordTypeMapping":
                        not org.record_types, "developerName": "Master", "master": True,
                        "name": "Master", "recordTypeId": "012000000000000AAA"})
            for rt in org.record_types.values():
                rts.append({"active": rt.is_active, "available": True,
                            "defaultRecordTypeMapping": False, "developerName": rt.developer_name,
                            "master": False, "name": rt.name, "recordTypeId": rt.id})
        d["recordTypeInfos"] = rts
        return d

    def picklist_values(self, ctx: _Ctx, sobject: str, rt_id: str, field_name: str) -> dict:
        org = ctx.org
        st = self.sb._stype(org, sobject)
        f = st.field(field_name)
        if f is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if st.name == "Opportunity" and f.name == "StageName":
            labels = [s.label for s in org.stages if s.is_active]
            rt = org.record_types.get(normalize_id(rt_id) or "")
            if rt is None and rt_id != "012000000000000AAA":
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
            if rt and rt.sales_process:
                allowed = org.sales_processes[rt.sales_process].stages
                labels = [x for x in labels if x in allowed]
        else:
            labels = list(f.picklist)
        return {"controllerValues": {}, "defaultValue": None, "eTag": hashlib.md5(
            "|".join(labels).encode()).hexdigest(),
            "url": f"/services/data/v{ctx.version}/ui-api/object-info/{st.name}/picklist-values/"
                   f"{rt_id}/{f.name}",
            "values": [{"attributes": None, "label": x, "validFor": [], "value": x}
                       for x in labels]}

    # ---- query ------------------------------------------------------------------------------
    def _resolve_path(self, org: Org, st: _SType, path: str, ctx: _Ctx) -> tuple:
        """(getter(record) -> value, final _Field, [(relationship field, target stype)...])."""
        sb = self.sb
        parts = path.split(".")
        chain = []
        cur = st
        for rel in parts[:-1]:
            ref = None
            for f in cur.fields.values():
                if f.relationship_name and (f.relationship_name.lower() == rel.lower() or (
                        ctx.default_ns and f.relationship_name.lower()
                        == f"{ctx.default_ns}__{rel}".lower())):
                    ref = f
                    break
            if ref is None:
                raise ApiError(400, "INVALID_FIELD",
                               f"Didn't understand relationship '{rel}' in field path. If you "
                               f"are attempting to use a custom relationship, be sure to append "
                               f"the '__r' after the custom relationship name.")
            target = org.stype(ref.reference_to[0])
            if target is None:
                raise ApiError(400, "INVALID_FIELD", f"No such relationship '{rel}'")
            chain.append((ref, target))
            cur = target
        f = sb._field(org, cur, parts[-1], ctx.default_ns)
        if f is None:
            raise ApiError(400, "INVALID_FIELD",
                           f"No such column '{parts[-1]}' on entity '{cur.name}'. If you are "
                           f"attempting to use a custom field, be sure to append the '__c' after"
                           f" the custom field name. Please reference your WSDL or the describe "
                           f"call for the appropriate names.")

        def getter(rec: dict, _chain=tuple(chain), _name=f.name):
            for ref, target in _chain:
                rid = rec.get(ref.name)
                if rid is None:
                    return None
                found = sb._find_by_id(org, rid)
                if found is None:
                    return None
                rec = found[1]
            return rec.get(_name)

        def parent(rec: dict, depth: int):
            for ref, target in chain[:depth]:
                rid = rec.get(ref.name)
                found = sb._find_by_id(org, rid) if rid else None
                if found is None:
                    return None
                rec = found[1]
            return rec
        return getter, f, chain, parent

    def _literal(self, f: _Field, lit: tuple) -> Any:
        kind, val = lit
        if kind == "null":
            return None
        want = _soql_type_name(f)
        if f.type in ("datetime", "date"):
            if kind == "str":
                raise ApiError(400, "INVALID_FIELD",
                               f"value of filter criterion for field '{f.name}' must be of type "
                               f"{want} and should not be enclosed in quotes")
            if f.type == "datetime" and kind == "dt":
                return val
            if f.type == "date" and kind == "date":
                return val
            raise ApiError(400, "INVALID_FIELD",
                           f"value of filter criterion for field '{f.name}' must be of type "
                           f"{want} and should not be enclosed in quotes")
        if f.type in _NUMERIC:
            if kind != "num":
                raise ApiError(400, "INVALID_FIELD",
                               f"value of filter criterion for field '{f.name}' must be of type "
                               f"{want} and should not be enclosed in quotes")
            return val
        if f.type == "boolean":
            if kind != "bool":
                raise ApiError(400, "INVALID_FIELD",
                               f"value of filter criterion for field '{f.name}' must be of type "
                               f"boolean and should not be enclosed in quotes")
            return val
        if kind != "str":
            raise ApiError(400, "INVALID_FIELD",
                           f"value of filter criterion for field '{f.name}' must be of type "
                           f"{want} and should be enclosed in quotes")
        if f.type in ("id", "reference"):
            rid = normalize_id(val)
            if rid is None:
                raise ApiError(400, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {val}")
            return rid
        return val.lower()

    def _compile(self, org: Org, st: _SType, node, ctx: _Ctx, include_deleted: bool) -> Callable:
        kind = node[0]
        if kind in ("and", "or"):
            a = self._compile(org, st, node[1], ctx, include_deleted)
            b = self._compile(org, st, node[2], ctx, include_deleted)
            return (lambda r: a(r) and b(r)) if kind == "and" else (lambda r: a(r) or b(r))
        if kind == "not":
            a = self._compile(org, st, node[1], ctx, include_deleted)
            return lambda r: not a(r)
        getter, f, _, _ = self._resolve_path(org, st, node[1], ctx)
        text = f.type not in ("id", "reference", "datetime", "date", "boolean") and \
            f.type not in _NUMERIC

        def val(r):
            x = getter(r)
            return x.lower() if text and isinstance(x, str) else x
        if kind == "like":
            pat = re.compile("^" + "".join(".*" if c == "%" else "." if c == "_" else re.escape(c)
                                           for c in node[2].lower()) + "$", re.DOTALL)
            return lambda r: isinstance(getter(r), str) and bool(pat.match(getter(r).lower()))
        if kind == "in":
            _, _, negate, values = node
            if isinstance(values, tuple) and values[0] == "sub":
                _, sub_resolved, sub_rows = self._run_query(ctx, values[1], include_deleted=False)
                if len(sub_resolved) != 1:
                    raise _malformed("semi-join sub-selects must select exactly one field")
                g0 = sub_resolved[0][0]
                vals = {(x.lower() if text and isinstance(x, str) else x)
                        for x in (g0(row) for row in sub_rows)}
            else:
                vals = {self._literal(f, lit) for lit in values}
            return (lambda r: val(r) not in vals) if negate else (lambda r: val(r) in vals)
        _, _, op, lit = node
        want = self._literal(f, lit)
        if want is None:
            if op not in ("=", "!="):
                raise _malformed("null can only be used with = and !=")
            return (lambda r: val(r) is None) if op == "=" else (lambda r: val(r) is not None)
        ops = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
               "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
        fn = ops[op]
        if op == "!=":
            return lambda r: val(r) != want

        def compare(r):
            x = val(r)
            return x is not None and fn(x, want)
        return compare

    def _run_query(self, ctx: _Ctx, q: dict, include_deleted: bool) -> tuple:
        """Evaluate a parsed query -> (stype, resolved select paths, rows)."""
        org = ctx.org
        st = org.stype(q["type"], ctx.default_ns)
        if st is None:
            raise ApiError(400, "INVALID_TYPE",
                           f"sObject type '{q['type']}' is not supported. If you are attempting "
                           f"to use a custom object, be sure to append the '__c' after the entity"
                           f" name. Please reference your WSDL or the describe call for the "
                           f"appropriate names.")
        resolved = [self._resolve_path(org, st, fp, ctx) for fp in q["fields"]]
        pred = self._compile(org, st, q["where"], ctx, include_deleted) if q["where"] else None
        rows = [r for r in self.sb._rows(org, st) if (include_deleted or not r["IsDeleted"])
                and (pred is None or pred(r))]
        for path, desc, nulls_first in reversed(q["order"]):
            g = self._resolve_path(org, st, path, ctx)[0]
            present = [r for r in rows if g(r) is not None]
            absent = [r for r in rows if g(r) is None]

            def sort_key(r, g=g):
                x = g(r)
                return x.lower() if isinstance(x, str) else x
            present.sort(key=sort_key, reverse=desc)
            rows = absent + present if nulls_first else present + absent
        rows = rows[q["offset"]:]
        if q["limit"] is not None:
            rows = rows[:q["limit"]]
        return st, resolved, rows

    def query(self, ctx: _Ctx, text: str, include_deleted: bool) -> dict:
        parser = _Parser(text)
        q = parser.query()
        if not parser.done():
            raise _malformed(f"unexpected token: '{parser.peek()[1]}'")
        if q["count"] and q["fields"]:
            raise _malformed("COUNT() cannot be combined with other fields")
        st, resolved, rows = self._run_query(ctx, q, include_deleted)
        if q["count"]:
            return {"totalSize": len(rows), "done": True, "records": []}
        v = ctx.version
        records = []
        for row in rows:
            out = self.sb._serialize(st, row, v, [])
            for fp, (getter, f, chain, parent) in zip(q["fields"], resolved):
                if not chain:
                    out[f.name] = _out(row.get(f.name), f)
                    continue
                node = out
                for depth, (ref, target) in enumerate(chain, 1):
                    prec = parent(row, depth)
                    if prec is None:
                        node[ref.relationship_name] = None
                        break
                    child = node.get(ref.relationship_name)
                    if child is None:
                        child = self.sb._serialize(target, prec, v, [])
                        node[ref.relationship_name] = child
                    node = child
                else:
                    node[f.name] = _out(getter(row), f)
            records.append(out)
        batch = min(ctx.batch_size or MAX_BATCH, self.sb.query_batch_size)
        return self._query_page(ctx, records, 0, batch,
                                "queryAll" if include_deleted else "query")

    def _query_page(self, ctx: _Ctx, records: list, offset: int, batch: int, kind: str,
              locator: str | None = None) -> dict:
        sb = self.sb
        chunk = records[offset:offset + batch]
        done = offset + batch >= len(records)
        out = {"totalSize": len(records), "done": done, "records": chunk}
        if locator is None and not done:
            locator = id18("01g" + ctx.org.pod + "0" + _b62(sb._next(), 9))
        if not done:
            sb._cursors[locator] = {"org": ctx.org.id, "records": records, "batch": batch,
                                    "kind": kind, "touched": sb.clock.now()}
            out["nextRecordsUrl"] = f"/services/data/v{ctx.version}/{kind}/{locator}-" \
                                    f"{offset + batch}"
        elif locator:
            sb._cursors.pop(locator, None)
        return out

    def query_more(self, ctx: _Ctx, token: str) -> dict:
        sb = self.sb
        locator, _, off = token.partition("-")
        cur = sb._cursors.get(locator)
        if cur is None or cur["org"] != ctx.org.id or not off.isdigit() or \
                (sb.clock.now() - cur["touched"]).total_seconds() > QUERY_LOCATOR_TTL:
            sb._cursors.pop(locator, None)
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._query_page(ctx, cur["records"], int(off), cur["batch"], cur["kind"],
                                locator)

    # ---- composite ----------------------------------------------------------------------------
    _REF_RE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")

    def _resolve_refs(self, value: Any, results: dict) -> Any:
        if isinstance(value, str):
            def sub(m):
                ref, path = m.group(1), m.group(2)
                if ref not in results:
                    raise KeyError(f"{ref}{path}")
                cur = results[ref]
                for step in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
                    try:
                        cur = cur[step[0]] if step[0] else cur[int(step[1])]
                    except (KeyError, IndexError, TypeError):
                        raise KeyError(f"{ref}{path}") from None
                return str(cur)
            return self._REF_RE.sub(sub, value)
        if isinstance(value, list):
            return [self._resolve_refs(x, results) for x in value]
        if isinstance(value, dict):
            return {k: self._resolve_refs(x, results) for k, x in value.items()}
        return value

    def composite(self, ctx: _Ctx, body: Any, path: str) -> dict:
        sb, org = self.sb, ctx.org
        if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "compositeRequest is required")
        subs = body["compositeRequest"]
        if not subs or len(subs) > 25:
            raise ApiError(400, "INVALID_INPUT",
                           "The composite request must contain between 1 and 25 subrequests")
        ids = [s.get("referenceId") for s in subs]
        if any(not isinstance(i, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", i)
               for i in ids) or len(set(ids)) != len(ids):
            raise ApiError(400, "INVALID_INPUT", "referenceId must be unique and alphanumeric")
        heavy = sum(1 for s in subs if "/query" in str(s.get("url", ""))
                    or "/composite/sobjects" in str(s.get("url", "")))
        if heavy > 5:
            raise ApiError(400, "INVALID_INPUT",
                           "A composite request can have at most 5 query or sObject "
                           "collection subrequests")
        for s in subs:
            hdrs = {k.lower() for k in (s.get("httpHeaders") or {})}
            if hdrs & {"accept", "authorization", "content-type"}:
                raise ApiError(400, "INVALID_INPUT",
                               "The httpHeaders can't include Accept, Authorization or "
                               "Content-Type")
        all_or_none = bool(body.get("allOrNone", False))
        writes = [i for i, s in enumerate(subs)
                  if str(s.get("method", "")).upper() in ("POST", "PATCH", "PUT", "DELETE")]
        failing: dict = {}
        f = sb._take_fault(("composite_partial",), path)
        if f and writes:
            idx = f.options.get("index", writes[-1])
            failing[idx] = ApiError(400, "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                    "Injected validation failure (sandbox composite_partial)",
                                    [])
        f = sb._take_fault(("unable_to_lock_row",), path)
        if f and writes:
            idx = f.options.get("index", writes[0])
            failing[idx] = ApiError(400, "UNABLE_TO_LOCK_ROW",
                                    "unable to obtain exclusive access to this record or 1 "
                                    "records: " + org.id)
        results: dict = {}
        responses = []
        failed = False
        sb._begin(org)
        try:
            for i, s in enumerate(subs):
                ref = s["referenceId"]
                if failed and all_or_none:
                    responses.append(None)
                    continue
                try:
                    url = self._resolve_refs(str(s.get("url", "")), results)
                    sbody = self._resolve_refs(s.get("body"), results)
                except KeyError as e:
                    responses.append({"body": [{"errorCode": "PROCESSING_HALTED", "message":
                                                f"Invalid reference specified. No value for "
                                                f"{e.args[0]} found in {ref}. Provided "
                                                f"referenceId ({e.args[0].split('.')[0]}) must "
                                                f"be a valid reference."}],
                                      "httpHeaders": {}, "httpStatusCode": 400,
                                      "referenceId": ref})
                    failed = True
                    continue
                status, payload, headers = self._sub(ctx, str(s.get("method", "GET")).upper(),
                                                     url, sbody, s.get("httpHeaders") or {},
                                                     failing.get(i))
                if status < 300 and isinstance(payload, (dict, list)):
                    results[ref] = payload
                elif status >= 300:
                    failed = True
                responses.append({"body": payload, "httpHeaders": headers,
                                  "httpStatusCode": status, "referenceId": ref})
            if failed and all_or_none:
                sb._rollback(org)
                halted = [{"errorCode": "PROCESSING_HALTED", "message":
                           "The transaction was rolled back since another operation in the same"
                           " transaction failed."}]
                # only the first real failure keeps its error; every other sub-request halted
                first = next(i for i, r in enumerate(responses)
                             if r is not None and r["httpStatusCode"] >= 300)
                responses = [responses[i] if i == first else
                             {"body": halted, "httpHeaders": {}, "httpStatusCode": 400,
                              "referenceId": s["referenceId"]} for i, s in enumerate(subs)]
            else:
                sb._commit(org)
        finally:
            if org._journal is not None:
                sb._commit(org)
        return {"compositeResponse": responses}

    def _sub(self, ctx: _Ctx, method: str, url: str, body: Any, headers: dict,
             fail: ApiError | None) -> tuple:
        parts = urlsplit(url)
        m = re.match(r"^/services/data/(v\d+\.\d)(/.*)?$", parts.path.rstrip("/"))
        if not m:
            e = ApiError(400, "INVALID_INPUT", f"Invalid URL in composite subrequest: {url}")
            return e.status, e.body(), {}
        if fail is not None:
            return fail.status, fail.body(), {}
        sub_ctx = _Ctx(ctx.org, ctx.session, m.group(1)[1:], headers)
        sub_ctx.default_ns = None
        try:
            segs = [unquote(x) for x in (m.group(2) or "").split("/")[1:]]
            status, payload, hdrs = self.rest(sub_ctx, method, segs,
                                              dict(parse_qsl(parts.query)), body, url,
                                              in_composite=True)
        except ApiError as e:
            return e.status, e.body(), {}
        return status, payload, dict(hdrs or {})

    # ---- sObject Collections ------------------------------------------------------------------
    def collections(self, ctx: _Ctx, method: str, p: list, args: dict, body: Any, path: str,
                    allow) -> tuple:
        sb, org, v = self.sb, ctx.org, ctx.version
        if method == "GET" or (method == "POST" and len(p) == 1):
            if not p:
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
            st = sb._stype(org, p[0])
            ids = (body or {}).get("ids") if method == "POST" else args.get("ids", "").split(",")
            fields_names = (body or {}).get("fields") if method == "POST" else \
                args.get("fields", "").split(",")
            fl = self._fields_arg(org, st, {"fields": ",".join(fields_names or [])}, ctx) \
                or [st.fields["id"]]
            out = []
            for i in ids or []:
                rid = normalize_id(i)
                rec = org.records.get(st.name.lower(), {}).get(rid or "")
                out.append(sb._serialize(st, rec, v, fl) if rec and not rec["IsDeleted"]
                           else None)
            return 200, out, {}
        if method == "DELETE" and not p:
            ids = [x for x in args.get("ids", "").split(",") if x]
            all_or_none = args.get("allOrNone", "false").lower() == "true"
            items = [("delete", None, i) for i in ids]
        else:
            if not isinstance(body, dict) or not isinstance(body.get("records"), list):
                raise ApiError(400, "JSON_PARSER_ERROR", "records is required")
            all_or_none = bool(body.get("allOrNone", False))
            recs = body["records"]
            if method == "POST" and not p:
                items = [("create", r, None) for r in recs]
            elif method == "PATCH" and not p:
                items = [("update", r, None) for r in recs]
            elif method == "PATCH" and len(p) == 2:
                items = [("upsert", r, (p[0], p[1])) for r in recs]
            else:
                allow("GET", "POST", "PATCH", "DELETE")
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if len(items) > 200:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more "
                                                     "than 200 records into this call")
        lock = sb._take_fault(("unable_to_lock_row",), path)
        results = []
        failed = False
        sb._begin(org)
        try:
            for n, (op, rec, extra) in enumerate(items):
                try:
                    if lock and n == 0:
                        raise ApiError(400, "UNABLE_TO_LOCK_ROW",
                                       "unable to obtain exclusive access to this record")
                    results.append(self._collection_op(ctx, op, rec, extra))
                except ApiError as e:
                    failed = True
                    err = {"statusCode": e.code, "message": e.message, "fields": e.fields or []}
                    res = {"id": None, "success": False, "errors": [err]}
                    if op == "upsert":
                        res["created"] = False
                    results.append(res)
            if failed and all_or_none:
                sb._rollback(org)
                for r in results:
                    if r["success"]:
                        r.update(id=None, success=False, errors=[{
                            "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                            "message": "Record rolled back because not all records were valid and"
                                       " the request was using AllOrNone header", "fields": []}])
            else:
                sb._commit(org)
        finally:
            if org._journal is not None:
                sb._commit(org)
        return 200, results, {}

    def _collection_op(self, ctx: _Ctx, op: str, rec: Any, extra: Any) -> dict:
        sb, org = self.sb, ctx.org
        if op == "delete":
            rid = normalize_id(extra)
            found = sb._find_by_id(org, rid) if rid else None
            if found is None or not found[0].stored:
                raise ApiError(404, "ENTITY_IS_DELETED" if found else "INVALID_CROSS_REFERENCE_KEY",
                               "entity is deleted" if found else "invalid cross reference id")
            st, row = found
            if row["IsDeleted"]:
                raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
            sb._delete(org, st, rid, ctx.user_id)
            return {"id": rid, "success": True, "errors": []}
        if not isinstance(rec, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "record must be an object")
        rec = dict(rec)
        attrs = rec.pop("attributes", None) or {}
        if op == "upsert":
            st = sb._stype(org, extra[0])
            f = sb._field(org, st, extra[1])
            if f is None or not f.external_id:
                raise ApiError(400, "INVALID_FIELD", f"Field {extra[1]} is not an external id")
            value = None
            for k in list(rec):
                kf = sb._field(org, st, k)
                if kf is not None and kf.name == f.name:
                    value = rec.pop(k)
            if value in (None, ""):
                raise ApiError(400, "MISSING_ARGUMENT",
                               f"{f.name} not specified")
            matches = self._match_ext(org, st, f, str(value))
            if len(matches) > 1:
                raise ApiError(300, "DUPLICATE_EXTERNAL_ID",
                               f"{f.name}: more than one record found for external id field")
            if matches:
                sb._write(org, st, matches[0], rec, ctx.user_id)
                return {"id": matches[0], "success": True, "errors": [], "created": False}
            rec[f.name] = value
            rid = sb._write(org, st, None, rec, ctx.user_id)
            return {"id": rid, "success": True, "errors": [], "created": True}
        type_name = attrs.get("type")
        if op == "update":
            rid = normalize_id(rec.pop("id", None) or rec.pop("Id", None))
            if rid is None:
                raise ApiError(400, "MALFORMED_ID", "Id in record is missing or malformed")
            found = sb._find_by_id(org, rid)
            if found is None:
                raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
            st = found[0]
            if found[1].get("IsDeleted"):
                raise ApiError(400, "ENTITY_IS_DELETED", "entity is deleted")
            sb._write(org, st, rid, rec, ctx.user_id)
            return {"id": rid, "success": True, "errors": []}
        if not type_name:
            raise ApiError(400, "INVALID_TYPE", "attributes.type is required")
        st = org.stype(type_name)
        if st is None:
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
        if "id" in rec or "Id" in rec:
            raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
        rid = sb._write(org, st, None, rec, ctx.user_id)
        return {"id": rid, "success": True, "errors": []}


def _endpoint_shape(p: list) -> list:
    """Normalise path segments for the call log ("sobjects/{type}/{id}")."""
    if not p:
        return []
    if p[0] == "sobjects" and len(p) >= 2:
        rest = p[2:]
        if not rest:
            return ["sobjects", "{type}"]
        if rest[0] in ("describe", "updated", "deleted"):
            return ["sobjects", "{type}", rest[0]]
        if len(rest) == 1:
            return ["sobjects", "{type}", "{id}"]
        return ["sobjects", "{type}", "{field}", "{value}"]
    if p[0] in ("query", "queryAll") and len(p) > 1:
        return [p[0], "{locator}"]
    if p[0] == "composite" and len(p) > 2:
        return ["composite", "sobjects", "{type}", "{field}"][:len(p)]
    if p[0] == "ui-api":
        return ["ui-api", "..."]
    return p


def create_app(sandbox: SalesforceSandbox) -> SandboxApp:
    """The WSGI application serving ``sandbox``."""
    return SandboxApp(sandbox)


# --------------------------------------------------------------------------------------------
# serving
# --------------------------------------------------------------------------------------------
class ServerHandle:
    """Returned by ``serve``: ``.url``, ``.ca_path``, ``.port``, ``.sandbox``, ``.shutdown()``."""

    def __init__(self, server, thread, url: str, ca_path: str | None, sandbox,
                 tmpdir: tempfile.TemporaryDirectory | None):
        self.server, self.thread, self.url, self.ca_path = server, thread, url, ca_path
        self.sandbox = sandbox
        self.port = server.server_address[1]
        self._tmpdir = tmpdir

    def shutdown(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


def _load_or_make_ca(ca_dir: str | None):
    import trustme
    if ca_dir:
        d = Path(ca_dir)
        d.mkdir(parents=True, exist_ok=True)
        cert, key = d / "salesforce-sandbox-ca.pem", d / "salesforce-sandbox-ca.key"
        if cert.exists() and key.exists():
            return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes()), str(cert)
        ca = trustme.CA(organization_name="MutualPlan Salesforce sandbox")
        ca.cert_pem.write_to_path(str(cert))
        key.write_bytes(ca.private_key_pem.bytes())
        os.chmod(key, 0o600)
        return ca, str(cert)
    return trustme.CA(organization_name="MutualPlan Salesforce sandbox"), None


class _Handler(http.server.BaseHTTPRequestHandler):
    """Minimal WSGI handler with HTTP/1.1 keep-alive (werkzeug's dev server closes every
    connection, which costs a TLS handshake per request)."""
    protocol_version = "HTTP/1.1"
    timeout = 60
    app: Any = None
    scheme = "https"
    quiet = True

    def setup(self):
        super().setup()
        try:   # headers and body go out as separate writes: avoid Nagle/delayed-ACK stalls
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def handle(self):
        try:
            super().handle()
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
            self.close_connection = True

    def log_message(self, fmt, *args):
        if not self.quiet:
            super().log_message(fmt, *args)

    def _wsgi(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(parts)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        length = len(body)
        url = urlsplit(self.path)
        host, port = self.server.server_address[:2]
        environ = {
            "REQUEST_METHOD": self.command, "SCRIPT_NAME": "",
            "PATH_INFO": unquote(url.path, encoding="latin-1"), "QUERY_STRING": url.query,
            "SERVER_NAME": str(host), "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version, "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length), "wsgi.version": (1, 0),
            "wsgi.url_scheme": self.scheme, "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for key in set(self.headers.keys()):
            name = "HTTP_" + key.upper().replace("-", "_")
            if name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH",
                            "HTTP_TRANSFER_ENCODING"):   # the body is already de-chunked
                environ[name] = ",".join(self.headers.get_all(key))
        started: list = []

        def start_response(status, headers, exc_info=None):
            started[:] = [status, headers]
            return lambda data: None
        result = self.app(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers = started
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for k, v in headers:
            if k.lower() not in ("content-length", "connection", "date", "server"):
                self.send_header(k, v)
        if int(code) not in (204, 304):
            self.send_header("Content-Length", str(len(data)))
        if self.headers.get("Connection", "").lower() == "close":
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _wsgi


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(sandbox: SalesforceSandbox, host: str = "127.0.0.1", port: int = 0, tls: bool = True,
          *, hostnames: Iterable[str] = (), ca_dir: str | None = None,
          quiet: bool = True) -> ServerHandle:
    """Serve the sandbox on a background thread (HTTP/1.1 keep-alive, threaded).

    TLS (default): a local CA from trustme (kept in ``ca_dir`` if given, so ``make run`` keeps
    one CA across restarts; otherwise a temp dir removed at shutdown).  The leaf certificate
    covers 127.0.0.1, localhost, ``host`` and ``hostnames``.  Trust ``handle.ca_path``.
    """
    ca_path = None
    tmpdir = None
    handler = type("SandboxHandler", (_Handler,), {
        "app": staticmethod(create_app(sandbox)), "scheme": "https" if tls else "http",
        "quiet": quiet})
    server = _Server((host, port), handler)
    if tls:
        ca, ca_path = _load_or_make_ca(ca_dir)
        names = ["127.0.0.1", "localhost"] + ([host] if host not in ("127.0.0.1", "localhost",
                                                                     "0.0.0.0", "") else [])
        names += [h for h in hostnames if h not in names]
        leaf = ca.issue_cert(*names)
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(ssl_ctx)
        # handshake lazily in the handler thread, not in the accept loop
        server.socket = ssl_ctx.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
        if ca_path is None:
            tmpdir = tempfile.TemporaryDirectory(prefix="sf-sandbox-")
            ca_path = os.path.join(tmpdir.name, "ca.pem")
            ca.cert_pem.write_to_path(ca_path)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="salesforce-sandbox", daemon=True)
    thread.start()
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    url = f"{'https' if tls else 'http'}://{shown}:{server.server_address[1]}"
    if sandbox.base_url is None:
        sandbox.base_url = url
    return ServerHandle(server, thread, url, ca_path, sandbox, tmpdir)


def demo_sandbox(client_id: str = "mutualplan-local",
                 client_secret: str = "mutualplan-local-secret",
                 redirect_uris: Iterable[str] = ()) -> SalesforceSandbox:
    """A sandbox with three orgs for ``make run``: package installed, namespaced sandbox org,
    and one without the package; a few accounts and opportunities each."""
    sb = SalesforceSandbox()
    sb.add_connected_app(client_id, client_secret, redirect_uris)
    acme = sb.add_org("Acme Corp", my_domain="acme", package_installed=True)
    sb.add_user(acme, "rep@acme.example.com", name="Riley Rep")
    uat = sb.add_org("Globex UAT", my_domain="globex", is_sandbox=True, namespace="mapns")
    sb.add_org("Initech", my_domain="initech", package_installed=False)
    for org in sb.orgs.values():
        acc = sb.create_record(org, "Account", {"Name": f"{org.name} Customer"})
        for n, stage in enumerate(("Prospecting", "Value Proposition", "Negotiation/Review")):
            sb.create_record(org, "Opportunity", {
                "Name": f"{org.name} deal {n + 1}", "AccountId": acc, "StageName": stage,
                "CloseDate": (date.today() + timedelta(days=30 * (n + 1))).isoformat(),
                "Amount": 10000.0 * (n + 1)})
    del uat
    return sb


def main(argv: list | None = None) -> None:
    """``python -m connector.sandbox.salesforce [--port 8443] [--ca-dir instance/]``."""
    ap = argparse.ArgumentParser(description="Local Salesforce emulator (MutualPlan)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("SALESFORCE_SANDBOX_PORT",
                                                                   "8443")))
    ap.add_argument("--client-id", default=os.environ.get("SALESFORCE_CLIENT_ID",
                                                          "mutualplan-local"))
    ap.add_argument("--client-secret", default=os.environ.get("SALESFORCE_CLIENT_SECRET",
                                                              "mutualplan-local-secret"))
    ap.add_argument("--redirect-uri", action="append", default=[],
                    help="allowed callback (repeatable; none = accept any)")
    ap.add_argument("--ca-dir", default=os.environ.get("SALESFORCE_SANDBOX_CA_DIR", "instance"))
    ap.add_argument("--no-tls", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    sb = demo_sandbox(a.client_id, a.client_secret, a.redirect_uri)
    h = serve(sb, a.host, a.port, tls=not a.no_tls, ca_dir=a.ca_dir, quiet=not a.verbose)
    print(f"Salesforce sandbox on {h.url}", flush=True)
    print(f"  SALESFORCE_LOGIN_URL={h.url}")
    if h.ca_path:
        print(f"  CRM_CA_BUNDLE={h.ca_path}")
    for org in sb.orgs.values():
        print(f"  org {org.id} {org.name!r} users={[u.username for u in org.users.values()]} "
              f"package={'yes' if org.package_installed else 'no'} ns={org.namespace}",
              flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        h.shutdown()


if __name__ == "__main__":
    main()
