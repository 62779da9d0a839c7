"""Connecting a CRM account (OAuth), the same for every provider (webapp/providers.py).

    GET /install/<provider>[?…]   browser cookie + single-use state (with what `begin` keeps:
                                  the PKCE verifier, the login host) -> 302 to the consent page
    GET /oauth/<provider>/callback a straight sequence, every step with a named failure:
        error from the CRM                        access_denied | authorization_error
        the state (installations.consume_state)   invalid_state | invalid_browser |
                                                  expired_state | used_state
        the code exchange (authlib)               invalid_code | crm_unavailable | bad_signature
        whose account (provider.identify)         metadata_lookup_failed | package_missing |
                                                  crm_unavailable
        installations.save (tokens encrypted)     storage_error
        -> job "setup" (bootstrap, then the first pull) and the installed page, which shows
           the API key once and polls GET /connect/status/<token> until setup is done.
Every failure renders connect/failed.html from the one table below.

Signing in (issue 12) is the same sequence: GET /login/<provider>?next=… keeps
`purpose: "login"` and the page to go back to in the state, so each CRM keeps one
redirect URI. The callback then, instead of saving an installation:
        who signed in (provider.person)           metadata_lookup_failed | crm_unavailable
        their account is installed and active     not_installed
        -> users.upsert_user + users.sign_in, 303 to `next` (auth.safe_next).
The tokens of a sign-in are not kept: they only said who the person is. The person who
installs is recorded as an admin of the tenant in the install's transaction.
"""
from __future__ import annotations

import logging
import secrets

from flask import Blueprint, current_app, jsonify, make_response, redirect, render_template, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from connector.errors import CrmError, RateLimited, Transient
from connector.oauth import OAuthFailure

from .. import installations, jobs, providers, users
from ..auth import safe_next
from ..db import session
from ..errors import NotFound
from ..models import Installation

log = logging.getLogger("mutualplan.connect")
bp = Blueprint("connect", __name__)
STATUS_MAX_AGE = 3600

# reason -> (HTTP status, title, message); {label}, {detail} are filled in.
FAILURES = {
    "access_denied": (403, "Access was not granted",
                      "{label} says the connection was declined. Start again and choose Allow."),
    "authorization_error": (400, "{label} refused the request",
                            "{label} did not authorise the app: {detail}"),
    "invalid_state": (400, "This link is not valid",
                      "This sign-in answer does not belong to a connect we started. Start again."),
    "invalid_browser": (400, "Finish in the same browser",
                        "The connect was started in another browser or its cookie was lost. "
                        "Start again here."),
    "expired_state": (400, "The connect took too long",
                      "More than 10 minutes passed since you started. Start again."),
    "used_state": (400, "Already used",
                   "This sign-in answer was already used. If nothing is connected, start again."),
    "invalid_code": (400, "{label} did not confirm the connection",
                     "Exchanging the authorisation code failed: {detail}. Start again."),
    "bad_signature": (400, "The answer could not be verified",
                      "The token response's signature does not match our client secret."),
    "invalid_domain": (400, "That is not a Salesforce My Domain",
                       "Use your org's My Domain host, e.g. acme.my.salesforce.com."),
    "crm_unavailable": (502, "{label} did not answer",
                        "We could not reach {label} just now ({detail}). Try again in a minute."),
    "metadata_lookup_failed": (502, "We could not read the account",
                               "We could not read which {label} account was connected."),
    "package_missing": (409, "Install the MutualPlan package first",
                        "The org does not have the MutualPlan package (objects "
                        "Mutual_Action_Plan__c and MAP_Milestone__c). Install it, assign the "
                        "'MutualPlan User' permission set, then connect again."),
    "storage_error": (500, "We could not save the connection",
                      "Something went wrong on our side; nothing was connected. Try again."),
    "not_installed": (403, "MutualPlan is not set up for this {label} account",
                      "Your {label} account has not installed (or has disconnected) MutualPlan, "
                      "so there is nothing to sign in to. Ask your {label} admin to install it "
                      "first; the person who installs it becomes the first admin."),
    "not_configured": (503, "{label} is not configured",
                       "The {label} client id and secret are not set on this server."),
}


def render_failure(provider: providers.Provider, reason: str, detail: str = "",
                   status: int | None = None, message: str | None = None,
                   retry_url: str | None = None):
    """The failure page for `reason` (FAILURES, or a caller's own status and message)."""
    code, title, text = FAILURES.get(reason, (status or 400, "That did not work", message or ""))
    values = {"label": provider.label, "detail": detail or reason}
    # The reason only: `detail` may be the CRM's own words or a query parameter anyone can
    # send, and either can carry a code, a token or a secret.
    log.info("%s connect failed: %s", provider.name, reason)
    response = make_response(render_template(
        "connect/failed.html", label=provider.label, reason=reason, title=title.format(**values),
        message=(message or text).format(**values),
        retry_url=retry_url or f"/install/{provider.name}"),
        status or code)
    response.headers["Cache-Control"] = "no-store"
    return response


def _provider(name: str) -> providers.Provider:
    try:
        return providers.get(name)
    except CrmError:
        raise NotFound(f"No CRM called {name!r}.") from None


@bp.get("/install/<name>")
def install(name):
    return _start(_provider(name), purpose="install")


@bp.get("/login/<name>")
def login(name):
    """"Sign in with <CRM>": the same OAuth round trip, remembered as a sign-in."""
    provider = _provider(name)
    if provider.person is None:
        raise NotFound(f"Signing in with {provider.label} is not available.")
    return _start(provider, purpose="login", next=safe_next(request.args.get("next")))


