"""Salesforce: OAuth (web server flow + PKCE) and the connector, on simple-salesforce.

One call path (DESIGN §2 rule 3). Every REST call goes through
`SalesforceConnector._call`, which

- takes a token from the shared per-org bucket (`ratelimit.TokenBucket`),
- refuses non-urgent work (polls) once the org's rolling 24-hour API usage,
  read from `Sforce-Limit-Info` on every response, passes `DAILY_DEFER_AT`
  (RateLimited scope "daily"), so pushes keep the rest of the allocation,
- retries transient failures (5xx, timeouts, connection resets,
  UNABLE_TO_LOCK_ROW) with tenacity; simple-salesforce itself retries nothing,
- on 401 INVALID_SESSION_ID refreshes the token once under the installation's
  lock (re-reading first: when another worker already refreshed, its token is
  used and no refresh token is spent) and replays the request once,
- turns every failure into the taxonomy of `connector.errors` in ONE
  function, `classify`.

REQUEST_LIMIT_EXCEEDED is never waited out inside a request: it becomes
RateLimited(scope="daily", retry_after=DAILY_RETRY_AFTER) and the outbox
reschedules the row.

Writes: everything for one plan (plan upsert by Plan_UUID__c, milestone
upserts by Milestone_UUID__c as one sObject Collections sub-request, deletes
by external id, the Opportunity's StageName/CloseDate/MAP_* fields) goes as
ONE Composite request; more than 25 sub-requests or 200 milestones are
chunked. We send allOrNone=false: every write is an idempotent upsert (or a
delete by external id, where a 404 means "already gone" and must not roll the
rest back), every sub-response is checked, and if any part failed the push
raises (Rejected with Salesforce's message, or Transient for lock errors), so
the sync engine records nothing as pushed and the replay rewrites the lot.

Reads: a SystemModstamp poll (`pull`) that asks for milestones (queryAll, so
deletions show) and Opportunities in one Composite call; `>=` on a
second-precision stamp plus de-duplication by (Id, SystemModstamp).

Names are namespace-aware: in a subscriber org of the managed package every
package object and field is `<ns>__Name__c`; the prefix is per installation
(`settings["namespace"]`, detected at install).

Nothing here knows Flask or the database: tokens are loaded and saved
through a `TokenStore` (connector.base) the caller provides.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from . import base
from .base import Deal, DealUpdate, MilestoneDoc, Page, PipelineStage, PlanDoc, PushResult
from .errors import AuthExpired, CrmError, NeedsReauth, NotFound, RateLimited, Rejected, Transient
from .oauth import OAuthClient, OAuthFailure

log = logging.getLogger("mutualplan.salesforce")

API_VERSION = "66.0"
PRODUCTION_LOGIN = "https://login.salesforce.com"
SANDBOX_LOGIN = "https://test.salesforce.com"
SCOPES = "api refresh_token"  # what the packaged External Client App grants (Api, RefreshToken)
LOGIN_SCOPES = "openid profile email"  # "Sign in with Salesforce": OpenID Connect, no API access
DAILY_DEFER_AT = 0.90  # share of the daily allocation after which non-urgent work waits
DAILY_RETRY_AFTER = 3600.0  # the allocation is a rolling 24 h window: look again in an hour
MAX_SUBREQUESTS = 25  # per Composite request
MAX_COLLECTION = 200  # records per sObject Collections sub-request
TIMEOUT = 30.0
PLAN, MILESTONE = "Mutual_Action_Plan__c", "MAP_Milestone__c"

# My Domain login hosts we accept (production and sandbox); never an arbitrary host.
MY_DOMAIN_RE = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:--[a-z0-9]+)?(?:\.sandbox)?\.my\.salesforce\.com$")


# ---- OAuth ----------------------------------------------------------------------------


def login_base(kind: str = "production", my_domain: str | None = None, *,
               production: str = PRODUCTION_LOGIN, sandbox: str = SANDBOX_LOGIN) -> str:
    """The login host for a connect: production, sandbox (test.salesforce.com) or My Domain.

    `production`/`sandbox` are configurable because locally one emulator plays
    every Salesforce host (SALESFORCE_LOGIN_URL). A My Domain host is validated
    and only used when the configured production host is the real one.
    """
    if my_domain is not None:
        host = my_domain.strip().lower().removeprefix("https://").rstrip("/")
        if not MY_DOMAIN_RE.match(host):
            raise OAuthFailure("invalid_domain", f"{my_domain!r} is not a Salesforce My Domain host")
        return f"https://{host}" if production.rstrip("/") == PRODUCTION_LOGIN else production.rstrip("/")
    if kind == "sandbox":
        return sandbox.rstrip("/")
    return production.rstrip("/")


def signature_ok(token: dict, client_secret: str) -> bool:
    """Salesforce signs id + issued_at with the client secret (HMAC-SHA256, base64)."""
    try:
        mac = hmac.new(client_secret.encode(), (token["id"] + token["issued_at"]).encode(),
                       hashlib.sha256).digest()
        return hmac.compare_digest(base64.b64encode(mac).decode(), token["signature"])
    except (KeyError, TypeError):
        return False


def identity_of(token: dict) -> tuple[str, str]:
    """(org id, user id): the last two segments of the identity URL."""
    parts = [p for p in str(token.get("id", "")).split("/") if p]
    if len(parts) < 3 or parts[-3] != "id":
        raise OAuthFailure("invalid_code", "the token response has no identity URL")
    return parts[-2], parts[-1]


def token_set(token: dict, login_url: str, previous: base.TokenSet | None = None) -> base.TokenSet:
    """A TokenSet from a token response; keeps the refresh token when none was rotated in."""
    org_id, user_id = identity_of(token)
    extra = dict(previous.extra) if previous else {}
    extra.update(instance_url=token["instance_url"].rstrip("/"), id=token["id"], org_id=org_id,
                 user_id=user_id, login_url=login_url, issued_at=token.get("issued_at"),
                 scope=token.get("scope", ""))
    refresh = token.get("refresh_token") or (previous.refresh_token if previous else None)
    return base.TokenSet(access_token=token["access_token"], refresh_token=refresh, expires_at=None,
                    extra=extra)


def http_session(ca_bundle: str | None = None, timeout: float = TIMEOUT) -> requests.Session:
    """A requests session trusting `ca_bundle` (the sandboxes' CA), with a default timeout.

    trust_env=False: an environment REQUESTS_CA_BUNDLE would silently override verify.
    """
    session = _TimeoutSession(timeout)
    if ca_bundle:
        session.verify = ca_bundle
        session.trust_env = False
    return session


class _TimeoutSession(requests.Session):
    def __init__(self, timeout: float):
        super().__init__()
        self.default_timeout = timeout

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(*args, **kwargs)


# Salesforce's OAuth endpoints on a login host (or, for revoke, the instance): one place.
ENDPOINTS = {
    "authorize": "{base}/services/oauth2/authorize",
    "token": "{base}/services/oauth2/token",
    "revoke": "{base}/services/oauth2/revoke",
    "userinfo": "{base}/services/oauth2/userinfo",
}


class SalesforceOAuth(OAuthClient):
    """The External Client App: a confidential client that also uses PKCE (S256); every token
    response's signature (HMAC of id + issued_at with the client secret) is checked."""

    def exchange(self, code: str, code_verifier: str | None = None, **where) -> dict:
        return self._verify(super().exchange(code, code_verifier, **where))

    def refresh(self, refresh_token: str, **where) -> dict:
        return self._verify(super().refresh(refresh_token, **where))

    def userinfo(self, access_token: str, **where) -> dict:
        """OpenID Connect UserInfo (user_id, organization_id, name, email) of an `openid`
        token; `base` is the instance (or login host)."""
        session = http_session(self.ca_bundle, self.timeout if isinstance(self.timeout, float)
                               else TIMEOUT)
        try:
            response = session.get(self.url("userinfo", **where),
                                   headers={"Authorization": f"Bearer {access_token}"})
        except (requests.RequestException, OSError) as exc:
            raise Transient(f"UserInfo unreachable: {exc.__class__.__name__}") from exc
        finally:
            session.close()
        if response.status_code >= 400:
            raise classify(response.status_code, response.text[:300], what="userinfo")
        try:
            return dict(response.json())
        except ValueError as exc:
            raise Rejected("UserInfo answered nonsense") from exc

    def _verify(self, token: dict) -> dict:
        if not signature_ok(token, self.client_secret):
            raise OAuthFailure("bad_signature", "the token response signature does not match")
        return token


def oauth_client(client_id: str, client_secret: str, redirect_uri: str,
                 ca_bundle: str | None = None, timeout: float = TIMEOUT) -> SalesforceOAuth:
    return SalesforceOAuth(client_id, client_secret, redirect_uri, ENDPOINTS,
                           lambda status, body, _headers: classify(status, body), scope=SCOPES,
                           pkce=True, ca_bundle=ca_bundle, timeout=timeout)


# ---- error classification ------------------------------------------------------------------

_TRANSIENT_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION",
                    "QUERY_TIMEOUT", "REQUEST_RUNNING_TOO_LONG", "CONCURRENT_REQUESTS_LIMIT"}
