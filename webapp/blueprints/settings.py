"""Settings for admins (`/settings`): connections, stage mapping, team and API keys.

Every route is `admin_required` (webapp/auth.py); every form carries the sign-in
session's CSRF token (users.csrf_token) and is one transaction: a refusal re-renders
the page with the reason next to the field and the values typed, and stores nothing.
The domain code is the API's: mirror.py for mappings and their preview, outbox.py for
retries, providers.disconnect for revocation, users.set_role for roles, auth.create_key.
"""
from __future__ import annotations

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from connector.errors import CrmError

from .. import (auth, clock, mirror, notifications, onboarding, outbox, plan_templates, providers,
               sync, timeline, users)
from .. import branding as brand
from ..db import session
from ..errors import Conflict, DomainError, Invalid, NotFound
from ..models import (
    ApiKey,
    Installation,
    Mirror,
    OutboxEntry,
    Plan,
    PlanTemplate,
    StageMapping,
    Tenant,
)

bp = Blueprint("settings", __name__, url_prefix="/settings")

PAGES = [("settings.connections", "Connections"), ("settings.mapping", "Stage mapping"),
         ("settings.templates", "Templates"), ("settings.branding", "Branding"),
         ("settings.team", "Team"), ("settings.notifications_page", "Notifications"),
         ("settings.keys", "API keys"), ("webhooks.page", "Webhooks")]


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _page(template: str, status: int = 200, **context):
    html = render_template(template, pages=PAGES, user=g.user, ok=request.args.get("ok"), **context)
    return Response(html, status=status, mimetype="text/html")


def _checked_form() -> None:
    if not users.csrf_ok(request.form.get("csrf")):
        abort(403, "This page was out of date, so nothing was saved. Reload it and try again.")


def _installation(installation_id: str) -> Installation:
    row = session().scalars(select(Installation).where(
        Installation.tenant_id == g.user.tenant_id, Installation.id == installation_id)).one_or_none()
    if row is None:
        raise NotFound("No connection with this id.")
    return row


def _installations() -> list[Installation]:
    return list(session().scalars(select(Installation).where(Installation.tenant_id == g.user.tenant_id)
                                  .order_by(Installation.created_at)))


@bp.get("")
def index():
    return redirect(url_for("settings.connections"))


# ---- connections ------------------------------------------------------------------------


def connection_state(s, row: Installation) -> dict:
    """What an admin needs to know about one connected CRM account."""
    last_push = s.scalar(select(func.max(Mirror.pushed_at)).where(Mirror.installation_id == row.id))
    dead = list(s.scalars(select(OutboxEntry).where(
        OutboxEntry.installation_id == row.id, OutboxEntry.status == "dead")
        .order_by(OutboxEntry.created_at.desc()).limit(20)))
    failing = s.scalars(select(OutboxEntry).where(
        OutboxEntry.installation_id == row.id, OutboxEntry.status.in_(("pending", "parked")),
        OutboxEntry.last_error.is_not(None)).limit(1)).first()
    provider = providers.get(row.provider)
    return {"row": row, "label": provider.label, "mode": (row.settings or {}).get("mode"),
            "last_push": last_push, "last_pull": row.last_pulled_at, "dead": dead,
            "timeline": timeline.switched_on(row),
            "error": row.status_reason or (failing.last_error if failing else None)}


@bp.get("/connections")
@auth.admin_required
def connections():
    s = session()
    return _page("settings/connections.html", items=[connection_state(s, r) for r in _installations()],
                 providers=providers.all_providers())


@bp.post("/connections/<installation_id>/retry")
@auth.admin_required
def retry(installation_id):
    _checked_form()
    s = session()
    row = _installation(installation_id)
    plan_ids = set(s.scalars(select(OutboxEntry.plan_id).where(
        OutboxEntry.installation_id == row.id, OutboxEntry.status == "dead")))
    count = sum(outbox.retry_dead(s, g.user.tenant_id, plan_id) for plan_id in plan_ids)
    s.commit()
    return redirect(url_for("settings.connections", ok=f"{count} failed change(s) queued again."), 303)


@bp.post("/connections/<installation_id>/timeline")
@auth.admin_required
def timeline_switch(installation_id):
    """Buyer activity on this CRM's timeline: on or off (webapp/timeline.py)."""
    _checked_form()
    value = request.form.get("timeline")
    if value not in ("on", "off"):
        abort(400, "Choose on or off.")
    s = session()
    timeline.set_enabled(_installation(installation_id), value == "on")
    s.commit()
    return redirect(url_for("settings.connections", ok=f"Buyer activity on the CRM timeline: {value}."), 303)


