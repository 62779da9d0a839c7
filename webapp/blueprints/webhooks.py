"""Outgoing webhooks: the API (/api/v1/webhooks, API keys, which only admins create) and the
admins' page (/settings/webhooks). The domain is webapp/webhooks.py; routes only validate,
call it and commit. A form carries the session's CSRF token; a refusal re-renders the page
with the reason and stores nothing. The signing secret is shown once, in the answer that
created the endpoint.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for
from pydantic import Field

from .. import auth, openapi, users, webhooks
from ..auth import api_key_required
from ..db import session
from ..errors import DomainError, Invalid, NotFound
from ..schemas import In, Out, ShortText, optional
from ..web import json_body, query_int, render

api_bp = Blueprint("webhooks_api", __name__, url_prefix="/api/v1")
bp = Blueprint("webhooks", __name__, url_prefix="/settings/webhooks")

Event = Literal["plan.updated", "milestone.completed", "milestone.date_proposed",
                "buyer.commented", "buyer.viewed"]


# ---- documents ---------------------------------------------------------------------------


class WebhookEndpointIn(In):
    url: str = Field(max_length=500, description="An https:// URL; it must resolve to public "
                     "addresses unless allow_private is true")
    events: list[Event] = Field(min_length=1, max_length=len(webhooks.EVENTS))
    description: ShortText = ""
    allow_private: bool = Field(False, description="Let the URL resolve to private, loopback "
                                "or link-local addresses (your own network). Off by default.")


class WebhookEndpointPatch(In):
    url: str = optional(max_length=500)
    events: list[Event] = optional(min_length=1, max_length=len(webhooks.EVENTS))
    description: ShortText = optional()
    allow_private: bool = optional()
    active: bool = optional()


class WebhookEndpointOut(Out):
    id: str
    url: str
    description: str
    events: list[str]
    allow_private: bool
    active: bool
    disabled_reason: str
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: str = Field(description="The signing secret (whsec_…); shown only in this response")


class WebhookEndpointList(Out):
    items: list[WebhookEndpointOut]


class WebhookDeliveryOut(Out):
    id: str
    msg_id: str = Field(description="The webhook-id header: the same for every attempt and replay")
    event_type: str
    status: Literal["pending", "sending", "delivered", "failed"]
    attempts: int
    response_code: int | None
    last_error: str
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class WebhookDeliveryList(Out):
    items: list[WebhookDeliveryOut]


def _delivery_doc(row) -> dict:
    doc = {k: getattr(row, k) for k in WebhookDeliveryOut.model_fields}
    doc["next_attempt_at"] = row.next_attempt_at if row.status == "pending" else None
    return doc


openapi.EXTRA_OPERATIONS.extend([
    ("get", "/webhooks", "The team's outgoing webhook endpoints", None, 200, WebhookEndpointList),
    ("post", "/webhooks", "Register an endpoint for events; its signing secret is returned only "
     "in this response", WebhookEndpointIn, 201, WebhookEndpointCreated),
    ("get", "/webhooks/{endpoint_id}", "Get an endpoint", None, 200, WebhookEndpointOut),
    ("patch", "/webhooks/{endpoint_id}", "Change an endpoint (url, events, description, "
     "allow_private; active: false pauses it, true re-enables it)", WebhookEndpointPatch, 200,
     WebhookEndpointOut),
    ("delete", "/webhooks/{endpoint_id}", "Delete an endpoint and its delivery log", None, 204, None),
    ("get", "/webhooks/{endpoint_id}/deliveries", "The endpoint's delivery log, newest first",
     None, 200, WebhookDeliveryList),
    ("post", "/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay",
     "Send a delivered or failed message again (same webhook-id, new signature)", None, 202,
     WebhookDeliveryOut),
])
openapi.EXTRA_PARAMS["/webhooks/{endpoint_id}/deliveries"] = [
    {"name": "status", "in": "query", "schema": {"enum": ["pending", "sending", "delivered", "failed"]}},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
]


# ---- API ---------------------------------------------------------------------------------


def _tenant() -> str:
    return g.principal.tenant_id


@api_bp.get("/webhooks")
@api_key_required
def list_endpoints():
    rows = webhooks.endpoints(session(), _tenant())
    return render(WebhookEndpointList, {"items": rows})


@api_bp.post("/webhooks")
@api_key_required
def create_endpoint():
    data = json_body(WebhookEndpointIn)
    s = session()
    row, secret = webhooks.create_endpoint(s, _tenant(), url=data.url, events=list(data.events),
                                           description=data.description,
                                           allow_private=data.allow_private, actor=g.principal.actor)
    s.commit()
    doc = {**WebhookEndpointOut.model_validate(row).model_dump(), "secret": secret}
    response = render(WebhookEndpointCreated, doc, 201)
    response.headers["Location"] = f"/api/v1/webhooks/{row.id}"
    response.headers["Cache-Control"] = "no-store"
    return response


@api_bp.get("/webhooks/<endpoint_id>")
@api_key_required
def get_endpoint(endpoint_id):
    return render(WebhookEndpointOut, webhooks.get_endpoint(session(), _tenant(), endpoint_id))


@api_bp.patch("/webhooks/<endpoint_id>")
@api_key_required
def update_endpoint(endpoint_id):
    data = json_body(WebhookEndpointPatch)
    s = session()
    row = webhooks.get_endpoint(s, _tenant(), endpoint_id)
    changes = data.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise Invalid(field, "must not be null")
    webhooks.update_endpoint(s, row, changes)
    s.commit()
    return render(WebhookEndpointOut, row)


@api_bp.delete("/webhooks/<endpoint_id>")
@api_key_required
def delete_endpoint(endpoint_id):
    s = session()
    webhooks.delete_endpoint(s, webhooks.get_endpoint(s, _tenant(), endpoint_id))
    s.commit()
    return Response(status=204)


@api_bp.get("/webhooks/<endpoint_id>/deliveries")
@api_key_required
def list_deliveries(endpoint_id):
    unknown = set(request.args) - {"status", "limit"}
    if unknown:
        raise Invalid(sorted(unknown)[0], "unknown query parameter")
    status = request.args.get("status")
    if status not in (None, "pending", "sending", "delivered", "failed"):
        raise Invalid("status", "pending, sending, delivered or failed")
    s = session()
    endpoint = webhooks.get_endpoint(s, _tenant(), endpoint_id)
    rows = webhooks.deliveries(s, _tenant(), endpoint.id, query_int("limit", 50, 1, 200), status)
    return render(WebhookDeliveryList, {"items": [_delivery_doc(r) for r in rows]})


@api_bp.post("/webhooks/<endpoint_id>/deliveries/<delivery_id>/replay")
@api_key_required
def replay(endpoint_id, delivery_id):
    s = session()
    endpoint = webhooks.get_endpoint(s, _tenant(), endpoint_id)
    row = webhooks.replay(s, _tenant(), endpoint.id, delivery_id)
    s.commit()
    return render(WebhookDeliveryOut, _delivery_doc(row), 202)


# ---- the admins' page -----------------------------------------------------------------------


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"  # the page that shows a new secret, too
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _page(status: int = 200, **context):
    from .settings import PAGES

    s = session()
    rows = webhooks.endpoints(s, g.user.tenant_id)
    html = render_template("settings/webhooks.html", pages=PAGES, user=g.user,
                           ok=request.args.get("ok"), endpoints=rows, events=webhooks.EVENTS,
                           form=context.pop("form", {"events": list(webhooks.EVENTS)}),
                           errors=context.pop("errors", {}), **context)
    return Response(html, status=status, mimetype="text/html")


def _checked_form() -> None:
    if not users.csrf_ok(request.form.get("csrf")):
        abort(403, "This page was out of date, so nothing was saved. Reload it and try again.")


@bp.get("")
@auth.admin_required
def page():
    return _page()


@bp.post("")
@auth.admin_required
def add():
    _checked_form()
    form = {"url": (request.form.get("url") or "").strip(),
            "description": (request.form.get("description") or "").strip(),
            "events": request.form.getlist("events"),
            "allow_private": request.form.get("allow_private") == "1"}
    s = session()
    try:
        row, secret = webhooks.create_endpoint(
            s, g.user.tenant_id, url=form["url"], events=form["events"],
            description=form["description"], allow_private=form["allow_private"],
            actor=users.actor_of(g.user))
        s.commit()
    except Invalid as exc:
        s.rollback()
        return _page(422, form=form, errors={exc.field: exc.message})
    # Shown once, in this response only (no-store); stored encrypted, never shown again.
    return _page(201, new_secret=secret, new_endpoint=row)


def _endpoint(endpoint_id: str):
    return webhooks.get_endpoint(session(), g.user.tenant_id, endpoint_id)


@bp.post("/<endpoint_id>/delete")
@auth.admin_required
def delete(endpoint_id):
    _checked_form()
    s = session()
    row = _endpoint(endpoint_id)
    webhooks.delete_endpoint(s, row)
    s.commit()
    return redirect(url_for("webhooks.page", ok=f"Endpoint {row.url} deleted."), 303)


@bp.get("/<endpoint_id>")
@auth.admin_required
def log(endpoint_id):
    from .settings import PAGES

    s = session()
    row = _endpoint(endpoint_id)
    html = render_template("settings/webhook_log.html", pages=PAGES, user=g.user,
                           ok=request.args.get("ok"), endpoint=row,
                           deliveries=webhooks.deliveries(s, g.user.tenant_id, row.id, 100))
    return Response(html, mimetype="text/html")


@bp.post("/<endpoint_id>/deliveries/<delivery_id>/replay")
@auth.admin_required
def replay_form(endpoint_id, delivery_id):
    _checked_form()
    s = session()
    row = _endpoint(endpoint_id)
    delivery = webhooks.replay(s, g.user.tenant_id, row.id, delivery_id)
    s.commit()
    return redirect(url_for("webhooks.log", endpoint_id=row.id,
                            ok=f"{delivery.event_type} {delivery.msg_id} queued again."), 303)


@bp.errorhandler(DomainError)
def _refused(exc):
    from .settings import PAGES

    html = render_template("settings/error.html", pages=PAGES, user=g.user, message=exc.detail)
    return Response(html, status=404 if isinstance(exc, NotFound) else 409, mimetype="text/html")


def init_app(app) -> None:
    app.register_blueprint(api_bp)
    app.register_blueprint(bp)