def _start(provider: providers.Provider, purpose: str, **keep):
    retry = f"/login/{provider.name}" if purpose == "login" else None
    try:
        data = provider.begin(request.args)
    except OAuthFailure as exc:
        return render_failure(provider, exc.reason, exc.detail, retry_url=retry)
    if purpose == "login":
        data = {**data, "purpose": "login", **keep}
    browser = request.cookies.get(installations.BROWSER_COOKIE) or secrets.token_urlsafe(32)
    s = session()
    state = installations.issue_state(s, provider.name, browser, data)
    s.commit()
    client = provider.sign_in_client() if purpose == "login" else provider.oauth()
    url = client.authorization_url(state, data.get("verifier"), **data.get("where", {}))
    response = redirect(url, 302)
    response.set_cookie(installations.BROWSER_COOKIE, browser, max_age=600, httponly=True,
                        samesite="Lax",
                        secure=current_app.config["PUBLIC_BASE_URL"].startswith("https://"))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/oauth/<name>/callback")
def callback(name):
    provider = _provider(name)
    s = session()
    error = request.args.get("error")
    try:
        data = installations.consume_state(s, name, request.args.get("state"),
                                           request.cookies.get(installations.BROWSER_COOKIE))
    except installations.StateError as exc:
        s.rollback()
        return render_failure(provider, "access_denied" if error == "access_denied" else exc.reason)
    s.commit()  # the state is used up whatever happens next
    if error:
        reason = "access_denied" if error == "access_denied" else "authorization_error"
        return render_failure(provider, reason, request.args.get("error_description") or error)
    code = request.args.get("code")
    if not code:
        return render_failure(provider, "invalid_code", "no code in the answer")
    if data.get("purpose") == "login":
        return _finish_login(provider, code, data)
    try:
        tokens = provider.exchange(code, data)
        account_id, tokens, settings = provider.identify(tokens, data)
        installer = provider.person(tokens, data) if provider.person else None
    except OAuthFailure as exc:
        return render_failure(provider, exc.reason, exc.detail)
    except (Transient, RateLimited) as exc:
        return render_failure(provider, "crm_unavailable", exc.detail)
    except CrmError as exc:
        return render_failure(provider, "invalid_code", exc.detail)
    try:
        row, api_key = installations.save(s, name, account_id, tokens, settings)
        if installer is not None:  # the person who installs is an admin (issue 12)
            users.upsert_user(s, row.tenant_id, name, installer.user_id, email=installer.email,
                              name=installer.name, role="admin")
        s.commit()
    except Exception as exc:  # noqa: BLE001 - any failure here is "could not store"
        s.rollback()
        # The traceback helps; the engine hides SQL parameters (db.py), which hold the tokens.
        log.exception("storing the %s installation failed", provider.label)
        return render_failure(provider, "storage_error", type(exc).__name__)
    installation_id = row.id
    jobs.enqueue("setup", installation_id)
    s.expire_all()
    row = s.get(Installation, installation_id)
    demo = name == "hubspot" and "localdemo" in current_app.blueprints
    response = make_response()
    csrf = _demo_csrf(response) if demo else None
    response.set_data(render_template(
        "connect/installed.html", label=provider.label, row=row, api_key=api_key,
        status=setup_status(row), status_url=f"/connect/status/{_serializer().dumps(row.id)}",
        demo=demo, csrf=csrf))
    response.headers["Cache-Control"] = "no-store"
    response.delete_cookie(installations.BROWSER_COOKIE)
    return response


def _finish_login(provider: providers.Provider, code: str, data: dict):
    """The rest of a sign-in: who the person is, whether their account is ours, the session."""
    retry = f"/login/{provider.name}?next={data.get('next') or '/app'}"
    try:
        person = provider.person(provider.exchange(code, data), data)
    except OAuthFailure as exc:
        return render_failure(provider, exc.reason, exc.detail, retry_url=retry)
    except (Transient, RateLimited) as exc:
        return render_failure(provider, "crm_unavailable", exc.detail, retry_url=retry)
    except CrmError as exc:
        return render_failure(provider, "invalid_code", exc.detail, retry_url=retry)
    s = session()
    row = installations.find(s, provider.name, person.account_id)
    if row is None or row.status != "active":
        return render_failure(provider, "not_installed", retry_url="/login")
    user = users.upsert_user(s, row.tenant_id, provider.name, person.user_id,
                             email=person.email, name=person.name)
    response = redirect(safe_next(data.get("next")), 303)
    response.delete_cookie(installations.BROWSER_COOKIE)
    response.headers["Cache-Control"] = "no-store"
    return users.sign_in(user, response)


def _demo_csrf(response) -> str:
    from ..localdemo import issue_csrf  # local mode only; localdemo imports this module

    return issue_csrf(response)


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="connect-status")


def setup_status(row: Installation) -> dict:
    settings = row.settings or {}
    state = "done" if settings.get("setup_at") else (
        "failed" if settings.get("setup_error") else "pending")
    return {"state": state, "mode": settings.get("mode") if state == "done" else None,
            "error": settings.get("setup_error"), "connection": row.status}


@bp.get("/connect/status/<token>")
def status(token):
    """The installed page polls this until setup is done (the token is the page's own)."""
    try:
        installation_id = _serializer().loads(token, max_age=STATUS_MAX_AGE)
    except BadSignature:
        raise NotFound("This status link is not valid (or older than an hour).") from None
    row = session().get(Installation, installation_id)
    if row is None:
        raise NotFound("This installation does not exist.")
    response = jsonify(setup_status(row))
    response.headers["Cache-Control"] = "no-store"
    return response
