"""The portal's data model: custom object schemas, properties, groups, pipelines."""

from __future__ import annotations

import logging
import re

from .sandbox import (
    ApiError,
    Portal,
    _batch_meta,
    _Ctx,
    _iso,
    _std_error,
)

log = logging.getLogger("sandboxes.hubspot")


class SchemaHandlers:
    # ---- schemas -------------------------------------------------------------------------
    def _schema_out(self, portal: Portal, sch: dict) -> dict:
        tid = sch["objectTypeId"]
        props = [p for p in portal.properties[tid].values() if not p["archived"]]
        return {
            **{k: v for k, v in sch.items() if not k.startswith("_")},
            "properties": props,
            "associations": [dict(a) for a in sch["associations"]],
        }

    def schemas_list(self, ctx: _Ctx):
        self._need(ctx, "crm.schemas.custom.read", "crm.objects.custom.read")
        archived = self._archived_arg(ctx)
        return 200, {
            "results": [
                self._schema_out(ctx.portal, s)
                for s in ctx.portal.schemas.values()
                if s["archived"] == archived
            ]
        }

    def _schema(self, ctx: _Ctx, object_type: str) -> dict:
        tid = self.sb._resolve(ctx.portal, object_type)
        if tid is None or tid not in ctx.portal.schemas:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find object type {object_type}")
        return ctx.portal.schemas[tid]

    def schema_get(self, ctx: _Ctx, object_type: str):
        self._need(ctx, "crm.schemas.custom.read", "crm.objects.custom.read")
        return 200, self._schema_out(ctx.portal, self._schema(ctx, object_type))

    def schema_create(self, ctx: _Ctx):
        sb, portal, body = self.sb, ctx.portal, ctx.json
        self._need(ctx, "crm.schemas.custom.write")
        if not portal.is_enterprise:
            raise ApiError(
                403,
                "FORBIDDEN",
                f"Portal {portal.portal_id} does not have access to custom objects. "
                "Custom objects require an Enterprise subscription.",
            )
        name = body.get("name", "")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name or ""):
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Invalid object type name {name!r}: use "
                "letters, numbers and underscores, starting with a letter.",
            )
        if any(s["name"] == name for s in portal.schemas.values()):
            raise ApiError(
                409,
                "OBJECT_ALREADY_EXISTS",
                f"An object type with the name {name!r} already exists.",
            )
        props = body.get("properties") or []
        names = [p.get("name") for p in props]
        if len(set(names)) != len(names):
            raise ApiError(400, "VALIDATION_ERROR", "Duplicate property names in schema")
        if sum(1 for p in props if p.get("hasUniqueValue")) > 10:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "At most 10 unique value properties are allowed per object.",
            )
        for key in ("requiredProperties", "searchableProperties", "secondaryDisplayProperties"):
            missing = [n for n in body.get(key) or [] if n not in names]
            if missing:
                raise ApiError(
                    400, "VALIDATION_ERROR", f"{key} refers to unknown properties: {missing}"
                )
        pdp = body.get("primaryDisplayProperty")
        if pdp and pdp not in names:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"primaryDisplayProperty {pdp!r} is not one of the schema's properties",
            )
        targets = []
        for other in body.get("associatedObjects") or []:
            to = sb._resolve(portal, other)
            if to is None:
                raise ApiError(400, "VALIDATION_ERROR", f"Unknown associated object {other!r}")
            targets.append(to)
        tid = f"2-{next(sb._type_ids)}"
        ts = _iso(sb.now())
        portal.objects[tid] = {}
        portal.properties[tid] = {}
        portal.groups[tid] = {}
        group = f"{name}_information"
        sb._add_group(
            portal, tid, group, f"{body.get('labels', {}).get('singular', name)} information"
        )
        for p in props:
            sb._add_property(portal, tid, {"groupName": group, **p})
        for pname, label, ptype in (
            ("hs_object_id", "Record ID", "number"),
            ("hs_createdate", "Create date", "datetime"),
            ("hs_lastmodifieddate", "Last modified date", "datetime"),
        ):
            sb._add_property(
                portal,
                tid,
                {
                    "name": pname,
                    "label": label,
                    "type": ptype,
                    "fieldType": "number" if ptype == "number" else "date",
                    "groupName": group,
                },
                hubspot=True,
            )
        sch = {
            "id": tid.split("-")[1],
            "objectTypeId": tid,
            "name": name,
            "fullyQualifiedName": f"p{portal.portal_id}_{name}",
            "labels": body.get("labels", {}),
            "description": body.get("description", ""),
            "primaryDisplayProperty": pdp or names[0] if names else "hs_object_id",
            "secondaryDisplayProperties": body.get("secondaryDisplayProperties") or [],
            "searchableProperties": body.get("searchableProperties") or [],
            "requiredProperties": body.get("requiredProperties") or [],
            "archived": False,
            "createdAt": ts,
            "updatedAt": ts,
            "associations": [],
        }
        portal.schemas[tid] = sch
        for to in targets:
            self._schema_assoc(portal, sch, to, None)
        return 201, self._schema_out(portal, sch)

    def _schema_assoc(self, portal: Portal, sch: dict, to: str, name: str | None) -> dict:
        tid = sch["objectTypeId"]
        name = name or f"{sch['name']}_to_{self.sb._type_name(portal, to)}"
        fwd, _inv = self.sb._define_assoc(portal, tid, to, "USER_DEFINED", None, name)
        ts = _iso(self.sb.now())
        a = {
            "id": str(fwd),
            "fromObjectTypeId": tid,
            "toObjectTypeId": to,
            "name": name,
            "createdAt": ts,
            "updatedAt": ts,
        }
        sch["associations"].append(a)
        return a

    def schema_assoc_create(self, ctx: _Ctx, object_type: str):
        self._need(ctx, "crm.schemas.custom.write")
        sch = self._schema(ctx, object_type)
        body = ctx.json
        frm = self.sb._resolve(ctx.portal, body.get("fromObjectTypeId", ""))
        to = self.sb._resolve(ctx.portal, body.get("toObjectTypeId", ""))
        if frm != sch["objectTypeId"] or to is None:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "fromObjectTypeId must be the schema's type and toObjectTypeId a known object type",
            )
        return 201, self._schema_assoc(ctx.portal, sch, to, body.get("name"))

    def schema_patch(self, ctx: _Ctx, object_type: str):
        self._need(ctx, "crm.schemas.custom.write")
        sch = self._schema(ctx, object_type)
        body = ctx.json
        known = set(ctx.portal.properties[sch["objectTypeId"]])
        for key in ("requiredProperties", "searchableProperties", "secondaryDisplayProperties"):
            if key in body:
                missing = [n for n in body[key] if n not in known]
                if missing:
                    raise ApiError(
                        400, "VALIDATION_ERROR", f"{key} refers to unknown properties: {missing}"
                    )
                sch[key] = list(body[key])
        for key in ("primaryDisplayProperty", "description", "labels"):
            if key in body:
                sch[key] = body[key]
        sch["updatedAt"] = _iso(self.sb.now())
        out = {k: v for k, v in sch.items() if k not in ("associations",)}
        out["portalId"] = ctx.portal.portal_id
        return 200, out

    def schema_delete(self, ctx: _Ctx, object_type: str):
        self._need(ctx, "crm.schemas.custom.write")
        portal = ctx.portal
        tid = self.sb._resolve(portal, object_type)
        if tid is None:
            m = re.fullmatch(r"2-\d+", object_type)
            tid = object_type if m and object_type in portal.schemas else None
        if tid is None or tid not in portal.schemas:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find object type {object_type}")
        if any(not r["archived"] for r in portal.objects[tid].values()):
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "Delete all records of this object type before deleting the schema.",
            )
        if self._archived_arg(ctx):
            del portal.schemas[tid]
        else:
            portal.schemas[tid]["archived"] = True
        return 204, None

    # ---- properties ----------------------------------------------------------------------
    def props_list(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, schema=True)
        archived = self._archived_arg(ctx)
        return 200, {
            "results": [p for p in ctx.portal.properties[tid].values() if p["archived"] == archived]
        }

    def _create_prop(self, ctx: _Ctx, tid: str, spec: dict) -> dict:
        portal = ctx.portal
        name = spec.get("name", "")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Invalid property name {name!r}: lowercase "
                "letters, numbers and underscores, starting with a letter.",
            )
        existing = portal.properties[tid].get(name)
        if existing and not existing["archived"]:
            raise ApiError(409, "OBJECT_ALREADY_EXISTS", f"Property named '{name}' already exists.")
        group = spec.get("groupName", "")
        if group not in portal.groups[tid] or portal.groups[tid][group]["archived"]:
            raise ApiError(400, "VALIDATION_ERROR", f"Property group {group!r} does not exist.")
        if (
            spec.get("hasUniqueValue")
            and sum(1 for p in portal.properties[tid].values() if p["hasUniqueValue"]) >= 10
        ):
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "At most 10 unique value properties are allowed per object.",
            )
        if (
            spec.get("type") == "enumeration"
            and not spec.get("options")
            and spec.get("fieldType") != "booleancheckbox"
        ):
            raise ApiError(400, "VALIDATION_ERROR", f"Enumeration property {name!r} needs options")
        return self.sb._add_property(portal, tid, spec)

    def prop_create(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        return 201, self._create_prop(ctx, tid, ctx.json)

    def props_batch_create(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        started = _iso(self.sb.now())
        results, errors = [], []
        for spec in self._inputs(ctx):
            try:
                results.append(self._create_prop(ctx, tid, spec))
            except ApiError as e:
                errors.append(
                    _std_error(
                        "error",
                        e.body["category"],
                        e.body["message"],
                        {"name": [str(spec.get("name"))]},
                    )
                )
        body = {**_batch_meta(started, self.sb), "results": results}
        if errors:
            return 207, {**body, "numErrors": len(errors), "errors": errors}
        return 201, body

    def props_batch_read(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, schema=True)
        started = _iso(self.sb.now())
        names = [i.get("name") for i in self._inputs(ctx)]
        props = ctx.portal.properties[tid]
        found = [props[n] for n in names if n in props and not props[n]["archived"]]
        missing = [n for n in names if n not in props or props[n]["archived"]]
        body = {**_batch_meta(started, self.sb), "results": found}
        if missing:
            return 207, {
                **body,
                "numErrors": 1,
                "errors": [
                    _std_error(
                        "error", "OBJECT_NOT_FOUND", "Properties not found", {"names": missing}
                    )
                ],
            }
        return 200, body

    def _prop(self, ctx: _Ctx, tid: str, name: str) -> dict:
        p = ctx.portal.properties[tid].get(name)
        if p is None or p["archived"]:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name}")
        return p

    def prop_get(self, ctx: _Ctx, object_type: str, property_name: str):
        tid = self._type(ctx, object_type, schema=True)
        return 200, self._prop(ctx, tid, property_name)

    def prop_patch(self, ctx: _Ctx, object_type: str, property_name: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        p = self._prop(ctx, tid, property_name)
        if p["hubspotDefined"]:
            raise ApiError(400, "VALIDATION_ERROR", "HubSpot-defined properties can't be changed")
        body = ctx.json
        if "options" in body:
            p["options"] = [
                {
                    "label": o.get("label"),
                    "value": str(o.get("value")),
                    "displayOrder": o.get("displayOrder", i),
                    "hidden": bool(o.get("hidden", False)),
                }
                for i, o in enumerate(body["options"])
            ]
        for k in (
            "label",
            "description",
            "groupName",
            "displayOrder",
            "hidden",
            "formField",
            "fieldType",
            "type",
            "numberDisplayHint",
            "textDisplayHint",
        ):
            if k in body:
                p[k] = body[k]
        p["updatedAt"] = _iso(self.sb.now())
        return 200, p

    def prop_delete(self, ctx: _Ctx, object_type: str, property_name: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        p = self._prop(ctx, tid, property_name)
        if p["hubspotDefined"]:
            raise ApiError(400, "VALIDATION_ERROR", "HubSpot-defined properties can't be deleted")
        p["archived"] = True
        p["archivedAt"] = _iso(self.sb.now())
        return 204, None

    def groups_list(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, schema=True)
        return 200, {"results": [g for g in ctx.portal.groups[tid].values() if not g["archived"]]}

    def group_create(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        body = ctx.json
        name = body.get("name", "")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ApiError(400, "VALIDATION_ERROR", f"Invalid group name {name!r}")
        g = ctx.portal.groups[tid].get(name)
        if g and not g["archived"]:
            raise ApiError(
                409, "OBJECT_ALREADY_EXISTS", f"Property group named '{name}' already exists."
            )
        return 201, self.sb._add_group(
            ctx.portal,
            tid,
            name,
            body.get("label", name),
            display_order=body.get("displayOrder", -1),
        )

    def _group(self, ctx: _Ctx, tid: str, name: str) -> dict:
        g = ctx.portal.groups[tid].get(name)
        if g is None or g["archived"]:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property group {name}")
        return g

    def group_get(self, ctx: _Ctx, object_type: str, group_name: str):
        tid = self._type(ctx, object_type, schema=True)
        return 200, self._group(ctx, tid, group_name)

    def group_patch(self, ctx: _Ctx, object_type: str, group_name: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        g = self._group(ctx, tid, group_name)
        for k in ("label", "displayOrder"):
            if k in ctx.json:
                g[k] = ctx.json[k]
        return 200, g

    def group_delete(self, ctx: _Ctx, object_type: str, group_name: str):
        tid = self._type(ctx, object_type, write=True, schema=True)
        self._group(ctx, tid, group_name)["archived"] = True
        return 204, None


class PipelineHandlers:
    # ---- pipelines -----------------------------------------------------------------------
    def _pipes(self, ctx: _Ctx, object_type: str) -> dict:
        tid = self.sb._resolve(ctx.portal, object_type)
        if tid != "0-3":
            if tid is None:
                raise ApiError(
                    400, "VALIDATION_ERROR", f"Unable to infer object type from: {object_type}"
                )
            return ctx.portal.pipelines.get(tid, {})
        self._need(
            ctx, "crm.objects.deals.read", "crm.schemas.deals.read", "crm.objects.deals.write"
        )
        return ctx.portal.pipelines["0-3"]

    def pipelines_list(self, ctx: _Ctx, object_type: str):
        return 200, {"results": list(self._pipes(ctx, object_type).values())}

    def _pipe(self, ctx: _Ctx, object_type: str, pipeline_id: str) -> dict:
        p = self._pipes(ctx, object_type).get(pipeline_id)
        if p is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find pipeline {pipeline_id}")
        return p

    def pipeline_get(self, ctx: _Ctx, object_type: str, pipeline_id: str):
        return 200, self._pipe(ctx, object_type, pipeline_id)

    def stages_list(self, ctx: _Ctx, object_type: str, pipeline_id: str):
        return 200, {"results": self._pipe(ctx, object_type, pipeline_id)["stages"]}

    def stage_get(self, ctx: _Ctx, object_type: str, pipeline_id: str, stage_id: str):
        s = next(
            (s for s in self._pipe(ctx, object_type, pipeline_id)["stages"] if s["id"] == stage_id),
            None,
        )
        if s is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find stage {stage_id}")
        return 200, s