@bp.post("/connections/<installation_id>/disconnect")
@auth.admin_required
def disconnect(installation_id):
    _checked_form()
    s = session()
    row = _installation(installation_id)
    if row.status == "uninstalled":
        return redirect(url_for("settings.connections", ok="Already disconnected."), 303)
    revoked = providers.disconnect(s, row)
    s.commit()
    label = providers.get(row.provider).label
    message = (f"Disconnected; {label} confirmed the access was revoked." if revoked else
               f"Disconnected; MutualPlan forgot its tokens. Remove the app in {label} too.")
    return redirect(url_for("settings.connections", ok=message), 303)


# ---- stage mapping ------------------------------------------------------------------------


def _titles(s, tenant_id: str) -> list[str]:
    """Milestone titles an admin can map: the built-in templates' and those in the tenant's plans."""
    seen: dict[str, str] = {}
    for template in plan_templates.TEMPLATES.values():
        for stage in template["stages"]:
            for m in stage["milestones"]:
                seen.setdefault(mirror.key(m["title"]), m["title"])
    from ..models import Milestone
    for title in s.scalars(select(Milestone.title).where(Milestone.tenant_id == tenant_id).distinct()
                           .limit(500)):
        seen.setdefault(mirror.key(title), title)
    return list(seen.values())


def preview(s, row: Installation, pipeline: str, stages, mapping: mirror.StageMap) -> list[dict]:
    """Where each existing plan's deal would move under `mapping` (mirror.decide, nothing sent)."""
    labels = {st.id: st.label for st in stages}
    out = []
    q = (select(Plan, Mirror).join(Mirror, Mirror.plan_id == Plan.id)
         .where(Mirror.installation_id == row.id, Plan.tenant_id == row.tenant_id,
                Plan.archived_at.is_(None)).order_by(Plan.title).limit(200))
    for plan, state in s.execute(q):
        if (state.deal_pipeline or pipeline) != pipeline:
            continue
        milestones = [mirror.MilestoneState(m.title, m.status == "done", m.due_date) for m in plan.milestones]
        last = state.pushed_deal or {}
        decision = mirror.decide(milestones, mapping, stages,
                                 mirror.DealState(state.deal_stage, state.deal_close_date),
                                 mirror.LastWrite(last.get("stage")), {})
        out.append({"plan": plan, "now": labels.get(state.deal_stage, state.deal_stage or "unknown"),
                    "to": labels.get(decision.stage, decision.stage) if decision.stage else None,
                    "advice": mirror.advice(decision.mismatch and {k: v for k, v in decision.mismatch.items()
                                                                   if k != "close_date"}, labels)})
    return out


def _mapping_form(titles, stages, allow_closed: bool) -> tuple[dict, str | None, dict]:
    """The posted gates and close milestone, validated; errors by field name."""
    by_id = {st.id: st for st in stages}
    gates, errors = {}, {}
    for i, title in enumerate(titles):
        stage_id = request.form.get(f"gate-{i}", "")
        if not stage_id:
            continue
        if stage_id not in by_id:
            errors[f"gate-{i}"] = "pick one of the pipeline's stages"
        elif by_id[stage_id].closed and not allow_closed:
            errors[f"gate-{i}"] = (f"“{by_id[stage_id].label}” closes the deal; tick “Milestones may "
                                   "move deals into closed stages” or pick an open stage")
        else:
            gates[title] = stage_id
    close = request.form.get("close_milestone") or None
    if close is not None and close not in titles:
        errors["close_milestone"] = "pick one of the milestones listed"
    return gates, close, errors


