"""HubSpot in the web app: install (OAuth), webhooks, and the app card's API.

Install. GET /install/hubspot binds a fresh single-use `state` to this browser (a
random cookie) and sends the admin to HubSpot's consent page (HUBSPOT_AUTH_BASE).
GET /oauth/hubspot/callback is a straight sequence in which every step has a named
failure, shown on the failure page: access_denied (or authorization_error) when
HubSpot sends `error`; invalid_state / invalid_browser / expired_state / used_state
from the state store; invalid_code when the code exchange is refused;
hubspot_unavailable when HubSpot cannot be reached; metadata_lookup_failed when the
token's account cannot be read; storage_error when saving fails. Then the setup
(ensure_setup: property group, summary properties, custom objects on Enterprise,
pipelines) runs, and the success page says which mode the portal is in and, on the
first install only, the API key. Reinstalling reactivates and unparks.

Webhooks. POST /webhooks/hubspot checks the v3 signature over the raw body and the
URL HubSpot called (PUBLIC_BASE_URL + path + query), stores each new event's key
(dedupe) in one statement, and enqueues one pull per portal: nothing else, so it
answers in milliseconds. Events only say "this portal changed"; the pull reads the
current state, so a late or duplicated event cannot move anything backwards.

Card API (/hubspot/card/...). Authenticated only by the v3 signature; the portal
comes from the signed query string (portalId) and is the tenant boundary.
"""
from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime, timedelta, timezone
from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, g, jsonify, make_response, redirect, render_template, request
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from connector.errors import CrmError, NeedsReauth, RateLimited, Rejected, Transient
from connector.hubspot import (
    MODE_DEAL,
    REFRESH_MARGIN,
    HubSpotConfig,
    HubSpotConnector,
    HubSpotOAuth,
    InvalidSignature,
    SignatureVerifier,
)

from .. import installations, jobs, plan_templates, plans, sharing, sync
from ..db import session
from ..errors import Invalid, ProblemError, Unauthorized
from ..models import HubSpotEvent, Installation, Plan
from ..schemas import DealRef, MilestonePatch, PlanCreate, PlanOut
from ..web import keys, today

log = logging.getLogger("mutualplan.hubspot")
bp = Blueprint("hubspot", __name__)
PROVIDER = "hubspot"
MAX_EVENTS = 100
EVENT_RETENTION = timedelta(days=7)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ---- wiring -------------------------------------------------------------------------------


def config(app: Flask | None = None) -> HubSpotConfig:
    c = (app or current_app).config
    cfg = HubSpotConfig(client_id=c.get("HUBSPOT_CLIENT_ID", ""), client_secret=c.get("HUBSPOT_CLIENT_SECRET", ""),
                        api_base=c.get("HUBSPOT_API_BASE") or "https://api.hubapi.com",
                        auth_base=c.get("HUBSPOT_AUTH_BASE") or "https://app.hubspot.com",
                        ca_bundle=c.get("CRM_CA_BUNDLE") or None)
    if c.get("HUBSPOT_TIMEOUT"):
        cfg.timeout = c["HUBSPOT_TIMEOUT"]
    if c.get("HUBSPOT_RETRY_SLEEP"):
        cfg.sleep = c["HUBSPOT_RETRY_SLEEP"]
    return cfg


def redirect_uri() -> str:
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + "/oauth/hubspot/callback"


def install_url() -> str:
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + "/install/hubspot"


def _due(tokens) -> bool:
    return tokens.expires_at is not None and sharing.aware(tokens.expires_at) - REFRESH_MARGIN <= utcnow()


