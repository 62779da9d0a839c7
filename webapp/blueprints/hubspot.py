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
import re
from datetime import UTC, datetime
from functools import wraps
from typing import Literal
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import event, select
from sqlalchemy.dialects import postgresql, sqlite

from connector.errors import CrmError
from connector.hubspot import MODE_DEAL, InvalidSignature, SignatureVerifier

from .. import analytics, clock, content, jobs, mirror, plan_templates, plans, security, sharing, sync, users
from ..config import LOCAL_HOSTS
from ..db import session
from ..errors import Invalid, ProblemError, Unauthorized
from ..models import HubSpotEvent, Installation, Mirror, Plan
from ..schemas import DealRef, MilestonePatch, PlanCreate, PlanOut, RowId, ShortText, clean_line
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


def dev_proxy_signing() -> bool:
    """HUBSPOT_DEV_PROXY_SIGNING, honoured only in local development (create_app refuses it
    elsewhere; checked again here so that no later config change can turn it on in production)."""
    c = current_app.config
    local = (str(c.get("DATABASE_URL", "")).startswith("sqlite")
             and urlsplit(c.get("PUBLIC_BASE_URL", "")).hostname in LOCAL_HOSTS)
    return bool(c.get("HUBSPOT_DEV_PROXY_SIGNING")) and local


def verifier() -> SignatureVerifier:
    clock = current_app.config.get("HUBSPOT_CLOCK")
    secret = current_app.config.get("HUBSPOT_CLIENT_SECRET") or ""
    options = {"clock": clock} if clock else {}
    return SignatureVerifier(secret, accept_undecoded=dev_proxy_signing(), **options)


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

_INTEGER = re.compile(r"[0-9]{1,20}")


def _well_formed(event: dict) -> bool:
    """HubSpot's ids are integers and its other values one-line text. An event with a NUL or a
    non-numeric id (PostgreSQL refuses NUL in text: a 500) is not one HubSpot sent: it is
    dropped, not stored. Webhooks are only hints (the reconcile poll backs them up), so
    acknowledging the rest of the batch loses nothing and spares a retry storm."""
    for name in ("portalId", "subscriptionId", "eventId", "objectId"):
        value = event.get(name)
        if value is not None and (isinstance(value, bool) or not _INTEGER.fullmatch(str(value))):
            log.warning("webhook event dropped: %s is not an integer id", name)
            return False
    for name in ("occurredAt", "subscriptionType", "eventType", "changeSource", "sourceId"):
        try:
            clean_line(str(event.get(name, "")))
        except ValueError:
            log.warning("webhook event dropped: %s carries control characters", name)
            return False
    return True



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
    events = [e for e in events if _well_formed(e)]
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
        if request.method in ("GET", "HEAD"):
            return view(*args, **kwargs)
        return _once(s, view, *args, **kwargs)

    return wrapper


class Replayed(ProblemError):
    status, slug, title = 409, "replayed-request", "This signed request was already used"


def _once(s, view, *args, **kwargs):
    """Run a signed write once (issue 10, F9): a replay of the same signed request within the
    window answers 409 and runs nothing. The claim commits with the view's own transaction
    (or after a view that writes nothing, e.g. editor-link); a failed request releases it."""
    guard = security.replay_guard()
    v = verifier()
    key = guard.key(request.headers.get("X-HubSpot-Signature-v3", ""),
                    request.headers.get("X-HubSpot-Request-Timestamp", ""))
    if not guard.claim(s, key, v.window + v.skew):
        raise Replayed("This signed card request was already executed once; a replay of the "
                       "same signature runs nothing. Send a newly signed request to do it again.")
    committed = []  # a view that committed and then failed did change something: keep the claim

    def on_commit(_s):
        committed.append(True)

    event.listen(s, "after_commit", on_commit)
    try:
        response = current_app.make_response(view(*args, **kwargs))
        if response.status_code < 400:
            s.commit()
        return response
    finally:
        event.remove(s, "after_commit", on_commit)
        if not committed:
            s.rollback()
            guard.release(key)


