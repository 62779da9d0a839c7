"""The OpenAPI 3.1 document of /api/v1, generated from the same pydantic
models that validate requests and shape responses.

`OPERATIONS` is the one hand-written part: which route takes and returns
which document. tests/test_openapi.py keeps it true: every route is listed,
nothing listed is missing, and real responses validate against it.
"""
from __future__ import annotations

from functools import lru_cache

from flask import Blueprint, jsonify
from pydantic.json_schema import models_json_schema

from . import schemas as S

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"

# (method, path, summary, request model, success status, response model)
OPERATIONS = [
    ("get", "/templates", "List the built-in plan templates", None, 200, S.TemplateList),
    ("post", "/plans", "Create a plan, optionally from a template and linked to a deal", S.PlanCreate, 201, S.PlanOut),
    ("get", "/plans", "List plans, optionally those of one deal", None, 200, S.PlanList),
    ("get", "/plans/{plan_id}", "Get a plan with its stages, milestones and figures", None, 200, S.PlanOut),
    ("patch", "/plans/{plan_id}", "Change a plan's fields", S.PlanPatch, 200, S.PlanOut),
    ("delete", "/plans/{plan_id}", "Delete a plan", None, 204, None),
    ("get", "/plans/{plan_id}/activity", "The plan's activity log, newest first", None, 200, S.ActivityList),
    ("post", "/plans/{plan_id}/stages", "Add a stage", S.StageIn, 201, S.PlanOut),
    ("patch", "/stages/{stage_id}", "Rename or move a stage", S.StagePatch, 200, S.PlanOut),
    ("delete", "/stages/{stage_id}", "Delete an empty stage", None, 204, None),
    ("post", "/plans/{plan_id}/milestones", "Add a milestone to a stage", S.MilestoneIn, 201, S.MilestoneOut),
    ("get", "/milestones/{milestone_id}", "Get a milestone", None, 200, S.MilestoneOut),
    ("patch", "/milestones/{milestone_id}",
     "Change a milestone; a due_date change is recorded in the slip ledger with an optional reason",
     S.MilestonePatch, 200, S.MilestoneOut),
    ("delete", "/milestones/{milestone_id}", "Delete a milestone", None, 204, None),
    ("post", "/plans/{plan_id}/stakeholders", "Add a stakeholder", S.StakeholderIn, 201, S.StakeholderOut),
    ("patch", "/stakeholders/{stakeholder_id}", "Change a stakeholder", S.StakeholderPatch, 200, S.StakeholderOut),
    ("delete", "/stakeholders/{stakeholder_id}", "Remove a stakeholder", None, 204, None),
    ("get", "/plans/{plan_id}/sync", "The plan's CRM sync status: pending pushes, dead letters, stage mismatch",
     None, 200, S.SyncStatus),
    ("post", "/plans/{plan_id}/sync/retry", "Queue dead-lettered pushes of this plan again", None, 200, S.RetryOut),
    ("get", "/installations", "Connected CRM accounts", None, 200, S.InstallationList),
    ("patch", "/installations/{installation_id}", "Switch buyer activity on the CRM timeline on or off",
     S.InstallationPatch, 200, S.InstallationOut),
    ("get", "/installations/{installation_id}/stage-mappings/{pipeline_id}",
     "Which milestones gate which deal stages (a default when the admin has set none)", None, 200,
     S.StageMappingOut),
    ("put", "/installations/{installation_id}/stage-mappings/{pipeline_id}", "Set the stage mapping of a pipeline",
     S.StageMappingIn, 200, S.StageMappingOut),
    ("get", "/installations/{installation_id}/hand-off/{pipeline_id}",
     "After the deal closes won: the onboarding template and the customer-success owner", None, 200,
     S.HandOffOut),
    ("put", "/installations/{installation_id}/hand-off/{pipeline_id}",
     "Set a pipeline's hand-off to onboarding", S.HandOffIn, 200, S.HandOffOut),
]