@bp.route("/mapping", methods=["GET", "POST"])
@bp.route("/mapping/<installation_id>/<pipeline>", methods=["GET", "POST"])
@auth.admin_required
def mapping(installation_id=None, pipeline=None):
    s = session()
    rows = [r for r in _installations() if r.status != "uninstalled"]
    if installation_id is None:
        if not rows:
            return _page("settings/mapping.html", rows=[], row=None)
        row = rows[0]
        return redirect(url_for("settings.mapping", installation_id=row.id,
                                pipeline=(row.settings or {}).get("default_pipeline") or "default"))
    row = _installation(installation_id)
    try:
        stages = sync.pipeline_stages(s, row, sync.connector_for(row), pipeline)
        s.commit()  # the pipeline cache
    except CrmError as exc:
        s.rollback()
        return _page("settings/mapping.html", status=502, rows=rows, row=row, pipeline=pipeline,
                     crm_error=f"{providers.get(row.provider).label} did not answer: {exc}")
    titles = _titles(s, row.tenant_id)
    saved = sync.stage_map(s, row, pipeline, stages)
    errors, status, current = {}, 200, saved
    hand_off, hand_off_errors = onboarding.hand_off(row, pipeline), {}
    if request.method == "POST" and request.form.get("action") == "hand_off":
        _checked_form()
        form = {k: request.form.get(k, "") for k in ("template", "cs_owner_field", "cs_owner_default")}
        try:
            onboarding.save_hand_off(s, row, pipeline, **form)
        except Invalid as exc:
            s.rollback()
            hand_off_errors, status = {exc.field: exc.message}, 422
            hand_off = onboarding.HandOff(**{k: v or None for k, v in form.items()})
        else:
            s.commit()
            return redirect(url_for("settings.mapping", installation_id=row.id, pipeline=pipeline,
                                    ok="Hand-off saved. It applies to deals that close won from now on.")
                            + "#hand-off", 303)
    elif request.method == "POST":
        _checked_form()
        allow = request.form.get("allow_closed") == "1"
        gates, close, errors = _mapping_form(titles, stages, allow)
        current = mirror.StageMap(gates={mirror.key(t): st for t, st in gates.items()},
                                  close_milestones=(mirror.key(close),) if close else (), allow_closed=allow)
        if errors:
            status = 422
        elif request.form.get("action") == "save":
            m = s.scalars(select(StageMapping).where(StageMapping.installation_id == row.id,
                                                     StageMapping.pipeline_id == pipeline)).one_or_none()
            if m is None:
                m = StageMapping(tenant_id=row.tenant_id, installation_id=row.id, pipeline_id=pipeline)
                s.add(m)
            m.gates, m.close_milestone, m.allow_closed = gates, close, allow
            m.updated_at = clock.now()
            s.commit()
            return redirect(url_for("settings.mapping", installation_id=row.id, pipeline=pipeline,
                                    ok="Stage mapping saved. Deals move on the next change of each plan."),
                            303)
    is_default = s.scalars(select(StageMapping.id).where(StageMapping.installation_id == row.id,
                                                         StageMapping.pipeline_id == pipeline)).first() is None
    close_key = next(iter(current.close_milestones), None)
    return _page("settings/mapping.html", status=status, rows=rows, row=row, pipeline=pipeline,
                 provider_label=providers.get(row.provider).label,
                 pipelines=sorted(((row.settings or {}).get("pipelines") or {}).keys()) or [pipeline],
                 stages=stages, titles=titles, gates={t: current.gates.get(mirror.key(t), "") for t in titles},
                 close=next((t for t in titles if mirror.key(t) == close_key), None),
                 allow_closed=current.allow_closed, errors=errors, is_default=is_default,
                 previewing=request.method == "POST" and request.form.get("action") != "hand_off",
                 preview=preview(s, row, pipeline, stages, current),
                 hand_off=hand_off, hand_off_errors=hand_off_errors,
                 templates=plan_templates.summaries(s, row.tenant_id))


# ---- templates ----------------------------------------------------------------------------


def _template(template_id: str) -> PlanTemplate:
    row = session().get(PlanTemplate, template_id)
    if row is None or row.tenant_id != g.user.tenant_id:
        raise NotFound("No template with this id.")
    return row


def _pipelines() -> list[tuple[str, str]]:
    """(pipeline id, label) of every connected account's cached pipelines."""
    out = []
    for row in _installations():
        for pid in sorted(((row.settings or {}).get("pipelines") or {}).keys()):
            out.append((pid, f"{providers.get(row.provider).label} {row.account_id} · {pid}"))
    return out


def _template_page(row: PlanTemplate | None, form: dict, errors: dict, status: int = 200):
    stages = None
    if not errors.get("stages"):
        try:
            stages = plan_templates.parse(form.get("stages", ""))
        except ValueError:
            stages = None
    return _page("settings/template.html", status=status, row=row, form=form, errors=errors,
                 pipelines=_pipelines(), warning=stages and plan_templates.size_warning(stages))


