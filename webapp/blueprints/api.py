"""The public REST API under /api/v1 (API-key authenticated)."""
from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from connector import errors as crm_errors

from .. import mirror, onboarding, outbox, plan_templates, plans, spreadsheets, sync, timeline
from ..auth import api_key_required
from ..db import session
from ..errors import Invalid, NotFound, ProblemError
from ..models import Installation, StageMapping
from ..schemas import (
    ActivityList,
    HandOffIn,
    HandOffOut,
    ImportOut,
    InstallationList,
    InstallationOut,
    InstallationPatch,
    RetryOut,
    StageMappingIn,
    StageMappingOut,
    SyncStatus,
    MilestoneIn,
    MilestoneOut,
    MilestonePatch,
    PlanCreate,
    PlanList,
    PlanOut,
    PlanPatch,
    StageIn,
    StagePatch,
    StakeholderIn,
    StakeholderOut,
    StakeholderPatch,
    TemplateList,
)
from ..web import UnsupportedMediaType, expected_version, json_body, query_int, render, today

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _tenant() -> str:
    return g.principal.tenant_id


def _actor() -> str:
    return g.principal.actor


def _plan_response(plan_id: str, status=200):
    # Reload after a commit: collections held in memory do not notice deletes.
    s = session()
    s.expire_all()
    plan = plans.get_plan(s, _tenant(), plan_id)
    return render(PlanOut, plans.document(s, plan, today()), status, etag=plan.version)


def _stakeholder_doc(p):
    return {"id": p.id, "name": p.name, "title": p.title, "email": p.email, "side": p.side,
            "role": p.role, "version": p.version}


@bp.get("/templates")
@api_key_required
def list_templates():
    return render(TemplateList, {"items": plan_templates.summaries()})


@bp.post("/plans")
@api_key_required
def create_plan():
    data = json_body(PlanCreate)
    s = session()
    plan = plans.create_plan(s, _tenant(), data, _actor(), today())
    s.commit()
    response = _plan_response(plan.id, 201)
    response.headers["Location"] = f"/api/v1/plans/{plan.id}"
    return response


@bp.get("/plans")
@api_key_required
def list_plans():
    unknown = set(request.args) - {"provider", "account_id", "deal_id", "limit", "offset"}
    if unknown:
        raise Invalid(sorted(unknown)[0], "unknown query parameter")
    if request.args.get("provider") not in (None, "hubspot", "salesforce"):
        raise Invalid("provider", "must be hubspot or salesforce")
    rows = plans.list_plans(
        session(), _tenant(), provider=request.args.get("provider"),
        account_id=request.args.get("account_id"), deal_id=request.args.get("deal_id"),
        limit=query_int("limit", 50, 1, 200), offset=query_int("offset", 0, 0, 10**9))
    return render(PlanList, {"items": [plans.summary_document(p, today()) for p in rows]})


@bp.get("/plans/<plan_id>")
@api_key_required
def get_plan(plan_id):
    return _plan_response(plan_id)


@bp.patch("/plans/<plan_id>")
@api_key_required
def update_plan(plan_id):
    data = json_body(PlanPatch)
    s = session()
    plan = plans.get_plan(s, _tenant(), plan_id)
    data.version = expected_version(data.version)
    plans.update_plan(s, plan, data, _actor())
    s.commit()
    return _plan_response(plan.id)


@bp.delete("/plans/<plan_id>")
@api_key_required
def delete_plan(plan_id):
    s = session()
    plan = plans.get_plan(s, _tenant(), plan_id, full=False)
    plans.check_version(expected_version(None), plan.version)
    plans.delete_plan(s, plan)
    s.commit()
    return "", 204


@bp.get("/plans/<plan_id>/activity")
@api_key_required
def plan_activity(plan_id):
    s = session()
    plan = plans.get_plan(s, _tenant(), plan_id, full=False)
    rows = plans.activity(s, plan, limit=query_int("limit", 100, 1, 500))
    items = [{"id": a.id, "actor": a.actor, "action": a.action, "subject_id": a.subject_id,
              "detail": a.detail, "at": a.at} for a in rows]
    return render(ActivityList, {"items": items})


# stages

@bp.post("/plans/<plan_id>/stages")
@api_key_required
def add_stage(plan_id):
    data = json_body(StageIn)
    s = session()
    plan = plans.get_plan(s, _tenant(), plan_id)
    plans.add_stage(s, plan, data, _actor())
    s.commit()
    return _plan_response(plan.id, 201)