EXTRA_OPERATIONS: list[tuple] = []  # other blueprints may add (method, path, summary, in, status, out)
EXTRA_PARAMS: dict[str, list[dict]] = {}  # path -> query parameters (blueprints/analytics.py)
# Operations whose body is not JSON: the raw bytes of a file.
RAW_BODY = {"/plans/{plan_id}/blocks/{block_id}/file": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}

LIST_PARAMS = [
    {"name": "provider", "in": "query", "schema": {"enum": ["hubspot", "salesforce"]}},
    {"name": "account_id", "in": "query", "schema": {"type": "string"}},
    {"name": "deal_id", "in": "query", "schema": {"type": "string"}},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
]

ERRORS = {
    "400": "Malformed JSON or body not an object",
    "401": "Missing or invalid API key",
    "404": "Not found (also for another tenant's ids)",
    "409": "Conflict",
    "412": "If-Match names a stale version",
    "415": "Content-Type is not one the endpoint takes (JSON; CSV or XLSX for imports)",
    "422": "Validation failed; `errors` lists the fields",
}


def _problem_responses(problem_ref: dict):
    return {code: {"description": text, "content": {"application/problem+json": {
        "schema": problem_ref}}} for code, text in ERRORS.items()}


@lru_cache(maxsize=1)
def document() -> dict:
    operations = OPERATIONS + EXTRA_OPERATIONS
    models = {(m, "validation") for _, _, _, m, _, _ in operations if isinstance(m, type)}
    models |= {(m, "serialization") for *_, m in operations if isinstance(m, type)}
    models.add((S.Problem, "serialization"))
    refs, defs = models_json_schema(sorted(models, key=lambda mm: (mm[0].__name__, mm[1])), ref_template=REF)
    paths: dict = {}
    for method, path, summary, request_model, status, response_model in operations:
        op: dict = {"summary": summary, "operationId": f"{method}_{path}".replace("/", "_").replace("{", "").replace("}", ""),
                    "responses": _problem_responses(refs[(S.Problem, "serialization")])}
        params = [{"name": p[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in path.split("/") if p.startswith("{")]
        if method == "get" and path == "/plans":
            params += LIST_PARAMS
        if path.endswith("/import"):
            params += IMPORT_PARAMS
        params += EXTRA_PARAMS.get(path, [])
        if method in ("patch", "delete"):
            params.append({"name": "If-Match", "in": "header", "required": False,
                           "schema": {"type": "string"}, "description": "ETag from a previous GET"})
        if params:
            op["parameters"] = params
        if method == "put" and path in RAW_BODY:
            op["requestBody"] = RAW_BODY[path]
        elif isinstance(request_model, tuple):  # files: media types, the body is the file
            op["requestBody"] = {"required": True, "content": {
                media: {"schema": {"type": "string", "contentMediaType": media}}
                for media in request_model}}
        elif request_model:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": refs[(request_model, "validation")]}}}
        if isinstance(response_model, str):  # a file of this media type
            op["responses"][str(status)] = {"description": "The file", "content": {
                response_model: {"schema": {"type": "string", "contentMediaType": response_model}}}}
        elif response_model:
            op["responses"][str(status)] = {"description": "OK", "content": {"application/json": {
                "schema": refs[(response_model, "serialization")]}}}
        else:
            op["responses"][str(status)] = {"description": "Done, no content"}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "MutualPlan API", "version": "1",
                 "description": "Mutual action plans: plans, stages, milestones, stakeholders."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "A per-tenant key from `mutualplan apikey create`"}},
        },
    }


@bp.get("/api/v1/openapi.json")
def openapi_json():
    return jsonify(document())

