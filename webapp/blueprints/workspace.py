"""The rep's home (`/app`): the plans a rep owns, for admins every plan of the tenant
(webapp/dashboard.py). Filters, sort and search are a plain GET form: a filtered view is a
link that can be bookmarked or shared with a colleague.

"New plan" for a deal found in the CRM:
    GET  /app/deals?q=…      the connector's search_deals on the person's CRM account
    POST /app/plans          (CSRF) creates the plan for the chosen deal, owned by the person,
                             titled as they typed (the deal's name by default) -> the editor
    GET  /app/plans/by-deal/<provider>/<account>/<deal>
                             the editor of that deal's plan, or the offer to create one (the
                             Salesforce component's "Open full editor" lands here, with
                             <account> "current": the org the rep signed in with;
                             ?to=content lands on the plan's content blocks page)

GET/POST /app/profile: the person's own contact card (name, title, email, photo) shown on the
buyer pages of the plans they own (webapp/branding.py; the tenant's card is the fallback).
"""
from __future__ import annotations

import logging

from flask import Blueprint, abort, g, redirect, render_template, request
from sqlalchemy import select

from connector.errors import CrmError

from .. import analytics, branding, dashboard, plan_templates, plans, providers, users
from ..auth import Forbidden, login_required
from ..db import session
from ..domain_errors import Conflict, Invalid, NotFound
from ..models import Installation, Plan
from ..schemas import DealRef, PlanCreate
from ..web import today

SEARCH_LIMIT = 10
log = logging.getLogger("mutualplan.workspace")

bp = Blueprint("workspace", __name__)


@bp.get("/app")
@login_required
def home():
    day = today()
    filters = {f for f in request.args.getlist("filter") if f in dashboard.FILTERS}
    sort = request.args.get("sort", "next_due")
    sort = sort if sort in dashboard.SORTS else "next_due"
    q = (request.args.get("q") or "")[:100]
    rows = dashboard.rows_for(session(), g.user, day)
    matching = dashboard.view(rows, day, filters=filters, sort=sort, q=q)
    more = request.args.get("all") == "1"
    shown = dashboard.fill_next_titles(session(), g.user.tenant_id,
                                       matching if more else matching[:dashboard.PAGE])
    # Plan health (webapp/analytics.py): three grouped queries for the rows shown.
    health = analytics.health_by_plan(session(), g.user.tenant_id, [r.id for r in shown], day)
    return render_template("workspace/home.html", user=g.user, rows=shown, total=len(rows),
                           health=health, HEALTH=analytics.HEALTH,
                           matching=len(matching), more=more,
                           filters=filters, sort=sort, q=q, day=day,
                           FILTERS=dashboard.FILTERS, SORTS=dashboard.SORTS)


def _installation() -> Installation:
    """The signed-in person's CRM account (the one they signed in with)."""
    row = session().scalars(select(Installation).where(
        Installation.tenant_id == g.user.tenant_id, Installation.provider == g.user.provider,
        Installation.status == "active")).first()
    if row is None:
        raise NotFound("Your CRM account is no longer connected; ask an admin to reconnect it.")
    return row


@bp.get("/app/deals")
@login_required
def find_deals():
    q = (request.args.get("q") or "").strip()[:100]
    row = _installation()
    deals, error = [], None
    if q:
        try:
            deals = providers.get(row.provider).connector_for(row).search_deals(q, SEARCH_LIMIT)
        except CrmError as exc:  # the CRM's own words stay in the log, not on the page
            log.warning("deal search failed: %s", type(exc).__name__)
            error = "Your CRM did not answer the search just now. Try again in a minute."
    taken = _plans_by_deal(row, [d.id for d in deals])
    return render_template("workspace/new_plan.html", user=g.user, q=q, deals=deals,
                           error=error, taken=taken, row=row, single=None,
                           templates=_templates(row))


def _templates(row: Installation):
    """Per deal pipeline, the templates with the one to preselect flagged `default` (the
    pipeline's default template, else the installation's default pipeline's)."""
    fallback = (row.settings or {}).get("default_pipeline")
    return lambda pipeline: plan_templates.choices(session(), row.tenant_id, pipeline, fallback)


