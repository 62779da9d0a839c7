"""HubSpot's own routes: webhooks and the app card's API.

Install (OAuth) and the bootstrap job are the same for every CRM: blueprints/connect.py,
webapp/providers.py (HUBSPOT) and jobs.setup.

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
from datetime import UTC, datetime
from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, jsonify, request
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from connector.hubspot import MODE_DEAL, InvalidSignature, SignatureVerifier

from .. import analytics, clock, jobs, plan_templates, plans, sharing, sync, users
from ..db import session
from ..errors import Invalid, ProblemError, Unauthorized
from ..models import HubSpotEvent, Installation, Plan
from ..schemas import DealRef, MilestonePatch, PlanCreate, PlanOut
from ..web import keys, today

log = logging.getLogger("mutualplan.hubspot")
bp = Blueprint("hubspot", __name__)
PROVIDER = "hubspot"
MAX_EVENTS = 100
# occurredAt outside these bounds is not a real event time (garbage or a forged far future)
MIN_OCCURRED = datetime(2000, 1, 1, tzinfo=UTC)
MAX_OCCURRED = datetime(2100, 12, 31, tzinfo=UTC)


def install_url() -> str:
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + "/install/hubspot"


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
            occurred = datetime.fromtimestamp(int(e.get("occurredAt")) / 1000, tz=UTC)
            if not MIN_OCCURRED <= occurred <= MAX_OCCURRED:
                raise ValueError("occurredAt out of range")
        except (TypeError, ValueError, OverflowError, OSError):
            occurred = clock.now()
        fresh[key] = {"key": key, "tenant_id": row.tenant_id, "installation_id": row.id,
                      "kind": str(e.get("subscriptionType") or e.get("eventType") or "")[:60],
                      "object_id": str(e.get("objectId", ""))[:64], "occurred_at": occurred,
                      "received_at": clock.now(), "processed_at": None,
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
    now = clock.now()
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
    if plan is not None:  # health, win probability, stakeholder coverage (webapp/analytics.py)
        body["plan"].update(analytics.card_fields(s, plan, today()))
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
    users.claim_plan(s, plan, _card_user(), g.hs_actor)
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


def _card_user():
    """The HubSpot user who clicked in the card (the signed request's userId and userEmail),
    as a users row of the tenant: created on first sight as a rep. None without a userId."""
    uid = request.args.get("userId", "")
    if not (uid.isascii() and uid.isdigit()):
        return None
    email = (request.args.get("userEmail") or "")[:254]
    return users.upsert_user(session(), g.hs_installation.tenant_id, PROVIDER, uid, email=email)


@bp.post("/hubspot/card/plans/<plan_id>/editor-link")
@card
def card_editor_link(plan_id):
    plan = _plan(plan_id)
    user = _card_user()
    actor = users.actor_of(user) if user else g.hs_actor
    url, expires_at = sharing.editor_link(plan.tenant_id, plan.id, actor, keys(),
                                          user_id=user.id if user else None)
    if user is not None:
        session().commit()
    return jsonify(url=url, expires_at=expires_at.isoformat())


@bp.errorhandler(ValidationError)
def _validation(exc):
    from ..errors import validation_problem

    return validation_problem(exc)
