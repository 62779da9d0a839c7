"""Notification pages: one-click reminder actions (/r/…), unsubscribe (/u/…), the rep's
alert preferences (/app/notifications), "Send reminder" (editor form and API), and the local
mailbox (/local/mail, local mode only).

A GET never changes anything (mail scanners follow links): it shows a page whose button
POSTs, with a CSRF token bound to the link. The one exception is RFC 8058's one-click
unsubscribe, a POST whose body is `List-Unsubscribe=One-Click`.
"""
from __future__ import annotations

import hashlib
import hmac
from datetime import date

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy.exc import IntegrityError

from .. import notifications, plans, users
from ..auth import api_key_required, login_required
from ..db import session
from ..domain_errors import DomainError, Invalid
from ..models import Plan
from ..web import keys

bp = Blueprint("notify", __name__)
api_bp = Blueprint("notify_api", __name__, url_prefix="/api/v1")

ACTION_LABELS = {"done": "Mark this step done", "confirm": "Confirm this date",
                 "propose": "Propose another date"}
PRIVATE = {"Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex", "Cache-Control": "no-store"}


def _csrf(token: str) -> str:
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, f"notify csrf|{token}".encode(), hashlib.sha256).hexdigest()


def _csrf_ok(token: str) -> bool:
    return hmac.compare_digest(_csrf(token), request.form.get("csrf") or "")


def _page(template: str, status: int = 200, **context):
    return render_template(f"notify/{template}.html", **context), status, PRIVATE


# ---- one-click actions ---------------------------------------------------------------------


def _action_context(token: str):
    data = notifications.load_action(token, keys())
    s = session()
    plan = plans.get_plan(s, data["t"], data["p"])
    from ..sharing import visible_milestone

    return data, plan, visible_milestone(plan, data["m"]), s


@bp.get("/r/<token>")
def action_page(token):
    try:
        data, plan, m, s = _action_context(token)
    except DomainError as exc:
        return _page("message", 404, title="Link not valid", message=exc.detail, brand="MutualPlan")
    used = notifications.token_used(s, token)
    return _page("action", plan=plan, milestone=m, data=data, label=ACTION_LABELS[data["a"]],
                 used=used, csrf=_csrf(token), brand=notifications._brand(s, plan.tenant_id)["name"])


@bp.post("/r/<token>")
def action_do(token):
    try:
        data, plan, m, s = _action_context(token)
    except DomainError as exc:
        return _page("message", 404, title="Link not valid", message=exc.detail, brand="MutualPlan")
    brand = notifications._brand(s, plan.tenant_id)["name"]
    if not _csrf_ok(token):
        return _page("action", 403, plan=plan, milestone=m, data=data, used=False,
                     label=ACTION_LABELS[data["a"]], csrf=_csrf(token), brand=brand,
                     error="This page was out of date, so nothing changed. Please try again.")
    try:
        proposed = None
        if data["a"] == "propose":
            raw = request.form.get("date") or ""
            try:
                proposed = date.fromisoformat(raw)
            except ValueError:
                raise Invalid("date", "pick the date that works for you") from None
        notifications.apply_action(s, token, data, proposed=proposed,
                                   reason=(request.form.get("reason") or "")[:1000])
        s.commit()
    except IntegrityError:  # the same link, used twice at the same moment
        s.rollback()
        return _page("message", 409, title="Already done", brand=brand,
                     message="This link was used already.")
    except DomainError as exc:
        s.rollback()
        return _page("action", 422, plan=plan, milestone=m, data=data, used=False,
                     label=ACTION_LABELS[data["a"]], csrf=_csrf(token), brand=brand,
                     error=exc.detail)
    done = {"done": f"“{m.title}” is marked done.", "confirm": f"The date of “{m.title}” is confirmed.",
            "propose": f"Your proposed date for “{m.title}” was sent to the team."}[data["a"]]
    return _page("message", title="Thank you", message=done, brand=brand)


# ---- unsubscribe ------------------------------------------------------------------------------