def _plans_by_deal(row: Installation, deal_ids: list[str]) -> dict:
    if not deal_ids:
        return {}
    return dict(session().execute(select(Plan.deal_id, Plan.id).where(
        Plan.tenant_id == row.tenant_id, Plan.deal_provider == row.provider,
        Plan.deal_account_id == row.account_id, Plan.deal_id.in_(deal_ids))).all())


@bp.post("/app/plans")
@login_required
def create_plan():
    if not users.csrf_ok(request.form.get("csrf")):
        raise Forbidden("This form was out of date; reload the page and try again.")
    row = _installation()
    deal_id = (request.form.get("deal_id") or "").strip()
    title = (request.form.get("title") or "").strip() or "Mutual Action Plan"
    s = session()
    data = PlanCreate.model_validate({
        "title": title[:200], "start_date": today(),
        "deal": DealRef.model_validate({"provider": row.provider, "account_id": row.account_id,
                                        "deal_id": deal_id})})
    try:
        plan = plans.create_from_template(s, row.tenant_id, data,
                                          (request.form.get("template") or "enterprise")[:36],
                                          users.actor_of(g.user), today())
    except Conflict as exc:
        s.rollback()
        return redirect(f"/editor/plans/{exc.extra['plan_id']}", 303)
    users.claim_plan(s, plan, g.user, users.actor_of(g.user))
    s.commit()
    return redirect(f"/editor/plans/{plan.id}", 303)


@bp.get("/app/plans/by-deal/<provider>/<account>/<deal>")
@login_required
def by_deal(provider, account, deal):
    row = _installation()
    # "current": the account the person signed in with (the Salesforce component cannot
    # read its org id without Apex; the sign-in already says which org it is).
    account = row.account_id if account == "current" else account
    if (provider, account) != (row.provider, row.account_id) or len(deal) > 64:
        abort(404)
    found = _plans_by_deal(row, [deal]).get(deal)
    if found is not None:
        if not users.may_edit(session(), g.user, found):
            raise Forbidden("This deal's plan belongs to another rep; ask them or an admin.")
        page = "/content" if request.args.get("to") == "content" else ""  # the content blocks
        return redirect(f"/editor/plans/{found}{page}", 303)
    return render_template("workspace/new_plan.html", user=g.user, q="", deals=[], error=None,
                           taken={}, row=row, single=deal, templates=_templates(row))


# ---- the rep's own contact card ------------------------------------------------------------


@bp.route("/app/profile", methods=["GET", "POST"])
@login_required
def profile():
    s = session()
    row = branding.get_card(s, g.user.id)
    form = {k: (getattr(row, k) if row else "") or "" for k in branding.CARD_FIELDS}
    if row is None:  # a first visit starts from what the CRM told us about the person
        form.update(name=g.user.name or "", email=g.user.email or "")
    photo_url = row and branding.card_photo_url(row)
    if request.method == "GET":
        return _profile_page(form, {}, photo_url, ok=request.args.get("ok"))
    if not users.csrf_ok(request.form.get("csrf")):
        raise Forbidden("This form was out of date; reload the page and try again.")
    form = {k: request.form.get(k, "") for k in branding.CARD_FIELDS}
    upload = request.files.get("photo")
    photo = upload.read(branding.MAX_IMAGE + 1) if upload and upload.filename else None
    try:
        branding.save_card(s, g.user, {**form, "remove_photo": request.form.get("remove_photo")},
                           photo)
        s.commit()  # rendered buyer pages follow: the card's updated_at is in their key
    except Invalid as exc:
        s.rollback()
        return _profile_page(form, {exc.field: exc.message}, photo_url, status=422)
    return redirect("/app/profile?ok=1", 303)


def _profile_page(form, errors, photo_url, status=200, ok=None):
    return render_template("workspace/profile.html", user=g.user, form=form, errors=errors,
                           photo_url=photo_url, ok=ok), status