# ---- buyer links and the editor (webapp/blueprints/buyer.py, editor.py)
OPERATIONS += [
    ("post", "/plans/{plan_id}/share-links",
     "Create a buyer link; its URL is returned only in this response", S.ShareLinkIn, 201, S.ShareLinkCreated),
    ("get", "/plans/{plan_id}/share-links", "List the plan's buyer links (without their URLs)",
     None, 200, S.ShareLinkList),
    ("patch", "/share-links/{link_id}",
     "Change who may open a buyer link (access mode, allowed e-mail domains)", S.ShareLinkPatch, 200,
     S.ShareLinkOut),
    ("delete", "/share-links/{link_id}", "Revoke a buyer link", None, 204, None),
    ("post", "/plans/{plan_id}/editor-link",
     "A signed URL, valid 15 minutes, that opens the rep editor on this plan", None, 200, S.EditorLinkOut),
]

# ---- notifications (webapp/blueprints/notify.py)
OPERATIONS += [
    ("post", "/plans/{plan_id}/nudge", "Send the owners of open buyer-side milestones their "
     "reminder now (at most once per recipient per hour)", None, 202, S.NudgeOut),
]

# ---- content blocks (webapp/blueprints/content.py)
OPERATIONS += [
    ("get", "/plans/{plan_id}/blocks", "The plan's content blocks in order, internal ones included",
     None, 200, S.BlockList),
    ("post", "/plans/{plan_id}/blocks",
     "Add a content block: link, video (YouTube, Vimeo, Loom, Wistia URL), deck, notes or file",
     S.BlockIn, 201, S.BlockOut),
    ("get", "/plans/{plan_id}/blocks/{block_id}", "Get a content block", None, 200, S.BlockOut),
    ("patch", "/plans/{plan_id}/blocks/{block_id}", "Change a content block", S.BlockPatch, 200,
     S.BlockOut),
    ("delete", "/plans/{plan_id}/blocks/{block_id}", "Delete a content block and its file", None,
     204, None),
    ("put", "/plans/{plan_id}/blocks/order", "Reorder the blocks: every block id, in the new order",
     S.BlockOrder, 200, S.BlockList),
    ("put", "/plans/{plan_id}/blocks/{block_id}/file",
     ("Upload (or replace) a deck's or file's content as the raw body; `?name=` names it. The type "
     "is read from the bytes (PDF, PNG, JPEG, DOCX, XLSX, PPTX); at most 25 MB"), None, 200,
     S.BlockOut),
    ("get", "/plans/{plan_id}/blocks/{block_id}/file",
     "303 to a signed download URL valid 60 seconds", None, 303, None),
]

# ---- spreadsheets: export and import (webapp/spreadsheets.py)
CSV, XLSX = "text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
OPERATIONS += [
    ("get", "/plans/{plan_id}/export.csv",
     ("The plan as CSV: one row per milestone (title, stage, owner name, owner email, owner "
      "side, due date, status, risk, notes, internal); importing it gives the same plan"),
     None, 200, CSV),
    ("get", "/plans/{plan_id}/export.xlsx", "The plan as an Excel workbook, same columns as the CSV",
     None, 200, XLSX),
    ("post", "/plans/{plan_id}/import",
     ("Import milestones from a CSV or XLSX file sent as the body (dry_run=true: only the "
      "preview; nothing is imported when a row has a problem unless mode=valid_only)"),
     (CSV, XLSX), 200, S.ImportOut),
    ("post", "/plans/import", "Create a plan from a CSV or XLSX file sent as the body (as above)",
     (CSV, XLSX), 201, S.ImportOut),
]
IMPORT_PARAMS = [
    {"name": "dry_run", "in": "query", "schema": {"enum": ["true", "false"]},
     "description": "true: answer the preview (rows and their problems) and write nothing"},
    {"name": "mode", "in": "query", "schema": {"enum": ["all", "valid_only"]},
     "description": "all (default): import every row or none; valid_only: skip rows with problems"},
    {"name": "mapping", "in": "query", "schema": {"type": "string"},
     "description": "Columns by header, overriding the guess: `title=Task,due_date=Target date`; "
                    "fields: title, stage, owner_name, owner_email, owner_side, due_date, status, "
                    "risk, notes, internal"},
    {"name": "title", "in": "query", "schema": {"type": "string"},
     "description": "POST /plans/import only: the new plan's title (default: Imported plan)"},
]