_NOT_FOUND_CODES = {"NOT_FOUND", "ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"}


def _errors(body: Any) -> list[dict]:
    """Salesforce error bodies: a list of {errorCode|statusCode, message}, or OAuth's dict."""
    if isinstance(body, dict):
        if "error" in body:
            return [{"errorCode": str(body["error"]), "message": str(body.get("error_description", ""))}]
        body = [body]
    if not isinstance(body, list):
        return [{"errorCode": "", "message": str(body or "")[:300]}]
    out = []
    for item in body:
        if isinstance(item, dict):
            out.append({"errorCode": str(item.get("errorCode") or item.get("statusCode") or ""),
                        "message": str(item.get("message", ""))})
    return out


def classify(status: int | None, body: Any = None, *, exc: BaseException | None = None,
             what: str = "") -> CrmError:
    """THE mapping from a Salesforce failure to the taxonomy (SDK exception, HTTP status and
    body, a Composite sub-response, or an OAuth token-endpoint error)."""
    if exc is not None and not isinstance(exc, SalesforceError):
        if isinstance(exc, CrmError):
            return exc
        if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
            return Transient(f"Salesforce did not answer ({exc.__class__.__name__})")
        if isinstance(exc, requests.RequestException):
            return Transient(f"network error: {exc}")
        return Rejected(f"unexpected answer from Salesforce: {exc!r}")
    if isinstance(exc, SalesforceError):
        status, body = exc.status, exc.content
    errors = _errors(body)
    codes = {e["errorCode"] for e in errors}
    message = "; ".join(f"{e['errorCode']}: {e['message']}".strip(": ") for e in errors
                        if e["errorCode"] != "PROCESSING_HALTED") or "; ".join(
        e["message"] for e in errors) or f"HTTP {status}"
    if what:
        message = f"{what}: {message}"
    if "invalid_grant" in codes or "inactive_user" in codes or "inactive_org" in codes:
        return NeedsReauth(f"Salesforce refused the refresh token ({message}); reconnect the org",
                           status=status)
    if codes & {"invalid_client", "invalid_client_id", "unauthorized_client"}:
        return NeedsReauth(f"the Salesforce app credentials were refused ({message})", status=status)
    if status == 401 or "INVALID_SESSION_ID" in codes:
        return AuthExpired(message, status=status)
    if "REQUEST_LIMIT_EXCEEDED" in codes:
        return RateLimited(f"the org's daily API allocation is used up ({message})",
                           retry_after=DAILY_RETRY_AFTER, scope="daily", status=status)
    if codes & _TRANSIENT_CODES or (status is not None and status >= 500) or status in (408, 429):
        return Transient(message, status=status)
    if status == 404 or codes & _NOT_FOUND_CODES:
        return NotFound(message, status=status)
    if codes & {"API_DISABLED_FOR_ORG", "API_CURRENTLY_DISABLED"}:
        return NeedsReauth(f"the API is disabled for this org or user ({message})", status=status)
    return Rejected(message, status=status)


# ---- the connector -------------------------------------------------------------------------

# Org-wide usage seen in the last Sforce-Limit-Info header, per org (every response refreshes it).
_USAGE: dict[str, tuple[int, int]] = {}
# Whether the org's Opportunity has a RecordTypeId column (describe), per org: a real org has it
# only once a record type is defined, and selecting a missing column fails the whole query.
_RECORD_TYPE_COLUMN: dict[str, bool] = {}

