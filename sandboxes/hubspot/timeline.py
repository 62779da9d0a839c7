"""Timeline events: an app's event templates (developer API key) and the events it sends to a
portal's CRM records (OAuth token with the `timeline` scope).

Spec: PublicApiSpecs/CRM/Timeline/Rollouts/147898/v3/timeline.json (contract-checked like
every other route). Guide: https://developers.hubspot.com/docs/api/crm/timeline —
templates belong to the app ("event templates are created per app", `/{appId}/event-templates`,
authenticated with the app's developer API key `?hapikey=`), each declares the `tokens` an
event fills in; an event names its template, the record (`objectId`), and its token values;
unknown tokens are refused. The spec's TimelineEvent.id says "You can also use `{{uuid}}`
anywhere in the ID to generate a unique string, guaranteeing uniqueness": ids are unique, so the
sandbox refuses an id already used for the template. HubSpot documents no code for that; the
sandbox's choice is a 409 CONFLICT for one event, and a CONFLICT entry of a 207 in a batch.
"""

from __future__ import annotations

from typing import Any

from .sandbox import ApiError, _Ctx, _iso

TOKEN_TYPES = ("date", "enumeration", "number", "string")
# "Up to 100 events can be included in a single batch"
# (https://developers.hubspot.com/docs/methods/timeline/batch-create-or-update-events, the only
# page that states a number; the v3 reference states none), so the sandbox holds v3 to it too.
EVENT_BATCH_LIMIT = 100


class TimelineHandlers:
    # ---- templates (developer API key) -----------------------------------------------------
    def _app(self, ctx: _Ctx, app_id: int):
        app = self.sb.apps.get(int(app_id))
        key = ctx.request.args.get("hapikey", "")
        if app is None or not key or key != app.developer_api_key:
            raise ApiError(
                401,
                "INVALID_AUTHENTICATION",
                "The API key provided is invalid. View or manage your API key here: "
                "https://app.hubspot.com/l/api-key/",
            )
        return app

    def templates_list(self, ctx: _Ctx, app_id: int):
        app = self._app(ctx, app_id)
        return 200, {"results": list(self.sb.event_templates.get(app.app_id, {}).values())}

    def template_create(self, ctx: _Ctx, app_id: int):
        app = self._app(ctx, app_id)
        body = ctx.json
        if body.get("objectType", "").upper() not in ("CONTACT", "COMPANY", "DEAL", "TICKET",
                                                      "CONTACTS", "COMPANIES", "DEALS", "TICKETS"):
            raise ApiError(400, "VALIDATION_ERROR", f"Unsupported objectType {body.get('objectType')!r}")
        tokens = []
        for t in body.get("tokens") or []:
            if t.get("type") not in TOKEN_TYPES:
                raise ApiError(400, "VALIDATION_ERROR", f"Token type {t.get('type')!r} is invalid")
            tokens.append({"name": t["name"], "label": t.get("label") or t["name"],
                           "type": t["type"], "options": t.get("options") or [],
                           "createdAt": _iso(self.sb.now()), "updatedAt": _iso(self.sb.now())})
        templates = self.sb.event_templates.setdefault(app.app_id, {})
        tid = str(next(self.sb._ids))
        templates[tid] = {
            "id": tid, "name": body["name"], "objectType": body["objectType"].upper(),
            "headerTemplate": body.get("headerTemplate") or "",
            "detailTemplate": body.get("detailTemplate") or "", "tokens": tokens,
            "createdAt": _iso(self.sb.now()), "updatedAt": _iso(self.sb.now()),
        }
        return 201, templates[tid]

    # ---- events (OAuth, scope `timeline`) --------------------------------------------------
    def _template_of(self, ctx: _Ctx, template_id: str) -> dict:
        template = self.sb.event_templates.get(ctx.token.app_id, {}).get(str(template_id))
        if template is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Event template {template_id} not found")
        return template

    def _event(self, ctx: _Ctx, inp: dict) -> dict:
        template = self._template_of(ctx, inp.get("eventTemplateId", ""))
        tid = {"DEAL": "0-3", "DEALS": "0-3", "CONTACT": "0-1", "CONTACTS": "0-1",
               "COMPANY": "0-2", "COMPANIES": "0-2", "TICKET": "0-5", "TICKETS": "0-5"}[
            template["objectType"]]
        object_id = str(inp.get("objectId") or "")
        rec = ctx.portal.objects.get(tid, {}).get(object_id)
        if rec is None or rec["archived"]:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"No {template['objectType']} {object_id!r}")
        declared = {t["name"]: t for t in template["tokens"]}
        tokens: dict[str, Any] = inp.get("tokens") or {}
        unknown = sorted(set(tokens) - set(declared))
        if unknown:
            raise ApiError(400, "VALIDATION_ERROR", f"Unknown token(s) {unknown} for template "
                           f"{template['id']}")
        event_id = str(inp.get("id") or f"sbx-{next(self.sb._ids)}")
        log = self.sb.timeline_events.setdefault(ctx.portal.portal_id, {})
        if (template["id"], event_id) in log:
            raise ApiError(409, "CONFLICT", f"Event {event_id} already exists for template "
                           f"{template['id']}")
        event = {
            "id": event_id, "eventTemplateId": template["id"], "objectType": template["objectType"],
            "objectId": object_id, "tokens": {k: str(v) for k, v in tokens.items()},
            "extraData": inp.get("extraData") or {},
            "timestamp": inp.get("timestamp") or _iso(self.sb.now()),
            "createdAt": _iso(self.sb.now()),
        }
        log[(template["id"], event_id)] = event
        return event

    def event_create(self, ctx: _Ctx):
        self._need(ctx, "timeline")
        return 201, self._event(ctx, ctx.json)

    def events_batch_create(self, ctx: _Ctx):
        self._need(ctx, "timeline")
        inputs = ctx.json.get("inputs") if isinstance(ctx.json, dict) else None
        if not isinstance(inputs, list) or len(inputs) > EVENT_BATCH_LIMIT:
            raise ApiError(400, "VALIDATION_ERROR",
                           f"'inputs' must be a list of at most {EVENT_BATCH_LIMIT} events")
        started = _iso(self.sb.now())
        results, errors = [], []
        for inp in inputs:
            try:
                results.append(self._event(ctx, inp))
            except ApiError as e:
                errors.append({"status": "error", "category": e.body["category"],
                               "message": e.body["message"], "context": {"id": [str(inp.get("id"))]},
                               "errors": [], "links": {}})
        out = {"status": "COMPLETE", "results": results, "startedAt": started,
               "completedAt": _iso(self.sb.now())}
        if errors:
            return 207, {**out, "errors": errors, "numErrors": len(errors)}
        return 201, out

    def event_get(self, ctx: _Ctx, template_id: str, event_id: str):
        self._need(ctx, "timeline", "crm.objects.deals.read")
        event = self.sb.timeline_events.get(ctx.portal.portal_id, {}).get((str(template_id), event_id))
        if event is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Event {event_id} not found")
        return 200, event