@bp.patch("/stages/<stage_id>")
@api_key_required
def update_stage(stage_id):
    data = json_body(StagePatch)
    s = session()
    stage = plans.get_stage(s, _tenant(), stage_id)
    data.version = expected_version(data.version)  # the stage's version (stages[].version)
    plans.update_stage(s, stage, data, _actor())
    s.commit()
    return _plan_response(stage.plan_id)


@bp.delete("/stages/<stage_id>")
@api_key_required
def delete_stage(stage_id):
    s = session()
    stage = plans.get_stage(s, _tenant(), stage_id)
    plans.check_version(expected_version(None), stage.version)
    plans.delete_stage(s, stage, _actor())
    s.commit()
    return "", 204


# milestones

def _milestone_response(m, status=200):
    return render(MilestoneOut, plans.milestone_document(m, today()), status, etag=m.version)


@bp.post("/plans/<plan_id>/milestones")
@api_key_required
def add_milestone(plan_id):
    data = json_body(MilestoneIn)
    s = session()
    plan = plans.get_plan(s, _tenant(), plan_id)
    m = plans.add_milestone(s, plan, data, _actor())
    s.commit()
    response = _milestone_response(m, 201)
    response.headers["Location"] = f"/api/v1/milestones/{m.id}"
    return response


@bp.get("/milestones/<milestone_id>")
@api_key_required
def get_milestone(milestone_id):
    return _milestone_response(plans.get_milestone(session(), _tenant(), milestone_id))


@bp.patch("/milestones/<milestone_id>")
@api_key_required
def update_milestone(milestone_id):
    data = json_body(MilestonePatch)
    s = session()
    m = plans.get_milestone(s, _tenant(), milestone_id)
    data.version = expected_version(data.version)
    plans.update_milestone(s, m, data, _actor())
    s.commit()
    return _milestone_response(m)


@bp.delete("/milestones/<milestone_id>")
@api_key_required
def delete_milestone(milestone_id):
    s = session()
    m = plans.get_milestone(s, _tenant(), milestone_id)
    plans.check_version(expected_version(None), m.version)
    plans.delete_milestone(s, m, _actor())
    s.commit()
    return "", 204


# stakeholders

@bp.post("/plans/<plan_id>/stakeholders")
@api_key_required
def add_stakeholder(plan_id):
    data = json_body(StakeholderIn)
    s = session()
    plan = plans.get_plan(s, _tenant(), plan_id)
    person = plans.add_stakeholder(s, plan, data, _actor())
    s.commit()
    return render(StakeholderOut, _stakeholder_doc(person), 201, etag=person.version)


@bp.patch("/stakeholders/<stakeholder_id>")
@api_key_required
def update_stakeholder(stakeholder_id):
    data = json_body(StakeholderPatch)
    s = session()
    person = plans.get_stakeholder(s, _tenant(), stakeholder_id)
    data.version = expected_version(data.version)
    plans.update_stakeholder(s, person, data, _actor())
    s.commit()
    return render(StakeholderOut, _stakeholder_doc(person), etag=person.version)


@bp.delete("/stakeholders/<stakeholder_id>")
@api_key_required
def delete_stakeholder(stakeholder_id):
    s = session()
    person = plans.get_stakeholder(s, _tenant(), stakeholder_id)
    plans.check_version(expected_version(None), person.version)
    plans.delete_stakeholder(s, person, _actor())
    s.commit()
    return "", 204


# sync status and stage mappings

@bp.get("/plans/<plan_id>/sync")
@api_key_required
def plan_sync(plan_id):
    s = session()
    plan = plans.get_plan(s, _tenant(), plan_id, full=False)
    return render(SyncStatus, sync.status(s, plan))


@bp.post("/plans/<plan_id>/sync/retry")
@api_key_required
def plan_sync_retry(plan_id):
    s = session()
    plan = plans.get_plan(s, _tenant(), plan_id, full=False)
    count = outbox.retry_dead(s, _tenant(), plan.id)
    s.commit()
    return render(RetryOut, {"requeued": count})


def _installation(installation_id: str) -> Installation:
    row = session().scalars(select(Installation).where(
        Installation.tenant_id == _tenant(), Installation.id == installation_id)).one_or_none()
    if row is None:
        raise NotFound("No installation with this id.")
    return row


@bp.get("/installations")
@api_key_required
def list_installations():
    rows = session().scalars(select(Installation).where(Installation.tenant_id == _tenant())
                             .order_by(Installation.created_at)).all()
    return render(InstallationList, {"items": [_installation_document(i) for i in rows]})