class DbTokenStore:
    """Tokens in the installations row (encrypted by installations.py), refreshed under its lock."""

    def __init__(self, installation_id: str):
        self.installation_id = installation_id

    def load(self):
        row = session().get(Installation, self.installation_id)
        return installations.tokens_of(row) if row is not None else None

    def refresh(self, stale, refresher):
        s = session()
        failure: NeedsReauth | None = None
        with installations.locked(s, self.installation_id) as row:
            current = installations.tokens_of(row)
            if current is None or row.status == "uninstalled":
                failure = NeedsReauth("no HubSpot tokens stored: reconnect the app")
            elif stale is not None and current.access_token != stale.access_token and not _due(current):
                return current  # another worker refreshed while we waited for the lock
            else:
                try:
                    fresh = refresher(current)
                except NeedsReauth as exc:
                    failure = exc
                else:
                    installations.store_tokens(row, fresh)
                    return fresh
        row = s.get(Installation, self.installation_id)
        if row.status != "uninstalled":
            installations.mark_needs_reconnect(s, row, failure.detail)
            s.commit()
        log.warning("HubSpot installation %s needs reconnecting: %s", self.installation_id, failure.detail)
        raise failure


def _pending_deletions(installation_id: str):
    """Deal deletions the webhooks brought in, handed to the next pull once (committed with its page)."""

    def take() -> list:
        s = session()
        rows = s.scalars(select(HubSpotEvent).where(HubSpotEvent.installation_id == installation_id,
                                                    HubSpotEvent.kind == "deal.deletion",
                                                    HubSpotEvent.processed_at.is_(None))).all()
        now = utcnow()
        for row in rows:
            row.processed_at = now
        # Housekeeping here, in the pull job, not in the webhook's few milliseconds.
        s.execute(delete(HubSpotEvent).where(HubSpotEvent.installation_id == installation_id,
                                             HubSpotEvent.received_at < now - EVENT_RETENTION)
                  .execution_options(synchronize_session=False))
        return [(row.object_id, sharing.aware(row.occurred_at)) for row in rows]

    return take


def connector_factory(installation: Installation) -> HubSpotConnector:
    return HubSpotConnector(config(), installation.account_id, DbTokenStore(installation.id),
                            settings=dict(installation.settings or {}), limiter=jobs.rate_limiter(PROVIDER),
                            deleted_deals=_pending_deletions(installation.id))


def setup_installation(installation_id: str) -> str | None:
    """The bootstrap job: ensure_setup, then keep what it learnt in installation.settings."""
    s = session()
    row = s.get(Installation, installation_id)
    if row is None or row.status != "active":
        return None
    try:
        learnt = sync.connector_for(row).ensure_setup()
    except NeedsReauth:
        return None  # the token store has marked the installation already
    row = s.get(Installation, installation_id)
    row.settings = {**(row.settings or {}), **learnt, "setup_at": utcnow().isoformat()}
    s.commit()
    return learnt.get("mode")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.extensions.setdefault("mutualplan.connectors", {})[PROVIDER] = connector_factory
    jobs.TASKS.setdefault("hubspot_setup", setup_installation)


# ---- install ----------------------------------------------------------------------------------


@bp.get("/install/hubspot")
def install():
    browser = request.cookies.get(installations.BROWSER_COOKIE) or secrets.token_urlsafe(32)
    s = session()
    state = installations.issue_state(s, PROVIDER, browser)
    s.commit()
    response = redirect(HubSpotOAuth(config()).authorize_url(redirect_uri(), state), 302)
    response.set_cookie(installations.BROWSER_COOKIE, browser, max_age=600, httponly=True, samesite="Lax",
                        secure=current_app.config["PUBLIC_BASE_URL"].startswith("https://"))
    response.headers["Cache-Control"] = "no-store"
    return response


FAILURES = {
    "access_denied": (403, "You did not allow MutualPlan to connect to your HubSpot account."),
    "authorization_error": (400, "HubSpot could not authorize the app."),
    "invalid_state": (400, "This sign-in link is not one we issued. Start the installation again."),
    "invalid_browser": (400, "The installation was started in another browser. Finish it where you started it."),
    "expired_state": (400, "The installation took longer than 10 minutes. Start it again."),
    "used_state": (400, "This sign-in link was already used. Start the installation again."),
    "invalid_code": (400, "HubSpot did not accept the authorization code. Start the installation again."),
    "hubspot_unavailable": (502, "HubSpot did not answer. Please try again in a minute."),
    "metadata_lookup_failed": (502, "We could not read which HubSpot account was connected."),
    "storage_error": (500, "We could not save the connection. Nothing was changed; please try again."),
    # the sandbox shortcut (make run)
    "not_sandbox": (404, "This shortcut exists only with the local HubSpot sandbox."),
    "unknown_portal": (404, "Install the app in this sandbox portal first."),
    "no_free_deal": (409, "Every sandbox deal already has a plan."),
}


