"""Salesforce: the Connect flow, the connector factory, bootstrap and the adaptive poll.

Connect (a straight sequence, each step with a named failure, Bolt-style):

    GET /install/salesforce[?sandbox=1 | ?my_domain=acme.my.salesforce.com]
        -> browser cookie + single-use state (holding the PKCE verifier and login host)
        -> 302 to <login host>/services/oauth2/authorize (code_challenge S256)
    GET /oauth/salesforce/callback?code&state
        access_denied | invalid_state | invalid_browser | expired_state | used_state
        -> code exchange with code_verifier AND client_secret      invalid_code
        -> signature of the token response (HMAC of id+issued_at)  bad_signature
        -> the package's objects are in the org (describe)         package_missing
        -> installations.save (tokens encrypted)                   storage_error
        -> job "salesforce_bootstrap": stages per sales process cached into
           settings["pipelines"], then the first pull
        -> success page with the org and, on first install, the API key (shown once)

Tokens: `InstallationTokenStore` implements connector.salesforce.TokenStore on
installations.locked() (row lock with re-read on PostgreSQL) plus a
process-local lock (SQLite does not lock rows on read), so two workers never
both spend a refresh token and a rotated one is saved before the lock is released.

Polling (DESIGN §5): Salesforce has no webhooks for our objects, so each org is
polled on SystemModstamp at an adaptive interval, `poll_interval`: every
POLL_ACTIVE seconds while the org is active (a change pulled from it, or a push
to it, in the last ACTIVE_WINDOW), then POLL_WARM, then POLL_IDLE. `is_due` is
what the clock asks; the task "salesforce_poll" pulls the due orgs.
"""
from __future__ import annotations

import logging
import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from flask import Blueprint, current_app, g, jsonify, redirect, render_template, request
from sqlalchemy import func, select

from connector.base import TokenSet
from connector.errors import CrmError, NeedsReauth, NotFound
from connector.salesforce import (
    PRODUCTION_LOGIN,
    SANDBOX_LOGIN,
    MemoryTokenStore,
    OAuthClient,
    OAuthFailure,
    SalesforceConnector,
    login_base,
    new_verifier,
    token_set,
)

from .. import installations, jobs, outbox, sync
from ..auth import api_key_required
from ..db import database, session
from ..errors import NotFound as NotFoundProblem
from ..models import Installation, Mirror

log = logging.getLogger("mutualplan.salesforce")
bp = Blueprint("salesforce", __name__)
PROVIDER = "salesforce"
CALLBACK = "/oauth/salesforce/callback"

POLL_ACTIVE = 60.0  # seconds between polls while an org is active
POLL_WARM = 300.0
POLL_IDLE = 900.0
ACTIVE_WINDOW = timedelta(minutes=30)
WARM_WINDOW = timedelta(hours=2)

FAILURES = {
    "access_denied": ("Access was not granted",
                      "Salesforce says the connection was declined. Click Connect again and choose Allow."),
    "authorization_error": ("Salesforce refused the request",
                            "Salesforce did not authorise the app: {detail}"),
    "invalid_state": ("This link is not valid",
                      "The sign-in answer does not belong to a connect we started. Start again from the Connect button."),
    "invalid_browser": ("Finish in the same browser",
                        "The connect was started in another browser or its cookie was lost. Start again here."),
    "expired_state": ("The connect took too long",
                      "More than 10 minutes passed since you clicked Connect. Start again."),
    "used_state": ("Already used",
                   "This sign-in answer was already used. If the org is not connected, start again."),
    "invalid_code": ("Salesforce did not confirm the connection",
                     "Exchanging the authorisation code failed: {detail}. Start again."),
    "bad_signature": ("The answer could not be verified",
                      "The token response's signature does not match our client secret, so it was refused."),
    "invalid_domain": ("That is not a Salesforce My Domain",
                       "Use your org's My Domain host, e.g. acme.my.salesforce.com."),
    "package_missing": ("Install the MutualPlan package first",
                        ("The org {org} does not have the MutualPlan package (objects Mutual_Action_Plan__c "
                         "and MAP_Milestone__c). Install the package from AppExchange, assign the "
                         "'MutualPlan User' permission set, then click Connect again.")),
    "salesforce_unavailable": ("Salesforce did not answer",
                               "We could not read the org just now ({detail}). Try again in a minute."),
    "storage_error": ("We could not save the connection",
                      "Something went wrong on our side while saving; nothing was connected. Try again."),
    "not_configured": ("Salesforce is not configured",
                       "SALESFORCE_CLIENT_ID and SALESFORCE_CLIENT_SECRET are not set on this server."),
}