@bp.get("/templates")
@auth.admin_required
def templates():
    s = session()
    own = plan_templates.tenant_templates(s, g.user.tenant_id)
    return _page("settings/templates.html", builtin=plan_templates.summaries(),
                 own=[{"row": r, "count": plan_templates.milestone_count(r.stages),
                       "warning": plan_templates.size_warning(r.stages)} for r in own])


@bp.get("/templates/new")
@bp.get("/templates/<template_id>")
@auth.admin_required
def template(template_id=None):
    s = session()
    source = request.args.get("copy")
    if template_id:
        row = _template(template_id)
        base = plan_templates.as_template(row)
    elif source:
        base = plan_templates.resolve(s, g.user.tenant_id, source)
        if base is None:
            raise NotFound("No template with this id.")
        base = {**base, "name": f"Copy of {base['name']}"[:120], "default_for_pipeline": None}
        row = None
    else:
        row, base = None, {"name": "", "description": "", "default_go_live_days": 90, "stages": [],
                           "default_for_pipeline": None}
    form = {"name": base["name"], "description": base["description"],
            "default_go_live_days": str(base["default_go_live_days"]),
            "stages": plan_templates.as_text(base["stages"]) if base["stages"] else
            "## Discovery\nDiscovery call | both | start+0\n",
            "default_for_pipeline": base.get("default_for_pipeline") or ""}
    return _template_page(row if template_id else None, form, {})


@bp.post("/templates/new")
@bp.post("/templates/<template_id>")
@auth.admin_required
def save_template(template_id=None):
    _checked_form()
    s = session()
    row = _template(template_id) if template_id else None
    form = {k: (request.form.get(k) or "").strip() for k in
            ("name", "description", "default_go_live_days", "stages", "default_for_pipeline")}
    errors = {}
    if not 1 <= len(form["name"]) <= 120:
        errors["name"] = "a name of 1 to 120 characters"
    if len(form["description"]) > 2000:
        errors["description"] = "at most 2,000 characters"
    days = form["default_go_live_days"]
    if not (days.isdigit() and 1 <= int(days) <= 730):
        errors["default_go_live_days"] = "a number of days between 1 and 730"
    try:
        stages = plan_templates.parse(form["stages"])
    except ValueError as exc:
        errors["stages"] = str(exc)
    pipeline = form["default_for_pipeline"] or None
    if pipeline and pipeline not in {p for p, _ in _pipelines()}:
        errors["default_for_pipeline"] = "pick one of the pipelines listed"
    if errors:
        return _template_page(row, form, errors, status=422)
    if row is None:
        row = PlanTemplate(tenant_id=g.user.tenant_id)
        s.add(row)
    if pipeline:  # one default per pipeline: this one replaces the previous
        for other in plan_templates.tenant_templates(s, g.user.tenant_id):
            if other is not row and other.default_for_pipeline == pipeline:
                other.default_for_pipeline = None
    row.name, row.description, row.stages = form["name"], form["description"], stages
    row.default_go_live_days, row.default_for_pipeline = int(days), pipeline
    row.updated_at = clock.now()
    s.commit()
    warning = plan_templates.size_warning(stages)
    return redirect(url_for("settings.templates", ok=f"Template “{row.name}” saved."
                            + (f" Note: {warning}" if warning else "")), 303)


@bp.post("/templates/<template_id>/delete")
@auth.admin_required
def delete_template(template_id):
    _checked_form()
    s = session()
    row = _template(template_id)
    s.delete(row)
    s.commit()
    return redirect(url_for("settings.templates", ok=f"Template “{row.name}” deleted. Plans made "
                            "from it keep their milestones."), 303)


# ---- branding -----------------------------------------------------------------------------


def _images(row) -> dict:
    return {name: row and brand.image_url(row, name) for name in brand.IMAGES}