def _installation_document(i: Installation) -> dict:
    return {"id": i.id, "provider": i.provider, "account_id": i.account_id, "status": i.status,
            "status_reason": i.status_reason, "mode": (i.settings or {}).get("mode"),
            "last_pulled_at": i.last_pulled_at, "last_pull_error": i.last_pull_error or "",
            "next_pull_at": i.next_pull_at,
            "sync_problems": (i.settings or {}).get("sync_problems", []),
            "timeline": timeline.switched_on(i), "created_at": i.created_at}


@bp.patch("/installations/<installation_id>")
@api_key_required
def patch_installation(installation_id):
    data = json_body(InstallationPatch)
    s = session()
    row = _installation(installation_id)
    timeline.set_enabled(row, data.timeline)
    s.commit()
    return render(InstallationOut, _installation_document(row))


def _pipeline_stages(installation: Installation, pipeline_id: str):
    """The pipeline's stages; a pipeline the CRM says does not exist is the caller's mistake
    (422), unlike a CRM that does not answer (502/503, errors.py)."""
    try:
        return sync.pipeline_stages(session(), installation, sync.connector_for(installation),
                                    pipeline_id)
    except crm_errors.NotFound:
        raise Invalid("pipeline_id", f"the {installation.provider} account has no pipeline "
                                     f"{pipeline_id!r}") from None


def _mapping_document(installation: Installation, pipeline_id: str) -> dict:
    s = session()
    stages = _pipeline_stages(installation, pipeline_id)
    row = s.scalars(select(StageMapping).where(StageMapping.installation_id == installation.id,
                                               StageMapping.pipeline_id == pipeline_id)).one_or_none()
    if row is None:
        default = mirror.default_mapping(stages)
        gates, close, allow, is_default = default.gates, next(iter(default.close_milestones), None), False, True
    else:
        gates, close, allow, is_default = row.gates, row.close_milestone, row.allow_closed, False
    return {"pipeline_id": pipeline_id, "gates": gates, "close_milestone": close, "allow_closed": allow,
            "is_default": is_default, "stages": [vars(st) for st in stages]}


@bp.get("/installations/<installation_id>/stage-mappings/<pipeline_id>")
@api_key_required
def get_stage_mapping(installation_id, pipeline_id):
    document = _mapping_document(_installation(installation_id), pipeline_id)
    session().commit()  # the pipeline cache, when it was just read
    return render(StageMappingOut, document)


@bp.put("/installations/<installation_id>/stage-mappings/<pipeline_id>")
@api_key_required
def put_stage_mapping(installation_id, pipeline_id):
    data = json_body(StageMappingIn)
    s = session()
    installation = _installation(installation_id)
    stages = _pipeline_stages(installation, pipeline_id)
    known = {st.id for st in stages}
    for title, stage_id in data.gates.items():
        if stage_id not in known:
            raise Invalid(f"gates.{title}", f"{stage_id!r} is not a stage of pipeline {pipeline_id}")
    row = s.scalars(select(StageMapping).where(StageMapping.installation_id == installation.id,
                                               StageMapping.pipeline_id == pipeline_id)).one_or_none()
    if row is None:
        row = StageMapping(tenant_id=_tenant(), installation_id=installation.id, pipeline_id=pipeline_id)
        s.add(row)
    row.gates, row.close_milestone, row.allow_closed = dict(data.gates), data.close_milestone, data.allow_closed
    s.commit()
    return render(StageMappingOut, _mapping_document(installation, pipeline_id))


@bp.get("/installations/<installation_id>/hand-off/<pipeline_id>")
@api_key_required
def get_hand_off(installation_id, pipeline_id):
    installation = _installation(installation_id)
    return render(HandOffOut, {"pipeline_id": pipeline_id,
                               **vars(onboarding.hand_off(installation, pipeline_id))})


@bp.put("/installations/<installation_id>/hand-off/<pipeline_id>")
@api_key_required
def put_hand_off(installation_id, pipeline_id):
    data = json_body(HandOffIn)
    installation = _installation(installation_id)
    _pipeline_stages(installation, pipeline_id)  # an unknown pipeline is refused
    saved = onboarding.save_hand_off(session(), installation, pipeline_id, data.template,
                                     data.cs_owner_field, data.cs_owner_default)
    session().commit()
    return render(HandOffOut, {"pipeline_id": pipeline_id, **vars(saved)})


# spreadsheets: export and import (webapp/spreadsheets.py)

class ImportRefused(ProblemError):
    status, slug, title = 422, "import-refused", "The file has problems; nothing was imported"