def _failure(reason: str, detail: str = ""):
    status, message = FAILURES[reason]
    log.info("HubSpot install failed: %s %s", reason, detail)
    response = make_response(render_template("hubspot/install_failed.html", reason=reason, message=message,
                                             retry_url=install_url()), status)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/oauth/hubspot/callback")
def callback():
    s = session()
    error = request.args.get("error")
    if error:
        return _failure("access_denied" if error == "access_denied" else "authorization_error", error)
    try:
        installations.consume_state(s, PROVIDER, request.args.get("state"),
                                    request.cookies.get(installations.BROWSER_COOKIE))
        s.commit()
    except installations.StateError as exc:
        s.rollback()
        return _failure(exc.reason)
    code = request.args.get("code")
    if not code:
        return _failure("invalid_code", "no code")
    oauth = HubSpotOAuth(config())
    try:
        tokens = oauth.exchange(code, redirect_uri(), with_info=False)
    except (Transient, RateLimited) as exc:
        return _failure("hubspot_unavailable", exc.detail)
    except CrmError as exc:
        return _failure("invalid_code", exc.detail)
    try:
        info = oauth.token_info(tokens.access_token)
        portal_id = str(info["hub_id"])
        if not portal_id or portal_id == "None":
            raise Rejected("no hub_id in the token metadata")
    except (CrmError, KeyError) as exc:
        return _failure("metadata_lookup_failed", str(exc))
    tokens = type(tokens)(tokens.access_token, tokens.refresh_token, tokens.expires_at, info)
    try:
        row, api_key = installations.save(s, PROVIDER, portal_id, tokens, {"scopes": info.get("scopes", [])})
        s.commit()
    except Exception as exc:  # noqa: BLE001 - any failure here is "could not store"
        s.rollback()
        log.exception("storing the HubSpot installation failed")
        return _failure("storage_error", repr(exc))
    installation_id = row.id
    mode, pending = None, False
    try:
        mode = setup_installation(installation_id)
    except CrmError as exc:
        s.rollback()
        log.warning("HubSpot setup for %s deferred: %s", portal_id, exc.detail)
        jobs.enqueue("hubspot_setup", installation_id)
        pending = True
    if api_key is None and not pending:
        jobs.enqueue("pull", installation_id)  # a reconnect: catch up on what changed meanwhile
    row = s.get(Installation, installation_id)
    response = make_response(render_template(
        "hubspot/installed.html", portal_id=portal_id, mode=mode or (row.settings or {}).get("mode"),
        pending=pending, api_key=api_key, hub_domain=info.get("hub_domain"),
        status=row.status, sandbox_url=sandbox_url()), 200)
    response.headers["Cache-Control"] = "no-store"
    response.delete_cookie(installations.BROWSER_COOKIE)
    return response


# ---- the local sandbox (make run) --------------------------------------------------------------


def sandbox_url() -> str | None:
    """The HubSpot sandbox's address when the app talks to one on this machine, else None."""
    base = current_app.config.get("HUBSPOT_API_BASE") or ""
    host = urlsplit(base).hostname
    return base.rstrip("/") if host in ("127.0.0.1", "localhost") else None