# ---- wiring ---------------------------------------------------------------------------


def oauth_client(app=None) -> OAuthClient:
    app = app or current_app
    return OAuthClient(app.config.get("SALESFORCE_CLIENT_ID", ""),
                       app.config.get("SALESFORCE_CLIENT_SECRET", ""),
                       app.config["PUBLIC_BASE_URL"].rstrip("/") + CALLBACK,
                       ca_bundle=app.config.get("CRM_CA_BUNDLE"),
                       timeout=float(app.config.get("SALESFORCE_TIMEOUT", 30.0)))


def _login_url(kind: str, my_domain: str | None) -> str:
    production = (current_app.config.get("SALESFORCE_LOGIN_URL") or PRODUCTION_LOGIN).rstrip("/")
    sandbox = current_app.config.get("SALESFORCE_SANDBOX_LOGIN_URL") or (
        SANDBOX_LOGIN if production == PRODUCTION_LOGIN else production)
    return login_base(kind, my_domain, production=production, sandbox=sandbox)


class InstallationTokenStore:
    """connector.salesforce.TokenStore on the installations table (see module docstring)."""

    _locks: ClassVar[dict[str, threading.Lock]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, installation_id: str, tokens: TokenSet):
        self.installation_id, self.tokens = installation_id, tokens

    def load(self) -> TokenSet:
        return self.tokens

    def _lock(self) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(self.installation_id, threading.Lock())

    def refresh(self, fn):
        # The thread's own session: the refresh commits it (a refresh must be saved at once).
        s = session()
        with self._lock(), installations.locked(s, self.installation_id) as row:
            current = installations.tokens_of(row)
            if current is None:
                raise NeedsReauth("the installation has no tokens; reconnect the org")
            new = fn(current)
            if new is not current:
                installations.store_tokens(row, new)
        self.tokens = new
        return new


def connector_factory(installation: Installation) -> SalesforceConnector:
    """The SalesforceConnector of an installation (registered in create_app)."""
    tokens = installations.tokens_of(installation)
    if tokens is None:
        raise NeedsReauth("no Salesforce tokens stored; reconnect the org")
    app = current_app
    return SalesforceConnector(
        InstallationTokenStore(installation.id, tokens), oauth_client(app),
        settings=installation.settings or {}, limiter=jobs.rate_limiter(PROVIDER),
        wait_initial=float(app.config.get("SALESFORCE_RETRY_WAIT", 0.2)))


def register(app) -> None:
    """Blueprint, connector factory, jobs and the clock entry (called by create_app)."""
    app.register_blueprint(bp)
    app.extensions.setdefault("mutualplan.connectors", {})[PROVIDER] = connector_factory
    app.extensions.setdefault("mutualplan.poll_due", {})[PROVIDER] = is_due
    jobs.TASKS.setdefault("salesforce_bootstrap", bootstrap)
    jobs.TASKS.setdefault("salesforce_poll", poll_due)
    if not any(name == "salesforce_poll" for name, _ in jobs.CLOCK):
        jobs.CLOCK.append(("salesforce_poll", 15.0))


# ---- connect ----------------------------------------------------------------------------


def _failure(reason: str, status: int = 400, **values):
    title, text = FAILURES[reason]
    values.setdefault("detail", "")
    values.setdefault("org", "")
    return render_template("salesforce/failed.html", reason=reason, title=title,
                           text=text.format(**values)), status