@bp.get("/u/<token>")
def unsubscribe_page(token):
    try:
        data = notifications.load_unsubscribe(token, keys())
    except DomainError as exc:
        return _page("message", 404, title="Link not valid", message=exc.detail, brand="MutualPlan")
    s = session()
    plan = s.get(Plan, data["p"]) if data.get("p") else None
    return _page("unsubscribe", email=data["e"], plan=plan, csrf=_csrf(token),
                 brand=notifications._brand(s, data["t"])["name"])


@bp.post("/u/<token>")
def unsubscribe_do(token):
    try:
        data = notifications.load_unsubscribe(token, keys())
    except DomainError as exc:
        return _page("message", 404, title="Link not valid", message=exc.detail, brand="MutualPlan")
    one_click = request.form.get("List-Unsubscribe") == "One-Click"  # RFC 8058 §3.2
    if not one_click and not _csrf_ok(token):
        abort(403)
    scope = data.get("p") if one_click or request.form.get("scope") != "all" else None
    s = session()
    notifications.unsubscribe(s, data["t"], data["e"], scope)
    s.commit()
    if one_click:
        return "", 204
    brand = notifications._brand(s, data["t"])["name"]
    what = "this plan" if scope else f"all plans from {brand}"
    return _page("message", title="Unsubscribed", brand=brand,
                 message=f"{data['e']} gets no more reminders about {what}.")


# ---- the rep: preferences and "Send reminder" -------------------------------------------------


@bp.route("/app/notifications", methods=["GET", "POST"])
@login_required
def preferences():
    s = session()
    user, saved, error = g.user, False, None
    if request.method == "POST":
        if not users.csrf_ok(request.form.get("csrf"), "notifications"):
            abort(403)
        values = {name: request.form.get(name) == "on" for name in ("instant", "digest", "stalled")}
        values["slack_url"] = (request.form.get("slack_url") or "").strip()
        values["timezone"] = (request.form.get("timezone") or "UTC").strip()[:64]
        try:
            notifications.save_settings(s, user.tenant_id, values, user_id=user.id)
            s.commit()
            saved = True
        except DomainError as exc:
            s.rollback()
            error = exc.detail
    prefs = notifications.user_settings(s, user)
    return render_template("notify/preferences.html", user=user, prefs=prefs, saved=saved,
                           error=error, csrf=users.csrf_token("notifications")), (
        422 if error else 200)


@bp.post("/editor/plans/<plan_id>/nudge")
def editor_nudge(plan_id):
    """The editor's "Send reminder" (templates/notify/nudge_form.html)."""
    from . import editor

    ed = editor._session_for(plan_id)
    from ..sharing import csrf_ok

    if not editor._origin_ok() or not csrf_ok(ed["n"], plan_id, request.form.get("csrf"), keys()):
        abort(403)
    s = session()
    plan = plans.get_plan(s, ed["t"], plan_id)
    sent = notifications.nudge(s, plan, ed["a"])
    s.commit()
    return redirect(url_for("editor.page", plan_id=plan_id, ok=f"reminders-{sent}"), code=303)


@api_bp.post("/plans/<plan_id>/nudge")
@api_key_required
def api_nudge(plan_id):
    s = session()
    plan = plans.get_plan(s, g.principal.tenant_id, plan_id)
    sent = notifications.nudge(s, plan, g.principal.actor)
    s.commit()
    return jsonify(sent=sent), 202


# ---- the local mailbox ------------------------------------------------------------------------


@bp.get("/local/mail")
def mailbox():
    catcher = current_app.extensions.get("mutualplan.mail_catcher")
    local = current_app.config.get("TESTING") or _local()
    if catcher is None or not local:
        abort(404)
    messages = list(reversed(catcher.snapshot()))
    if request.args.get("format") == "json":
        return jsonify(messages=[{k: m[k] for k in ("to", "subject", "headers", "text", "html")}
                                 for m in messages])
    return render_template("notify/mailbox.html", messages=messages)


def _local() -> bool:
    from ..config import Config

    config = Config(DATABASE_URL=current_app.config["DATABASE_URL"],
                    PUBLIC_BASE_URL=current_app.config["PUBLIC_BASE_URL"])
    return config.local


def init_app(app) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(api_bp)