@bp.post("/hubspot/sandbox/try")
def sandbox_try():
    """Sandbox only: put a plan on the portal's first deal without one, and open the editor.

    There is no HubSpot deal page locally to host the card, so this stands in
    for "open a deal, pick the Mutual Action Plan tab, create a plan".
    """
    if sandbox_url() is None:
        return _failure("not_sandbox", "This shortcut exists only with the local HubSpot sandbox.")
    s = session()
    row = installations.find(s, "hubspot", request.form.get("portal_id", ""))
    if row is None or row.status != "active":
        return _failure("unknown_portal", "Install the app in this sandbox portal first.")
    taken = set(s.scalars(select(Plan.deal_id).where(Plan.tenant_id == row.tenant_id)))
    free = [(deal_id, name) for deal_id, name in connector_factory(row).list_deals() if deal_id not in taken]
    if not free:
        return _failure("no_free_deal", "Every sandbox deal already has a plan; open one from the editor link.")
    deal_id, name = free[0]
    plan = plans.create_plan(s, row.tenant_id, PlanCreate(
        title=f"{name}: mutual action plan", template="enterprise",
        deal=DealRef(provider="hubspot", account_id=row.account_id, deal_id=deal_id)), "sandbox-demo", today())
    s.commit()
    url, _ = sharing.editor_link(row.tenant_id, plan.id, "sandbox-demo", keys())
    return redirect(url)


# ---- signatures -------------------------------------------------------------------------------


def signed_uri() -> str:
    """The URL HubSpot called, as it signed it: PUBLIC_BASE_URL's origin (and path prefix), the
    raw path and the raw query string, never request.url (a proxy may change scheme or host)."""
    base = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    env = request.environ
    raw = env.get("RAW_URI") or env.get("REQUEST_URI") or (request.script_root + request.path)
    path = raw.split("?", 1)[0]
    if base.path and base.path != "/" and not path.startswith(base.path.rstrip("/") + "/"):
        path = base.path.rstrip("/") + path
    query = env.get("QUERY_STRING", "")
    return f"{base.scheme}://{base.netloc}{path}" + (f"?{query}" if query else "")


def verifier() -> SignatureVerifier:
    clock = current_app.config.get("HUBSPOT_CLOCK")
    secret = current_app.config.get("HUBSPOT_CLIENT_SECRET") or ""
    return SignatureVerifier(secret, clock=clock) if clock else SignatureVerifier(secret)


class BadSignature(Unauthorized):
    slug, title = "invalid-signature", "The request signature is not valid"


def _check_signature() -> None:
    if not current_app.config.get("HUBSPOT_CLIENT_SECRET"):
        raise BadSignature("HubSpot is not configured on this server (HUBSPOT_CLIENT_SECRET).")
    try:
        verifier().verify(request.method, signed_uri(), request.get_data(cache=True),
                          request.headers.get("X-HubSpot-Signature-v3"),
                          request.headers.get("X-HubSpot-Request-Timestamp"))
    except InvalidSignature as exc:
        raise BadSignature(f"X-HubSpot-Signature-v3 refused: {exc.reason}.", reason=exc.reason) from None


# ---- webhooks -----------------------------------------------------------------------------------


@bp.post("/webhooks/hubspot")
def webhooks():
    _check_signature()
    try:
        events = json.loads(request.get_data(cache=True) or b"null")
    except ValueError:
        raise ProblemError("The body is not JSON.") from None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ProblemError("HubSpot sends a JSON array of events.")
    if len(events) > MAX_EVENTS:
        raise ProblemError(f"At most {MAX_EVENTS} events per request.")
    s = session()
    portals = {str(e.get("portalId")) for e in events}
    rows = s.scalars(select(Installation).where(Installation.provider == PROVIDER,
                                                Installation.account_id.in_(portals))).all()
    known = {row.account_id: row for row in rows}
    app_id = str(current_app.config.get("HUBSPOT_APP_ID") or "")
    fresh: dict[str, dict] = {}
    for e in events:
        row = known.get(str(e.get("portalId")))
        if row is None:
            continue  # not installed (any more): acknowledged, ignored
        key = ":".join(str(e.get(k, "")) for k in ("portalId", "subscriptionId", "eventId", "occurredAt"))[:120]
        try:
            occurred = datetime.fromtimestamp(int(e.get("occurredAt")) / 1000, tz=timezone.utc)
        except (TypeError, ValueError):
            occurred = utcnow()
        fresh[key] = {"key": key, "tenant_id": row.tenant_id, "installation_id": row.id,
                      "kind": str(e.get("subscriptionType") or e.get("eventType") or "")[:60],
                      "object_id": str(e.get("objectId", ""))[:64], "occurred_at": occurred,
                      "received_at": utcnow(), "processed_at": None,
                      "_own": e.get("changeSource") == "INTEGRATION" and app_id and str(e.get("sourceId")) == app_id}
    # Our own writes coming back (changeSource INTEGRATION from our app id) need neither a
    # pull nor a dedupe row; the rest go in with one INSERT … ON CONFLICT DO NOTHING RETURNING
    # (one round trip, one cached statement): what it returns is what we had not seen before.
    rows_in = [{k: v for k, v in r.items() if k != "_own"} for r in fresh.values()
               if not r["_own"] or r["kind"] == "deal.deletion"]
    new = []
    if rows_in:
        insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
        table = HubSpotEvent.__table__
        inserted = set(s.execute(insert(table).on_conflict_do_nothing(index_elements=["key"])
                                 .returning(table.c.key), rows_in).scalars())
        new = [fresh[k] for k in inserted]
    s.commit()
    due = {r["installation_id"] for r in new if not r["_own"]}
    for installation_id in sorted(due):
        row = next(r for r in rows if r.id == installation_id)
        if row.status == "active":
            jobs.enqueue("pull", installation_id)
    return "", 204