@bp.route("/branding", methods=["GET", "POST"])
@auth.admin_required
def branding():
    s = session()
    row = brand.get(s, g.user.tenant_id)
    form = {k: getattr(row, k) or "" if row else "" for k in (*brand.FIELDS, "accent")}
    if request.method == "GET":
        return _page("settings/branding.html", form=form, errors={}, images=_images(row))
    _checked_form()
    form = {k: request.form.get(k, "") for k in form}
    files = {name: request.files[name].read(brand.MAX_IMAGE + 1) for name in brand.IMAGES
             if name in request.files and request.files[name].filename}
    try:
        brand.save(s, g.user.tenant_id, {**form, **{f"remove_{n}": request.form.get(f"remove_{n}")
                                                  for n in brand.IMAGES}}, files)
        s.commit()
    except Invalid as exc:
        s.rollback()
        return _page("settings/branding.html", status=422, form=form, errors={exc.field: exc.message},
                     images=_images(brand.get(s, g.user.tenant_id)))
    return redirect(url_for("settings.branding", ok="Branding saved; buyers see it on their next visit."), 303)


# ---- team ---------------------------------------------------------------------------------


@bp.get("/team")
@auth.admin_required
def team():
    return _page("settings/team.html", people=users.list_users(session(), g.user.tenant_id))


@bp.post("/team/<user_id>/role")
@auth.admin_required
def set_role(user_id):
    _checked_form()
    s = session()
    try:
        person = users.set_role(s, g.user.tenant_id, user_id, request.form.get("role", ""))
        s.commit()
    except (Conflict, Invalid) as exc:
        s.rollback()
        return _page("settings/team.html", status=409 if isinstance(exc, Conflict) else 422,
                     people=users.list_users(s, g.user.tenant_id), error=exc.detail)
    return redirect(url_for("settings.team", ok=f"{person.display_name} is now {person.role}."), 303)


# ---- notifications: the tenant's Slack webhook -------------------------------------------


@bp.route("/notifications", methods=["GET", "POST"])
@auth.admin_required
def notifications_page():
    """The tenant's Slack incoming webhook: every rep's alerts go there unless the rep set
    their own (/app/notifications). Checked by notifications.check_webhook_url (https, a
    public address); an empty field switches it off."""
    s = session()
    if request.method == "GET":
        url = notifications.tenant_settings(s, g.user.tenant_id)["slack_url"]
        return _page("settings/notifications.html", slack_url=url, errors={})
    _checked_form()
    url = (request.form.get("slack_url") or "").strip()
    try:
        if len(url) > 500:
            raise Invalid("slack_url", "at most 500 characters")
        notifications.save_settings(s, g.user.tenant_id, {"slack_url": url})
        s.commit()
    except Invalid as exc:
        s.rollback()
        return _page("settings/notifications.html", status=422, slack_url=url,
                     errors={exc.field: exc.message})
    return redirect(url_for("settings.notifications_page",
                            ok="Slack webhook saved." if url else "Slack alerts switched off."), 303)


# ---- API keys -----------------------------------------------------------------------------


def _keys(s):
    return list(s.scalars(select(ApiKey).where(ApiKey.tenant_id == g.user.tenant_id)
                          .order_by(ApiKey.created_at.desc())))


@bp.get("/keys")
@auth.admin_required
def keys():
    return _page("settings/keys.html", keys=_keys(session()))


@bp.post("/keys")
@auth.admin_required
def create_key():
    _checked_form()
    s = session()
    label = (request.form.get("label") or "").strip()
    if not label or len(label) > 120:
        return _page("settings/keys.html", status=422, keys=_keys(s), label=label,
                     label_error="Give the key a name of 1 to 120 characters, e.g. “Zapier”.")
    tenant = s.get(Tenant, g.user.tenant_id)
    key = auth.create_key(s, tenant, label=label)
    s.commit()
    # Shown once, in this response only (no-store): only its hash is stored.
    return _page("settings/keys.html", status=201, keys=_keys(s), new_key=key, new_label=label)


@bp.post("/keys/<key_id>/revoke")
@auth.admin_required
def revoke_key(key_id):
    _checked_form()
    s = session()
    row = s.scalars(select(ApiKey).where(ApiKey.tenant_id == g.user.tenant_id,
                                         ApiKey.id == key_id)).one_or_none()
    if row is None:
        raise NotFound("No API key with this id.")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        users.revoke_sessions(s, tenant_id=row.tenant_id, api_key_id=row.id)  # its editor sessions end too
    s.commit()
    return redirect(url_for("settings.keys", ok=f"Key “{row.label or row.prefix}” revoked."), 303)


@bp.errorhandler(DomainError)
def _refused(exc):
    return _page("settings/error.html", status=404 if isinstance(exc, NotFound) else 400, message=exc.detail)