@bp.get("/install/salesforce")
def install():
    app = current_app
    if not (app.config.get("SALESFORCE_CLIENT_ID") and app.config.get("SALESFORCE_CLIENT_SECRET")):
        return _failure("not_configured", 503)
    kind = "sandbox" if request.args.get("sandbox") in ("1", "true", "yes") else "production"
    my_domain = request.args.get("my_domain") or None
    try:
        login_url = _login_url(kind, my_domain)
    except OAuthFailure as exc:
        return _failure(exc.reason, 400)
    browser = request.cookies.get(installations.BROWSER_COOKIE) or secrets.token_urlsafe(32)
    verifier = new_verifier()
    s = session()
    state = installations.issue_state(s, PROVIDER, browser, {
        "verifier": verifier, "login_url": login_url, "kind": "my_domain" if my_domain else kind})
    s.commit()
    url = oauth_client().authorization_url(login_url, state, verifier)
    response = redirect(url, 302)
    response.set_cookie(installations.BROWSER_COOKIE, browser, max_age=600, httponly=True,
                        samesite="Lax", secure=app.config["PUBLIC_BASE_URL"].startswith("https"))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get(CALLBACK)
def callback():
    s = session()
    error = request.args.get("error")
    try:
        data = installations.consume_state(s, PROVIDER, request.args.get("state"),
                                           request.cookies.get(installations.BROWSER_COOKIE))
    except installations.StateError as exc:
        s.commit()
        if error == "access_denied":
            return _failure("access_denied", 403)
        return _failure(exc.reason, 400)
    s.commit()  # the state is used up whatever happens next
    if error:
        if error == "access_denied":
            return _failure("access_denied", 403)
        return _failure("authorization_error", 400, detail=request.args.get("error_description", error))
    code = request.args.get("code")
    if not code:
        return _failure("invalid_code", 400, detail="no code in the answer")
    client = oauth_client()
    login_url = data["login_url"]
    try:
        token = client.exchange(login_url, code, data["verifier"])
        tokens = token_set(token, login_url)
    except OAuthFailure as exc:
        return _failure(exc.reason, 400, detail=exc.detail)
    probe = SalesforceConnector(MemoryTokenStore(tokens), client, limiter=jobs.rate_limiter(PROVIDER))
    try:
        found = probe.check_package()
    except NotFound as exc:
        client.revoke(tokens.extra["instance_url"], tokens.refresh_token or tokens.access_token)
        return _failure("package_missing", 409, org=tokens.extra.get("org_id", ""), detail=exc.detail)
    except CrmError as exc:
        return _failure("salesforce_unavailable", 502, detail=exc.detail)
    tokens = probe.store.load()  # refreshed meanwhile, in the rare case the first token died
    org_id = tokens.extra["org_id"]
    settings = {"instance_url": tokens.extra["instance_url"], "org_id": org_id,
                "user_id": tokens.extra["user_id"], "login_url": login_url,
                "login_kind": data.get("kind", "production"), **found}
    try:
        row, api_key = installations.save(s, PROVIDER, org_id, tokens, settings)
        s.commit()
    except Exception:
        log.exception("saving the Salesforce installation failed")
        s.rollback()
        return _failure("storage_error", 500)
    jobs.enqueue("salesforce_bootstrap", row.id)
    response = current_app.make_response(render_template(
        "salesforce/connected.html", org_name=found.get("org_name") or org_id, org_id=org_id,
        namespace=found.get("namespace"), is_sandbox=found.get("is_sandbox"), api_key=api_key,
        instance_url=tokens.extra["instance_url"]))
    response.headers["Cache-Control"] = "no-store"
    response.delete_cookie(installations.BROWSER_COOKIE)
    return response