# ---- card API -------------------------------------------------------------------------------------


class NotInstalled(ProblemError):
    status, slug, title = 403, "not-installed", "MutualPlan is not connected to this HubSpot account"


def card(view):
    """v3 signature, then the installation of the signed portalId (the tenant boundary)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        _check_signature()
        portal = request.args.get("portalId", "")
        if not portal.isdigit():
            raise BadSignature("portalId is missing from the signed query string.")
        s = session()
        row = s.scalars(select(Installation).where(Installation.provider == PROVIDER,
                                                   Installation.account_id == portal)).one_or_none()
        if row is None or row.status == "uninstalled":
            raise NotInstalled(f"HubSpot account {portal} has not installed MutualPlan (or uninstalled it).",
                               reconnect_url=install_url())
        g.hs_installation = row
        g.hs_actor = "hubspot:" + (request.args.get("userEmail") or f"user {request.args.get('userId', '?')}")[:180]
        return view(*args, **kwargs)

    return wrapper


def _iso(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


def _sync(s, plan: Plan | None) -> dict:
    if plan is None:
        return {"state": "synced", "last_pushed_at": None, "pending": 0, "dead_letters": [], "mismatch": None}
    st = sync.status(s, plan)
    state = {"failed": "failed", "pending": "pending", "needs_reconnect": "pending"}.get(st["state"], "synced")
    return {"state": state, "last_pushed_at": _iso(st["last_pushed_at"]), "pending": st["pending"],
            "dead_letters": [{"error": d["error"], "at": _iso(d["at"])} for d in st["dead_letters"]],
            "mismatch": st["mismatch"]}


def _buyer_link(s, plan: Plan | None):
    if plan is None:
        return None
    now = utcnow()
    for link in sharing.list_links(s, plan):
        if sharing.is_active(link, now):
            url = sharing.link_url(link, keys())
            if url:
                return {"url": url}
    return None


def envelope(plan: Plan | None, status: int = 200):
    s = session()
    row: Installation = g.hs_installation
    s.expire_all()
    if plan is not None:
        plan = plans.get_plan(s, row.tenant_id, plan.id)
    active = row.status == "active"
    body = {
        "mode": (row.settings or {}).get("mode") or MODE_DEAL,
        "connection": "ok" if active else "needs_reconnect",
        "reconnect_url": None if active else install_url(),
        "plan": PlanOut.model_validate(plans.document(s, plan, today())).model_dump(mode="json") if plan else None,
        "templates": [{"key": t["key"], "name": t["name"], "description": t["description"],
                       "milestone_count": t["milestone_count"]} for t in plan_templates.summaries()],
        "sync": _sync(s, plan),
        "buyer_link": _buyer_link(s, plan),
    }
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _deal_plan(deal_id: str) -> Plan | None:
    row: Installation = g.hs_installation
    return session().scalars(select(Plan).where(
        Plan.tenant_id == row.tenant_id, Plan.deal_provider == PROVIDER, Plan.deal_account_id == row.account_id,
        Plan.deal_id == deal_id, Plan.archived_at.is_(None))).one_or_none()


def _plan(plan_id: str) -> Plan:
    return plans.get_plan(session(), g.hs_installation.tenant_id, plan_id)


class CardCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str
    title: str | None = None


class CardReorder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage_id: str
    milestone_ids: list[str]


class CardBuyerLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rotate: bool = False


CARD_MILESTONE_FIELDS = {"version", "status", "risk", "due_date", "reason", "owners"}


def _json_object() -> dict:
    try:
        body = json.loads(request.get_data(cache=True) or b"{}")
    except ValueError:
        raise ProblemError("The body is not JSON.") from None
    if not isinstance(body, dict):
        raise ProblemError("The body must be a JSON object.")
    return body


@bp.get("/hubspot/card/deals/<deal_id>/plan")
@card
def card_get_plan(deal_id):
    return envelope(_deal_plan(deal_id))


@bp.post("/hubspot/card/deals/<deal_id>/plan")
@card
def card_create_plan(deal_id):
    data = CardCreate.model_validate(_json_object())
    if data.template not in plan_templates.TEMPLATES:
        raise Invalid("template", f"must be one of {sorted(plan_templates.TEMPLATES)}")
    row: Installation = g.hs_installation
    s = session()
    create = PlanCreate.model_validate({
        "title": (data.title or "").strip() or "Mutual Action Plan", "template": data.template,
        "deal": DealRef.model_validate({"provider": PROVIDER, "account_id": row.account_id, "deal_id": deal_id}),
        "start_date": today()})
    plan = plans.create_plan(s, row.tenant_id, create, g.hs_actor, today())
    s.commit()
    return envelope(plan, 201)


@bp.patch("/hubspot/card/milestones/<milestone_id>")
@card
def card_update_milestone(milestone_id):
    body = _json_object()
    unknown = set(body) - CARD_MILESTONE_FIELDS
    if unknown:
        raise Invalid(sorted(unknown)[0], "unknown field")
    if not isinstance(body.get("version"), int):
        raise Invalid("version", "the milestone version you edited is required")
    s = session()
    m = plans.get_milestone(s, g.hs_installation.tenant_id, milestone_id)
    patch = MilestonePatch.model_validate_json(json.dumps(body), strict=True)
    plans.update_milestone(s, m, patch, g.hs_actor)
    s.commit()
    return envelope(m.plan)


@bp.post("/hubspot/card/plans/<plan_id>/reorder")
@card
def card_reorder(plan_id):
    data = CardReorder.model_validate(_json_object())
    s = session()
    plan = _plan(plan_id)
    if len(set(data.milestone_ids)) != len(data.milestone_ids):
        raise Invalid("milestone_ids", "each milestone once")
    for position, mid in enumerate(data.milestone_ids):
        m = plans.get_milestone(s, plan.tenant_id, mid)
        if m.plan_id != plan.id:
            raise Invalid("milestone_ids", f"{mid} is not a milestone of this plan")
        plans.update_milestone(s, m, MilestonePatch.model_validate(
            {"stage_id": data.stage_id, "position": position}), g.hs_actor)
        s.flush()
        s.expire_all()  # reload the stage's milestones in their new order
    s.commit()
    return envelope(plan)


@bp.post("/hubspot/card/plans/<plan_id>/buyer-link")
@card
def card_buyer_link(plan_id):
    data = CardBuyerLink.model_validate(_json_object())
    s = session()
    plan = _plan(plan_id)
    url = sharing.current_or_new_link(s, plan, g.hs_actor, keys(), rotate=data.rotate)
    s.commit()
    return jsonify(url=url)


@bp.post("/hubspot/card/plans/<plan_id>/editor-link")
@card
def card_editor_link(plan_id):
    plan = _plan(plan_id)
    url, expires_at = sharing.editor_link(plan.tenant_id, plan.id, g.hs_actor, keys())
    return jsonify(url=url, expires_at=expires_at.isoformat())


@bp.errorhandler(ValidationError)
def _validation(exc):
    from ..errors import validation_problem

    return validation_problem(exc)