OPPORTUNITY_SUMMARY = {  # DealUpdate.properties key -> (Opportunity field, kind)
    "progress_percent": ("MAP_Progress__c", "number"),
    "next_milestone": ("MAP_Next_Milestone__c", "text"),
    "next_milestone_due": ("MAP_Next_Milestone_Due__c", "date"),
    "risk": ("MAP_Risk__c", "text"),
    "overdue_count": ("MAP_Overdue_Count__c", "number"),
    "slip_days": ("MAP_Days_Slipped__c", "number"),
    "buyer_link": ("MAP_Buyer_Link__c", "url"),
    "health": ("MAP_Health__c", "text"),
    "win_probability": ("MAP_Win_Probability__c", "number"),
    "phase": ("MAP_Phase__c", "text"),
    "coverage": ("MAP_Coverage__c", "text"),
}


# MilestoneDoc field -> MAP_Milestone__c field (the org's namespace is added by `n`); the plan's
# UUID comes through the master-detail relationship, Plan__r.Plan_UUID__c.
MILESTONE_MAP = {
    "title": "Title__c", "stage_name": "Stage__c", "position": "Position__c",
    "description": "Description__c", "owner_side": "Owner_Side__c", "owner_name": "Owner_Name__c",
    "owner_email": "Owner_Email__c", "due_date": "Due_Date__c", "status": "Status__c",
    "risk": "Risk__c", "internal": "Internal_Only__c", "completed_at": "Completed_At__c",
    "gate_stage": "Gate_Stage__c",
}
_TEXT_LIMITS = {"title": 255, "stage_name": 80, "owner_name": 255}


def _sf_date(value) -> str | None:
    if value in (None, ""):
        return None
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


def _sf_datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_sf_datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def _soql_like(word: str) -> str:
    """A word for a SOQL LIKE string literal: backslash, quote, % and _ escaped."""
    out = word.replace("\\", "\\\\").replace("'", "\\'")
    return out.replace("%", "\\%").replace("_", "\\_")[:80]