@bp.post("/salesforce/disconnect")
@api_key_required
def disconnect():
    """Revoke the org's refresh token at Salesforce and mark the installation uninstalled."""
    s = session()
    row = s.scalars(select(Installation).where(Installation.tenant_id == g.principal.tenant_id,
                                               Installation.provider == PROVIDER)).first()
    if row is None:
        raise NotFoundProblem("No Salesforce org is connected.")
    tokens = installations.tokens_of(row)
    revoked = False
    if tokens is not None:
        revoked = oauth_client().revoke(tokens.extra.get("instance_url") or PRODUCTION_LOGIN,
                                        tokens.refresh_token or tokens.access_token)
    installations.uninstall(s, row, "disconnected by an admin")
    s.commit()
    return jsonify(status="disconnected", revoked=revoked)


# ---- jobs -------------------------------------------------------------------------------


def bootstrap(installation_id: str) -> dict:
    """After connect: stages per sales process into settings["pipelines"], then the first pull."""
    Session = database().Session
    try:
        s = Session()
        row = s.get(Installation, installation_id)
        if row is None or row.status != "active":
            return {}
        try:
            learnt = sync.connector_for(row).ensure_setup()
        except NeedsReauth as exc:
            s.rollback()
            outbox.park_installation(s, s.get(Installation, installation_id), exc.detail)
            s.commit()
            return {"error": exc.detail}
        except NotFound as exc:  # the package was uninstalled meanwhile
            s.rollback()
            row = s.get(Installation, installation_id)
            row.status_reason = exc.detail
            s.commit()
            return {"error": exc.detail}
        row = s.get(Installation, installation_id)
        row.settings = {**(row.settings or {}), **learnt}
        s.commit()
        try:
            applied = sync.pull_installation(s, installation_id)
        except CrmError as exc:  # the regular poll catches up
            s.rollback()
            applied = 0
            log.warning("first pull of %s failed: %s", installation_id, exc.detail)
        return {"pipelines": sorted(learnt.get("pipelines", {})), "applied": applied}
    finally:
        Session.remove()


def poll_interval(row: Installation, now: datetime) -> float:
    """Seconds between two polls of an org: fast while active, slower as it goes idle."""
    last = row.last_activity_at
    if last is None:
        return POLL_IDLE
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    quiet = now - last
    if quiet < ACTIVE_WINDOW:
        return POLL_ACTIVE
    if quiet < WARM_WINDOW:
        return POLL_WARM
    return POLL_IDLE


def is_due(row: Installation, now: datetime | None = None) -> bool:
    """Should the clock poll this org now?"""
    now = now or datetime.now(UTC)
    if row.status != "active":
        return False
    last = row.last_pulled_at
    if last is None:
        return True
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return (now - last).total_seconds() >= poll_interval(row, now)


def poll(installation_id: str) -> int:
    """One poll of one org; records activity so that the interval adapts."""
    Session = database().Session
    try:
        s = Session()
        try:
            applied = sync.pull_installation(s, installation_id)
        except CrmError as exc:  # daily budget nearly used, Salesforce down: try at the next turn
            s.rollback()
            log.warning("poll of %s deferred: %s", installation_id, exc.detail)
            return 0
        row = s.get(Installation, installation_id)
        if row is None:
            return applied
        pushed = s.scalar(select(func.max(Mirror.pushed_at)).where(Mirror.installation_id == installation_id))
        latest = [t if t is None or t.tzinfo else t.replace(tzinfo=UTC)
                  for t in (row.last_activity_at, pushed)]
        if applied:
            latest.append(datetime.now(UTC))
        latest = [t for t in latest if t is not None]
        if latest and max(latest) != row.last_activity_at:
            row.last_activity_at = max(latest)
        s.commit()
        return applied
    finally:
        Session.remove()


def poll_due(now: datetime | None = None) -> int:
    """The clock's task: poll every Salesforce org that is due; returns how many."""
    Session = database().Session
    now = now or datetime.now(UTC)
    try:
        rows = Session().scalars(select(Installation).where(Installation.provider == PROVIDER,
                                                            Installation.status == "active")).all()
        due = [r.id for r in rows if is_due(r, now)]
    finally:
        Session.remove()
    for installation_id in due:
        poll(installation_id)
    return len(due)


def calls_per_day(interval: float) -> int:
    """API calls a day for one org polled every `interval` seconds (one Composite per poll)."""
    return int(86400 // interval)