def _export_name(plan, ext: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", plan.title).strip("-")[:60] or "plan"
    return f"{stem}.{ext}"


@bp.get("/plans/<plan_id>/export.csv")
@api_key_required
def export_csv(plan_id):
    plan = plans.get_plan(session(), _tenant(), plan_id)
    body = spreadsheets.to_csv(spreadsheets.export_rows(plan))
    return Response(body, mimetype=spreadsheets.CSV_TYPE, headers={
        "Content-Disposition": f'attachment; filename="{_export_name(plan, "csv")}"'})


@bp.get("/plans/<plan_id>/export.xlsx")
@api_key_required
def export_xlsx(plan_id):
    plan = plans.get_plan(session(), _tenant(), plan_id)
    body = spreadsheets.to_xlsx(spreadsheets.export_rows(plan), plan.title)
    return Response(body, mimetype=spreadsheets.XLSX_TYPE, headers={
        "Content-Disposition": f'attachment; filename="{_export_name(plan, "xlsx")}"'})


IMPORT_PARAMS = {"dry_run", "mode", "mapping", "title"}


def _import_options() -> tuple[bool, bool, dict]:
    unknown = set(request.args) - IMPORT_PARAMS
    if unknown:
        raise Invalid(min(unknown), "unknown query parameter")
    dry_run = request.args.get("dry_run", "false")
    if dry_run not in ("true", "false"):
        raise Invalid("dry_run", "must be true or false")
    mode = request.args.get("mode", "all")
    if mode not in ("all", "valid_only"):
        raise Invalid("mode", "must be all (nothing is imported when a row has a problem) "
                              "or valid_only")
    try:
        mapping = spreadsheets.parse_mapping(request.args.get("mapping"))
    except spreadsheets.Unreadable as exc:
        raise Invalid("mapping", str(exc)) from None
    return dry_run == "true", mode == "valid_only", mapping


class FileTooLarge(ProblemError):
    status, slug, title = 413, "file-too-large", "The file is too large"


def _file_body() -> bytes:
    """The uploaded file, or a 413 problem that says the limit and what to do."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if (request.content_length or 0) > limit:
        raise FileTooLarge(spreadsheets.too_large(request.content_length, limit))
    try:
        return request.get_data()
    except RequestEntityTooLarge:  # a body without Content-Length, cut at the limit
        raise FileTooLarge(spreadsheets.too_large(None, limit)) from None


def _preview_of_body(plan, mapping):
    body = _file_body()
    try:
        table = spreadsheets.read_table(body, request.mimetype)
        return spreadsheets.preview(table, mapping, plan)
    except spreadsheets.Unreadable as exc:
        if request.mimetype not in (spreadsheets.CSV_TYPE, spreadsheets.XLSX_TYPE,
                                    "application/csv", "text/plain"):
            raise UnsupportedMediaType(f"Send the file as the body: {exc}.") from None
        raise Invalid("(body)", str(exc)) from None


def _import(plan, status: int):
    """Preview, or import (all rows or the valid ones) in this request's one transaction."""
    dry_run, valid_only, mapping = _import_options()
    s = session()
    result = _preview_of_body(plan, mapping)
    document = {**result.document(), "imported": 0, "plan": None}
    if dry_run:
        s.rollback()
        return render(ImportOut, document)
    blocking = [p for p in result.problems if p["row"] is None or not valid_only]
    if blocking:
        s.rollback()
        errors = [{"field": f"row {p['row']}" if p["row"] else "(file)", "message": p["message"]}
                  for p in blocking]
        raise ImportRefused(f"{len(blocking)} problem(s); nothing was imported. "
                            + "; ".join(e["field"] + ": " + e["message"] for e in errors[:3]),
                            errors=errors)
    if plan is None:
        title = request.args.get("title") or "Imported plan"
        plan = plans.create_plan(s, _tenant(), PlanCreate.model_validate({"title": title}),
                                 _actor(), today())
    document["imported"] = spreadsheets.import_rows(s, plan, result.valid_rows, _actor())
    s.commit()
    s.expire_all()
    plan = plans.get_plan(s, _tenant(), plan.id)
    document["plan"] = plans.document(s, plan, today())
    response = render(ImportOut, document, status, etag=plan.version)
    if status == 201:
        response.headers["Location"] = f"/api/v1/plans/{plan.id}"
    return response


@bp.post("/plans/<plan_id>/import")
@api_key_required
def import_into_plan(plan_id):
    return _import(plans.get_plan(session(), _tenant(), plan_id), 200)


@bp.post("/plans/import")
@api_key_required
def import_new_plan():
    return _import(None, 201)