def _soql_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class SalesforceConnector:
    provider = "salesforce"

    def __init__(self, store: base.TokenStore, oauth: SalesforceOAuth, *, namespace: str | None = None,
                 settings: dict | None = None, limiter=None, http: requests.Session | None = None,
                 version: str = API_VERSION, max_attempts: int = 3, wait_initial: float = 0.2,
                 page_size: int = 500):
        self.store, self.oauth = store, oauth
        self.settings = dict(settings or {})
        self.namespace = namespace if namespace is not None else (self.settings.get("namespace") or None)
        self.limiter = limiter
        self.http = http or http_session(oauth.ca_bundle, oauth.timeout)
        self.version = version
        self.max_attempts, self.wait_initial = max_attempts, wait_initial
        self.page_size = page_size
        self.calls = 0  # API calls made by this connector (composite = 1)
        self.refreshes = 0
        self._tokens = store.load()
        if self._tokens is None:
            raise NeedsReauth("no Salesforce tokens stored for this installation")
        self._sf: Salesforce | None = None

    # ---- names ---------------------------------------------------------------------------
    def n(self, name: str) -> str:
        """A package object/field/relationship name with the org's namespace prefix."""
        if self.namespace and name.endswith(("__c", "__r")) and name.count("__") == 1:
            return f"{self.namespace}__{name}"
        return name

    @property
    def org_id(self) -> str:
        return self._tokens.extra.get("org_id", "")

    @property
    def sf(self) -> Salesforce:
        if self._sf is None:
            self._sf = Salesforce(session_id=self._tokens.access_token,
                                  instance_url=self._tokens.extra["instance_url"],
                                  version=self.version, session=self.http)
        return self._sf

    def _path(self, rest: str) -> str:
        return f"/services/data/v{self.version}/{rest}"

    # ---- the one call path ------------------------------------------------------------------
    def _call(self, fn: Callable[[Salesforce], Any], *, urgent: bool = True, what: str = "") -> Any:
        """Run fn(simple-salesforce client) under the whole policy; see the module docstring."""
        replayed = False
        while True:
            try:
                return self._with_retries(fn, urgent, what)
            except AuthExpired:
                if replayed:
                    raise
                replayed = True
                self._refresh()

    def _with_retries(self, fn, urgent: bool, what: str):
        retrying = Retrying(retry=retry_if_exception_type(Transient),
                            stop=stop_after_attempt(self.max_attempts),
                            wait=wait_exponential(multiplier=self.wait_initial, max=5.0)
                            + wait_random(0, self.wait_initial),
                            reraise=True)
        return retrying(self._once, fn, urgent, what)

    def _once(self, fn, urgent: bool, what: str):
        if self.limiter is not None:
            self.limiter.acquire(f"salesforce:{self.org_id}")
        if not urgent:
            self._check_daily_budget()
        self.calls += 1
        try:
            return fn(self.sf)
        except Exception as exc:
            raise classify(None, None, exc=exc, what=what) from exc
        finally:
            self._note_usage()

    def _note_usage(self) -> None:
        usage = (getattr(self._sf, "api_usage", None) or {}).get("api-usage")
        if usage is not None:
            _USAGE[self.org_id] = (usage.used, usage.total)

    def api_usage(self) -> tuple[int, int] | None:
        """(used, allocation) of the org's rolling 24-hour API calls, as last seen."""
        return _USAGE.get(self.org_id)

    def _check_daily_budget(self) -> None:
        seen = _USAGE.get(self.org_id)
        if seen and seen[1] and seen[0] >= DAILY_DEFER_AT * seen[1]:
            raise RateLimited(f"the org has used {seen[0]} of {seen[1]} daily API calls; "
                              "non-urgent work waits", retry_after=DAILY_RETRY_AFTER, scope="daily",
                              status=None)

    def _refresh(self) -> None:
        """Refresh under the store's lock; reuse another worker's fresh token when there is one."""

        def refresher(current: base.TokenSet) -> base.TokenSet:
            if not current.refresh_token:
                raise NeedsReauth("no refresh token stored; reconnect the org")
            login = current.extra.get("login_url") or PRODUCTION_LOGIN
            body = self.oauth.refresh(current.refresh_token, base=login)
            self.refreshes += 1
            return token_set(body, login, current)

        self._tokens = self.store.refresh(self._tokens, refresher)
        self._sf = None

    def keep_alive(self) -> None:
        """Nothing to do ahead of time: Salesforce tells no lifetime; expiry is handled on 401."""

    def revoke(self) -> bool:
        token = self._tokens.refresh_token or self._tokens.access_token
        return self.oauth.revoke(token, base=self._tokens.extra.get("instance_url") or PRODUCTION_LOGIN)

    # ---- setup ------------------------------------------------------------------------------
    def check_package(self) -> dict:
        """The package's objects are in the org (one global describe; detects the namespace),
        and the org's name. Raises NotFound("package_missing: ...") when they are not."""
        described = self._call(lambda sf: sf.describe(), what="describe")
        names = [o["name"] for o in described.get("sobjects", [])]
        found = {}
        for wanted in (PLAN, MILESTONE):
            for name in names:
                if name == wanted or (name.endswith("__" + wanted) and name.count("__") == 2):
                    found[wanted] = name
        if len(found) < 2:
            raise NotFound(f"package_missing: the MutualPlan package's objects ({PLAN}, "
                           f"{MILESTONE}) are not in this org")
        prefix = found[PLAN][: -len(PLAN)]
        self.namespace = prefix[:-2] if prefix else None
        org = self._call(lambda sf: sf.query("SELECT Id, Name, IsSandbox FROM Organization"),
                         what="organization")
        record = (org.get("records") or [{}])[0]
        return {"namespace": self.namespace, "org_name": record.get("Name", ""),
                "is_sandbox": bool(record.get("IsSandbox")), "mode": "custom_objects",
                "api_version": self.version}

    def ensure_setup(self) -> dict:
        """check_package, then the org's Opportunity stages per sales process, in the shape
        webapp/sync.pipeline_stages caches: {"pipelines": {id: [vars(PipelineStage)]}, ...}."""
        settings = self.check_package()
        settings.update(self._learn_pipelines())
        self.settings.pop("record_type_column", None)
        _RECORD_TYPE_COLUMN.pop(self.org_id, None)  # setup re-reads describe
        settings["record_type_column"] = self.has_record_type_column()
        self.settings.update(settings)
        return settings

    def _learn_pipelines(self) -> dict:
        stages = self._call(lambda sf: sf.query(
            "SELECT ApiName, MasterLabel, SortOrder, IsClosed, IsWon, DefaultProbability "
            "FROM OpportunityStage WHERE IsActive = true ORDER BY SortOrder"), what="stages")
        all_stages = [PipelineStage(id=r["ApiName"] or r["MasterLabel"], label=r["MasterLabel"],
                                    position=i, probability=(r.get("DefaultProbability") or 0) / 100,
                                    closed=bool(r["IsClosed"]), won=bool(r["IsWon"]))
                      for i, r in enumerate(stages["records"])]
        pipelines = {"default": [vars(s) for s in all_stages]}
        record_types: dict = {}
        rts = self._call(lambda sf: sf.query(
            "SELECT Id, Name, DeveloperName, BusinessProcessId FROM RecordType "
            "WHERE SobjectType = 'Opportunity' AND IsActive = true"), what="record types")
        processes = {}
        if rts["records"]:
            bps = self._call(lambda sf: sf.query(
                "SELECT Id, Name FROM BusinessProcess WHERE TableEnumOrId = 'Opportunity'"),
                what="sales processes")
            processes = {r["Id"]: r["Name"] for r in bps["records"]}
        for rt in rts["records"]:
            process = processes.get(rt.get("BusinessProcessId"))
            if not process:
                continue
            record_types[rt["Id"]] = process
            if process in pipelines:
                continue
            values = self._call(lambda sf, rid=rt["Id"]: sf.restful(
                f"ui-api/object-info/Opportunity/picklist-values/{rid}/StageName"),
                what="sales process stages")
            allowed = {v["value"] for v in values.get("values", [])}
            pipelines[process] = [dict(vars(s), position=i) for i, s in
                                  enumerate(s for s in all_stages if s.id in allowed)]
        return {"pipelines": pipelines, "record_type_pipelines": record_types}

    def pipeline_stages(self, pipeline: str | None = None) -> list[PipelineStage]:
        cached = (self.settings.get("pipelines") or {})
        if pipeline not in cached:
            cached = self._learn_pipelines()["pipelines"]
            self.settings["pipelines"] = cached
        return [PipelineStage(**s) for s in cached.get(pipeline or "default", cached["default"])]

    def has_record_type_column(self) -> bool:
        """Does the org's Opportunity have RecordTypeId? From settings (ensure_setup) or one
        describe per org and process; an org without record types has no such column."""
        if "record_type_column" in self.settings:
            return bool(self.settings["record_type_column"])
        if self.org_id not in _RECORD_TYPE_COLUMN:
            described = self._call(lambda sf: sf.Opportunity.describe(), what="describe")
            _RECORD_TYPE_COLUMN[self.org_id] = any(
                f.get("name") == "RecordTypeId" for f in described.get("fields", []))
        self.settings["record_type_column"] = _RECORD_TYPE_COLUMN[self.org_id]
        return self.settings["record_type_column"]

    def _record_type_select(self) -> str:
        return "RecordTypeId, " if self.has_record_type_column() else ""

    def _pipeline_of(self, record_type_id: str | None) -> str:
        return (self.settings.get("record_type_pipelines") or {}).get(record_type_id or "", "default")

    # ---- deals -----------------------------------------------------------------------------
    def get_deal(self, deal_id: str) -> Deal:
        if not re.fullmatch(r"[a-zA-Z0-9]{15,18}", deal_id or ""):
            raise NotFound(f"{deal_id!r} is not a Salesforce record id")
        result = self._call(lambda sf: sf.query(
            f"SELECT Id, StageName, CloseDate, {self._record_type_select()}SystemModstamp "
            f"FROM Opportunity WHERE Id = '{deal_id}'"), what="opportunity")
        if not result["records"]:
            raise NotFound(f"opportunity {deal_id} not found")
        r = result["records"][0]
        return Deal(r["Id"], self._pipeline_of(r.get("RecordTypeId")), r["StageName"],
                    date.fromisoformat(r["CloseDate"]) if r.get("CloseDate") else None,
                    _parse_sf_datetime(r.get("SystemModstamp")))

    def deal_field(self, deal_id: str, name: str) -> str:
        """One field of an Opportunity as text ("" when empty), e.g. the customer-success
        owner an admin names in the hand-off settings (webapp/onboarding.py); a relationship
        path such as CS_Owner__r.Email is followed."""
        if not re.fullmatch(r"[a-zA-Z0-9]{15,18}", deal_id or ""):
            raise NotFound(f"{deal_id!r} is not a Salesforce record id")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,79}(\.[A-Za-z][A-Za-z0-9_]{0,79}){0,2}", name or ""):
            raise Rejected(f"{name!r} is not a Salesforce field name")
        result = self._call(lambda sf: sf.query(
            f"SELECT Id, {name} FROM Opportunity WHERE Id = '{deal_id}'"), what="opportunity")
        if not result["records"]:
            raise NotFound(f"opportunity {deal_id} not found")
        value = result["records"][0]
        for part in name.split("."):
            value = (value or {}).get(part) if isinstance(value, dict) else None
        return str(value or "")

    def search_deals(self, query: str, limit: int = 10) -> list[Deal]:
        """SOQL on Opportunity.Name: every word with LIKE '%word%' (quotes, backslashes and
        LIKE's own wildcards escaped), most recently changed first."""
        words = [_soql_like(w) for w in query.split()[:5]]
        words = [w for w in words if w]
        if not words:
            return []
        where = " AND ".join(f"Name LIKE '%{w}%'" for w in words)
        result = self._call(lambda sf: sf.query(
            f"SELECT Id, Name, StageName, CloseDate, {self._record_type_select()}SystemModstamp "
            "FROM Opportunity "
            f"WHERE {where} ORDER BY SystemModstamp DESC LIMIT {max(1, min(int(limit), 50))}"),
            what="opportunity search")
        return [Deal(r["Id"], self._pipeline_of(r.get("RecordTypeId")), r["StageName"],
                     date.fromisoformat(r["CloseDate"]) if r.get("CloseDate") else None,
                     _parse_sf_datetime(r.get("SystemModstamp")), r.get("Name") or "")
                for r in result["records"]]

    def update_deal(self, update: DealUpdate) -> None:
        body = self._opportunity_body(update)
        if body:
            self._call(lambda sf: sf.restful(f"sobjects/Opportunity/{update.deal_id}", method="PATCH",
                                             json=body), what=f"opportunity {update.deal_id}")

    def _opportunity_body(self, update: DealUpdate) -> dict:
        body: dict = {}
        if update.stage:
            body["StageName"] = update.stage
        if update.close_date:
            body["CloseDate"] = _sf_date(update.close_date)
        for key, value in (update.properties or {}).items():
            if key not in OPPORTUNITY_SUMMARY:
                continue
            name, kind = OPPORTUNITY_SUMMARY[key]
            body[self.n(name)] = (_number(value) if kind == "number" else
                                  _sf_date(value) if kind == "date" else (value or None))
        return body

    # ---- push ------------------------------------------------------------------------------
    def _plan_body(self, plan: PlanDoc) -> dict:
        n = self.n
        body = {
            n("Value_Summary__c"): plan.value_summary or None,
            n("Objectives__c"): plan.objectives or None,
            n("Constraints__c"): plan.constraints or None,
            n("Progress_Percent__c"): plan.progress_percent,
            n("Overall_Risk__c"): plan.risk or None,
            n("Next_Milestone__c"): (plan.next_milestone or "")[:255] or None,
            n("Next_Milestone_Due__c"): _sf_date(plan.next_milestone_due),
            n("Overdue_Count__c"): plan.overdue_count,
            n("Days_Slipped__c"): plan.slip_days,
            n("Buyer_Link__c"): plan.buyer_link or None,
            n("Go_Live_Date__c"): _sf_date(plan.go_live_date),
            n("Budget__c"): (plan.budget or "")[:255] or None,
            n("Content_Count__c"): plan.content_count,
        }
        if re.fullmatch(r"006[a-zA-Z0-9]{12}(?:[a-zA-Z0-9]{3})?", plan.deal_id or ""):
            body[n("Opportunity__c")] = plan.deal_id
        return body

    def _milestone_record(self, m: MilestoneDoc, plan_ref: str | None,
                          previous: dict | None = None) -> dict:
        """plan_ref None: the record exists in the org, so the master-detail Plan__c is left out
        (a non-reparentable master-detail is createable, not updateable; DESIGN §5). With
        `previous` (what that record held) only the fields that changed are sent, so a rep's
        newer edit of another field is not overwritten."""
        changed = base.changed_fields(m, previous) if plan_ref is None else None
        n = self.n
        record = {"attributes": {"type": n(MILESTONE)}, n("Milestone_UUID__c"): m.uuid}
        if changed is None or "title" in changed:
            record["Name"] = (m.title or "Milestone")[:80]
        if plan_ref is not None:
            record[n("Plan__c")] = plan_ref
        for name, sf_field in MILESTONE_MAP.items():
            if changed is not None and name not in changed:
                continue
            value = getattr(m, name)
            if name in _TEXT_LIMITS:
                value = (value or "")[:_TEXT_LIMITS[name]]
            if name == "due_date":
                value = _sf_date(value)
            elif name == "completed_at":
                value = _sf_datetime(value)
            elif name == "internal":
                value = bool(value)
            elif name not in ("title", "position", "owner_side", "status", "risk"):
                value = value or None
            record[n(sf_field)] = value
        return record

    def push_plan(self, plan: PlanDoc, deal: DealUpdate | None) -> PushResult:
        """One Composite request per plan (chunked past 25 sub-requests / 200 milestones)."""
        n = self.n
        plan_url = self._path(f"sobjects/{n(PLAN)}/{n('Plan_UUID__c')}/{quote(plan.uuid)}")
        plan_sub = {"method": "PATCH", "url": plan_url, "referenceId": "plan",
                    "body": self._plan_body(plan)}
        milestone_subs = []
        known = plan.remote_ids or {}
        records = [self._milestone_record(m, None, plan.previous.get(m.uuid)) if known.get(m.uuid)
                   else self._milestone_record(m, "@{plan.id}") for m in plan.milestones]
        for i in range(0, len(records), MAX_COLLECTION):
            milestone_subs.append({
                "method": "PATCH", "referenceId": f"ms{i // MAX_COLLECTION}",
                "url": self._path(f"composite/sobjects/{n(MILESTONE)}/{n('Milestone_UUID__c')}"),
                "body": {"allOrNone": False, "records": records[i:i + MAX_COLLECTION]}})
        delete_subs = [{"method": "DELETE", "referenceId": f"del{i}",
                        "url": self._path(f"sobjects/{n(MILESTONE)}/{n('Milestone_UUID__c')}/{quote(u)}")}
                       for i, u in enumerate(plan.deleted_milestones)]
        deal_subs = []
        if deal is not None and not deal.is_empty():
            body = self._opportunity_body(deal)
            if body:
                deal_subs.append({"method": "PATCH", "referenceId": "deal", "body": body,
                                  "url": self._path(f"sobjects/Opportunity/{deal.deal_id}")})
        # Records born in the org without our UUID get it first, by record id, so the upserts
        # by external id below find them instead of creating twins.
        adopt_subs = self._adopt_subs(plan)
        # Every chunk starts with the plan upsert (it yields @{plan.id} for the milestones and is
        # idempotent); collections count towards the 5-heavy-subrequests limit.
        others = milestone_subs + delete_subs + deal_subs + self._task_subs(plan)
        chunks, current, heavy = [], [*adopt_subs, plan_sub], 0
        for sub in others:
            is_heavy = "/composite/sobjects" in sub["url"]
            if len(current) >= MAX_SUBREQUESTS or (is_heavy and heavy >= 5):
                chunks.append(current)
                current, heavy = [plan_sub], 0
            current.append(sub)
            heavy += is_heavy
        chunks.append(current)
        remote_ids: dict = {}
        uuids = [m.uuid for m in plan.milestones]
        existing: list = []
        for chunk in chunks:
            found, refused = self._composite(chunk, plan, uuids)
            remote_ids.update(found)
            existing += refused
        if adopt_subs:
            remote_ids["adopted"] = {}  # written: nothing left to adopt
        calls = len(chunks)
        if existing:  # records we did not know were there (an earlier push half-failed): update
            remote_ids.update(self._update_existing(plan, existing))
            calls += 1
        return PushResult(remote_ids=remote_ids, calls=calls)

    def _task_subs(self, plan: PlanDoc) -> list:
        """The buyer's actions as completed Tasks on the Opportunity: one sObject Collections
        create (up to 200 records) inside the push's own Composite, so no extra round trip.
        Task fields: Subject (255), Description, Status (a closed TaskStatus value, "Completed"
        by default), ActivityDate (a date), WhatId (the Opportunity),
        https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/
        sforce_api_objects_task.htm; collections create, https://developer.salesforce.com/docs/
        atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections_create.htm.
        Task has no external id, so Tasks are created, not upserted: `_composite` never replays
        a Task that was created (the "_uuids" key says which record is which, and is not sent)."""
        if not plan.activities or not re.fullmatch(r"006[a-zA-Z0-9]{12}(?:[a-zA-Z0-9]{3})?",
                                                   plan.deal_id or ""):
            return []
        records = [{"attributes": {"type": "Task"}, "Subject": a.subject[:255],
                    "Description": a.body or None, "Status": "Completed", "Priority": "Normal",
                    "TaskSubtype": "Task", "ActivityDate": _sf_date(a.at.date()), "WhatId": plan.deal_id}
                   for a in plan.activities]
        uuids = [a.uuid for a in plan.activities]
        return [{"method": "POST", "referenceId": f"tasks{i // MAX_COLLECTION}",
                 "url": self._path("composite/sobjects"), "_uuids": uuids[i:i + MAX_COLLECTION],
                 "body": {"allOrNone": False, "records": records[i:i + MAX_COLLECTION]}}
                for i in range(0, len(records), MAX_COLLECTION)]

    def remove_plan(self, plan_uuid: str, deal_id: str, milestone_uuids: tuple,
                    remote_ids: dict) -> None:
        """A plan deleted in MutualPlan: its milestones and plan record go to the recycle bin
        (deletes by external id; 404 = already gone) and the Opportunity's MAP_* fields are
        cleared, in one Composite request. Deleting the master also deletes its details; the
        milestones are deleted first anyway, so none survives a plan record we never made."""
        n = self.n
        subs = [{"method": "DELETE", "referenceId": f"del{i}",
                 "url": self._path(f"sobjects/{n(MILESTONE)}/{n('Milestone_UUID__c')}/{quote(u)}")}
                for i, u in enumerate(milestone_uuids[:MAX_SUBREQUESTS - 2])]
        subs.append({"method": "DELETE", "referenceId": "plan",
                     "url": self._path(f"sobjects/{n(PLAN)}/{n('Plan_UUID__c')}/{quote(plan_uuid)}")})
        if re.fullmatch(r"[a-zA-Z0-9]{15,18}", deal_id or ""):
            subs.append({"method": "PATCH", "referenceId": "clear",
                         "url": self._path(f"sobjects/Opportunity/{deal_id}"),
                         "body": {n(name): None for name, _ in OPPORTUNITY_SUMMARY.values()}})
        doc = PlanDoc(uuid=plan_uuid, title="", deal_id=deal_id)
        self._composite(subs, doc, [])

    def _adopt_subs(self, plan: PlanDoc) -> list:
        n = self.n
        adopted = (plan.remote_ids or {}).get("adopted") or {}
        subs = []
        for i, (uuid, record_id) in enumerate(sorted(adopted.items())):
            if uuid == plan.uuid:
                url, body = f"sobjects/{n(PLAN)}/{record_id}", {n("Plan_UUID__c"): uuid}
            else:
                url, body = f"sobjects/{n(MILESTONE)}/{record_id}", {n("Milestone_UUID__c"): uuid}
            subs.append({"method": "PATCH", "referenceId": f"adopt{i}", "url": self._path(url),
                         "body": body})
        return subs

    def _update_existing(self, plan: PlanDoc, uuids: list) -> dict:
        """Upsert milestones that exist in the org without the master-detail field."""
        n = self.n
        docs = [m for m in plan.milestones if m.uuid in set(uuids)]
        sub = {"method": "PATCH", "referenceId": "ms0",
               "url": self._path(f"composite/sobjects/{n(MILESTONE)}/{n('Milestone_UUID__c')}"),
               "body": {"allOrNone": False,
                        "records": [self._milestone_record(m, None) for m in docs]}}
        found, refused = self._composite([sub], plan, [m.uuid for m in docs])
        if refused:
            raise Rejected(f"milestones {refused} refused an update without Plan__c")
        return found

    def _composite(self, subs: list, plan: PlanDoc, milestone_uuids: list) -> dict:
        # The sub-responses are checked inside the call, so a lock error (Transient) is retried
        # by the same policy; replaying the Composite is safe as every write is an upsert, except
        # Task creates: those that succeeded (`created`) are left out of the replay.
        created: set = set()  # activity uuids whose Task exists

        def send(sf):
            live = [_without_created(sub, created) for sub in subs]
            live = [sub for sub in live if sub is not None]
            wire = [{k: v for k, v in sub.items() if k != "_uuids"} for sub in live]
            return self._check_composite(sf.restful("composite", method="POST", json={
                "allOrNone": False, "compositeRequest": wire}), live, plan, milestone_uuids, created)
        return self._call(send, what=f"push of plan {plan.uuid}")

    def _check_composite(self, response: dict, subs: list, plan: PlanDoc,
                         milestone_uuids: list, created: set | None = None) -> tuple[dict, list]:
        """Composite answers 200 when parts fail: look at every sub-response and record.

        Returns (uuid -> record id, uuids of milestones refused only because they already
        exist and we sent the master-detail Plan__c: the caller updates them without it)."""
        failures: list[CrmError] = []
        remote_ids: dict = {}
        refused: list = []
        by_ref = {s["referenceId"]: s for s in subs}
        for part in response.get("compositeResponse", []):
            ref, status, body = part["referenceId"], part["httpStatusCode"], part.get("body")
            sub = by_ref.get(ref, {})
            if ref == "plan" and status < 300 and isinstance(body, dict):
                remote_ids[plan.uuid] = body.get("id")
            if ref.startswith("tasks") and status < 300 and isinstance(body, list) and created is not None:
                for uuid, result in zip(sub.get("_uuids") or [], body):
                    if result.get("success"):
                        created.add(uuid)
                    else:
                        failures.append(classify(400, result.get("errors"), what=f"task for {uuid}"))
                continue
            if status >= 300:
                if status == 404 and (sub.get("method") == "DELETE" or ref == "clear"):
                    continue  # already gone: deletes are idempotent, a deleted deal has no summary
                failures.append(classify(status, body, what=self._describe_sub(ref, plan)))
                continue
            if ref.startswith("ms") and isinstance(body, list):
                start = int(ref[2:]) * MAX_COLLECTION
                for offset, result in enumerate(body):
                    uuid = milestone_uuids[start + offset] if start + offset < len(milestone_uuids) else "?"
                    if result.get("success"):
                        remote_ids[uuid] = result.get("id")
                    elif _master_detail_refused(result.get("errors"), self.n("Plan__c")):
                        refused.append(uuid)
                    else:
                        failures.append(classify(400, result.get("errors"), what=f"milestone {uuid}"))
        if failures:
            raise _worst(failures)
        return remote_ids, refused

    @staticmethod
    def _describe_sub(ref: str, plan: PlanDoc) -> str:
        if ref == "plan":
            return f"plan {plan.uuid}"
        if ref == "deal":
            return f"opportunity {plan.deal_id}"
        return ref

    # ---- pull ------------------------------------------------------------------------------
    def _milestone_soql(self, since: datetime) -> str:
        n = self.n
        fields = ["Id", "IsDeleted", "SystemModstamp", n("Milestone_UUID__c"), n("Plan__c"),
                  f"{n('Plan__r')}.{n('Plan_UUID__c')}", "LastModifiedBy.Name",
                  *(n(f) for f in MILESTONE_MAP.values())]
        return (f"SELECT {', '.join(fields)} FROM {n(MILESTONE)} "
                f"WHERE SystemModstamp >= {_soql_datetime(since)} ORDER BY SystemModstamp, Id")

    def _opportunity_soql(self, since: datetime) -> str:
        return (f"SELECT Id, IsDeleted, SystemModstamp, StageName, CloseDate, "
                f"{self._record_type_select()}LastModifiedBy.Name FROM Opportunity "
                f"WHERE SystemModstamp >= {_soql_datetime(since)} ORDER BY SystemModstamp, Id")

    QUERIES = ("plan", "ms", "opp")  # plans first: a new plan is applied before its milestones

    def pull(self, since: datetime, cursor: str | None = None) -> Page:
        """Changed plans, milestones and Opportunities since `since`, deletions included
        (queryAll: IsDeleted rows from the recycle bin; an undeleted record comes back with a
        new SystemModstamp and IsDeleted false).

        The first page asks the three queries in one Composite call; further pages follow each
        query's nextRecordsUrl, plans first. The cursor is JSON: {"plan"|"ms"|"opp": url|None}.
        A poll is non-urgent: past DAILY_DEFER_AT of the daily allocation it defers.
        """
        since = since.replace(microsecond=0)
        empty = {"records": [], "done": True}
        if cursor is None:
            soql = {"plan": self._plan_soql(since), "ms": self._milestone_soql(since),
                    "opp": self._opportunity_soql(since)}
            response = self._call(lambda sf: sf.restful("composite", method="POST", json={
                "allOrNone": False, "compositeRequest": [
                    {"method": "GET", "referenceId": ref,
                     "url": self._path(f"queryAll?q={quote(soql[ref])}")}
                    for ref in self.QUERIES]}), urgent=False, what="poll")
            parts = {p["referenceId"]: p for p in response.get("compositeResponse", [])}
            for ref in self.QUERIES:
                part = parts.get(ref) or {}
                if part.get("httpStatusCode", 500) >= 300:
                    raise classify(part.get("httpStatusCode"), part.get("body"), what="poll")
            bodies = {ref: parts[ref]["body"] for ref in self.QUERIES}
            state = {ref: _next_url(bodies[ref]) for ref in self.QUERIES}
        else:
            state = json.loads(cursor)
            bodies = dict.fromkeys(self.QUERIES, empty)
            ref = next((r for r in self.QUERIES if state.get(r)), None)
            if ref:  # one locator per page, in QUERIES order; the others wait in the cursor
                bodies[ref] = self._call(lambda sf: sf.query_more(
                    state[ref], identifier_is_url=True), urgent=False, what="poll")
                state[ref] = _next_url(bodies[ref])
        changes = self._plan_changes(bodies["plan"].get("records", [])) + \
            self._milestone_changes(bodies["ms"].get("records", [])) + \
            self._deal_changes(bodies["opp"].get("records", []))
        more = any(state.get(r) for r in self.QUERIES)
        return Page(changes=changes, cursor=json.dumps(state) if more else None)

    def _plan_soql(self, since: datetime) -> str:
        n = self.n
        fields = ["Id", "IsDeleted", "SystemModstamp", "Name", n("Plan_UUID__c"),
                  n("Opportunity__c"), n("Value_Summary__c"), "LastModifiedBy.Name"]
        return (f"SELECT {', '.join(fields)} FROM {n(PLAN)} "
                f"WHERE SystemModstamp >= {_soql_datetime(since)} ORDER BY SystemModstamp, Id")

    def _plan_changes(self, records: list) -> list[base.RemoteChange]:
        """Plan records, with or without our UUID (the component creates them through LDS)."""
        n = self.n
        out, seen = [], set()
        for r in records:
            key = (r["Id"], r.get("SystemModstamp"))
            if key in seen:
                continue
            seen.add(key)
            out.append(base.RemoteChange(
                "plan", r.get(n("Plan_UUID__c")) or "", {
                    "remote_id": r["Id"], "deal_id": r.get(n("Opportunity__c")) or "",
                    "title": f"Mutual action plan {r.get('Name') or ''}".strip(),
                    "value_summary": r.get(n("Value_Summary__c")) or "",
                    "modified_by": _modified_by(r)},
                _parse_sf_datetime(r.get("SystemModstamp")), deleted=bool(r.get("IsDeleted"))))
        return out

    def _milestone_changes(self, records: list) -> list[base.RemoteChange]:
        n = self.n
        out, seen = [], set()
        for r in records:
            uuid = r.get(n("Milestone_UUID__c")) or ""  # "" : made by a rep without our id
            key = (r["Id"], r.get("SystemModstamp"))
            if key in seen:
                continue
            seen.add(key)
            modified = _parse_sf_datetime(r.get("SystemModstamp"))
            meta = {"remote_id": r["Id"], "plan_remote_id": r.get(n("Plan__c")) or "",
                    "modified_by": _modified_by(r)}
            if r.get("IsDeleted"):
                out.append(base.RemoteChange("milestone", uuid, meta, modified, deleted=True))
                continue
            plan = r.get(n("Plan__r")) or {}
            v = {name: r.get(n(sf_field)) for name, sf_field in MILESTONE_MAP.items()}
            fields = {
                "plan_uuid": plan.get(n("Plan_UUID__c")) or "",
                **{name: v[name] or "" for name in ("title", "stage_name", "description",
                                                    "owner_name", "owner_email")},
                "position": int(v["position"]) if v["position"] is not None else 0,
                "owner_side": v["owner_side"] or "seller",
                "due_date": date.fromisoformat(v["due_date"]) if v["due_date"] else None,
                "status": v["status"] or "not_started",
                "risk": v["risk"] or "on_track",
                "internal": bool(v["internal"]),
                "completed_at": _parse_sf_datetime(v["completed_at"]),
                "gate_stage": v["gate_stage"] or None,
            }
            out.append(base.RemoteChange("milestone", uuid, {**fields, **meta}, modified,
                                         content_hash=base.content_hash(fields)))
        return out

    def _deal_changes(self, records: list) -> list[base.RemoteChange]:
        out, seen = [], set()
        for r in records:
            key = (r["Id"], r.get("SystemModstamp"))
            if key in seen:
                continue
            seen.add(key)
            modified = _parse_sf_datetime(r.get("SystemModstamp"))
            if r.get("IsDeleted"):
                out.append(base.RemoteChange("deal", r["Id"], {}, modified, deleted=True))
                continue
            out.append(base.RemoteChange("deal", r["Id"], {
                "stage": r.get("StageName"), "pipeline": self._pipeline_of(r.get("RecordTypeId")),
                "close_date": date.fromisoformat(r["CloseDate"]) if r.get("CloseDate") else None,
                "modified_by": _modified_by(r),
            }, modified))
        return out