def _iso(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


def _templates(s, row: Installation, pipeline: str | None) -> list[dict]:
    """Built-in and the tenant's templates; `default` marks the one the card preselects: the
    default of the deal's own pipeline, else of the installation's default pipeline."""
    fallback = (row.settings or {}).get("default_pipeline")
    return [{"key": t["key"], "name": t["name"], "description": t["description"],
             "milestone_count": t["milestone_count"], "default": t["default"]}
            for t in plan_templates.choices(s, row.tenant_id, pipeline, fallback)]


def _deal_pipeline(s, row: Installation, plan: Plan | None, deal_id: str | None) -> str | None:
    """The deal's pipeline: the mirror's once a plan was pushed, else asked of HubSpot (one
    read of the deal, only while the deal has no plan). None when HubSpot does not answer:
    the card then preselects the default pipeline's template rather than failing."""
    if plan is not None:
        state = s.get(Mirror, plan.id)
        return state.deal_pipeline if state else None
    if not deal_id or row.status != "active":
        return None
    try:
        return sync.connector_for(row).get_deal(deal_id).pipeline
    except Exception as exc:  # noqa: BLE001 - a preselection never fails the card
        level = logging.INFO if isinstance(exc, CrmError) else logging.WARNING
        log.log(level, "deal pipeline not read for the card: %s", type(exc).__name__)
        return None


def _sync(s, plan: Plan | None) -> dict:
    if plan is None:
        return {"state": "synced", "last_pushed_at": None, "pending": 0, "dead_letters": [], "mismatch": None,
                "advice": None}
    st = sync.status(s, plan)
    state = {"failed": "failed", "pending": "pending", "needs_reconnect": "pending"}.get(st["state"], "synced")
    return {"state": state, "last_pushed_at": _iso(st["last_pushed_at"]), "pending": st["pending"],
            "dead_letters": [{"error": d["error"], "at": _iso(d["at"])} for d in st["dead_letters"]],
            "mismatch": st["mismatch"],
            # the same words as the editor's CRM panel (mirror.advice never says to move a deal back)
            "advice": " ".join(mirror.advice(st["mismatch"], _stage_labels(s, plan))) or None}


def _stage_labels(s, plan: Plan) -> dict:
    """Stage id -> HubSpot label for the deal's pipeline, from the labels cached at install."""
    row: Installation = g.hs_installation
    state = s.get(Mirror, plan.id)
    settings = row.settings or {}
    pipeline = (state and state.deal_pipeline) or settings.get("default_pipeline") or "default"
    return {st["id"]: st["label"] for st in settings.get("pipelines", {}).get(pipeline, [])}


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


# A hubspot.fetch answer must stay under 1 MB, and the card shows a plan at a glance (the full
# editor shows everything): at most CARD_MILESTONE_LIMIT milestones, fewer when the encoded body
# would pass CARD_PAYLOAD_BUDGET (hubspot_app/src/app/cards/types.ts, `Plan`).
CARD_MILESTONE_LIMIT = 50
CARD_PAYLOAD_BUDGET = 900_000  # bytes of the UTF-8 JSON body, well under HubSpot's 1 MB
# Plan fields the card never reads; each can be long, so they stay out of the card's answer.
CARD_OMITTED_FIELDS = ("value_summary", "objectives", "constraints", "resources", "stakeholders")


def fit_for_card(body: dict, dumps) -> str:
    """The card envelope encoded with `dumps`, trimmed to fit: the plan's milestones in plan order
    (stage position, then milestone position), the first CARD_MILESTONE_LIMIT that keep the body
    within CARD_PAYLOAD_BUDGET bytes. `plan.milestone_count` and each stage's `milestone_count`
    count every milestone, `milestones_truncated` says whether any were left out; `progress`
    (computed on the whole plan) is untouched."""
    plan = body.get("plan")
    if not plan:
        return dumps(body)
    plan = {k: v for k, v in plan.items() if k not in CARD_OMITTED_FIELDS}
    stages = sorted(plan["stages"], key=lambda st: st["position"])
    ordered = [(i, m) for i, st in enumerate(stages)
               for m in sorted(st["milestones"], key=lambda m: m["position"])]

    def encode(kept: int) -> str:
        shown = [{**st, "milestones": [], "milestone_count": len(st["milestones"])}
                 for st in stages]
        for i, m in ordered[:kept]:
            shown[i]["milestones"].append(m)
        return dumps({**body, "plan": {**plan, "stages": shown,
                                       "milestones_truncated": kept < len(ordered),
                                       "milestone_count": len(ordered)}})

    def size(text: str) -> int:
        return len(text.encode("utf-8"))

    # Room left by the body without milestones; each milestone costs its encoding and a comma.
    room = CARD_PAYLOAD_BUDGET - size(encode(0))
    kept = 0
    for _, m in ordered[:CARD_MILESTONE_LIMIT]:
        room -= size(dumps(m)) + 1
        if room < 0:
            break
        kept += 1
    text = encode(kept)
    while kept and size(text) > CARD_PAYLOAD_BUDGET:  # "false" is a byte longer than "true"
        kept -= 1
        text = encode(kept)
    return text


def envelope(plan: Plan | None, status: int = 200, deal_id: str | None = None):
    s = session()
    row: Installation = g.hs_installation
    s.expire_all()
    if plan is not None:
        plan = plans.get_plan(s, row.tenant_id, plan.id)
    pipeline = _deal_pipeline(s, row, plan, deal_id)
    active = row.status == "active"
    body = {
        "mode": (row.settings or {}).get("mode") or MODE_DEAL,
        "connection": "ok" if active else "needs_reconnect",
        "reconnect_url": None if active else install_url(),
        "plan": PlanOut.model_validate(plans.document(s, plan, today())).model_dump(mode="json") if plan else None,
        "templates": _templates(s, row, pipeline),
        "sync": _sync(s, plan),
        "buyer_link": _buyer_link(s, plan),
    }
    if plan is not None:  # health, win probability, stakeholder coverage (webapp/analytics.py)
        body["plan"].update(analytics.card_fields(s, plan, today()))
        # the content blocks at a glance; the card links to the editor's content page
        body["plan"]["content"] = content.card_summary(s, plan)
    # Encoded here, once, so that what is measured is exactly what is sent.
    response = current_app.response_class(fit_for_card(body, current_app.json.dumps),
                                          status=status, mimetype="application/json")
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
    template: ShortText
    title: ShortText | None = None
    deal_name: ShortText | None = None  # the card knows it (the deal's `dealname`); the title defaults to it


MAX_REORDER = 1_000  # ids per reorder (a stage holds far fewer milestones)


class CardReorder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage_id: RowId
    milestone_ids: list[RowId] = Field(max_length=MAX_REORDER)


class CardEditorLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    page: Literal["plan", "content"] = "plan"  # "content": the plan's content blocks page


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
    return envelope(_deal_plan(deal_id), deal_id=deal_id)


@bp.post("/hubspot/card/deals/<deal_id>/plan")
@card
def card_create_plan(deal_id):
    data = CardCreate.model_validate(_json_object())
    row: Installation = g.hs_installation
    s = session()
    create = PlanCreate.model_validate({
        "title": (data.title or "").strip() or None,
        "deal": DealRef.model_validate({"provider": PROVIDER, "account_id": row.account_id, "deal_id": deal_id,
                                        "name": (data.deal_name or "").strip()[:200] or None}),
        "start_date": today()})
    plan = plans.create_from_template(s, row.tenant_id, create, data.template, g.hs_actor, today())
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
    data = CardEditorLink.model_validate(_json_object())
    plan = _plan(plan_id)
    user = _card_user()
    actor = users.actor_of(user) if user else g.hs_actor
    url, expires_at = sharing.editor_link(plan.tenant_id, plan.id, actor, keys(),
                                          user_id=user.id if user else None, page=data.page)
    if user is not None:
        session().commit()
    return jsonify(url=url, expires_at=expires_at.isoformat())


@bp.errorhandler(ValidationError)
def _validation(exc):
    from ..errors import validation_problem

    return validation_problem(exc)