def _modified_by(record: dict) -> str:
    """The name of the user who last modified a record (LastModifiedBy.Name), or ""."""
    return str((record.get("LastModifiedBy") or {}).get("Name") or "")


def _without_created(sub: dict, created: set) -> dict | None:
    """A Task collection sub-request without the Tasks already created (None: none left)."""
    if "_uuids" not in sub or not created:
        return sub
    keep = [i for i, uuid in enumerate(sub["_uuids"]) if uuid not in created]
    if not keep:
        return None
    records = sub["body"]["records"]
    return {**sub, "_uuids": [sub["_uuids"][i] for i in keep],
            "body": {**sub["body"], "records": [records[i] for i in keep]}}


def _master_detail_refused(errors, field: str) -> bool:
    """Is this the refusal of an update that set the non-updateable master-detail field?"""
    return any(isinstance(e, dict) and e.get("statusCode") == "INVALID_FIELD_FOR_INSERT_UPDATE"
               and field in (e.get("fields") or []) for e in errors or [])


def _next_url(result: dict) -> str | None:
    return None if result.get("done", True) else result.get("nextRecordsUrl")


def _worst(failures: list[CrmError]) -> CrmError:
    """Of several sub-request failures, the one that decides the push's fate.

    Needs-reconnect beats rate limits beat transient errors (retry the lot) beat
    rejections (dead letter with every message)."""
    for kind in (NeedsReauth, AuthExpired, RateLimited, Transient):
        for f in failures:
            if isinstance(f, kind):
                return f
    rejected = [f for f in failures if isinstance(f, Rejected)]
    if rejected:
        return Rejected("; ".join(f.detail for f in rejected)[:2000], status=rejected[0].status)
    return failures[0]
