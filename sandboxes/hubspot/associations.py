"""Associations v4: records linked by association types and labels."""

from __future__ import annotations

import logging

from .sandbox import (
    ApiError,
    Portal,
    _batch_meta,
    _Ctx,
    _iso,
    _std_error,
)

log = logging.getLogger("sandboxes.hubspot")


class AssociationHandlers:
    # ---- associations v4 -------------------------------------------------------------------
    def _pair(self, ctx: _Ctx, from_type: str, to_type: str, write: bool) -> tuple[str, str]:
        frm = self._type(ctx, from_type, write=write)
        to = self._type(ctx, to_type, write=write)
        return frm, to

    def _exists(self, ctx: _Ctx, tid: str, oid: str) -> bool:
        r = ctx.portal.objects[tid].get(str(oid))
        return r is not None and not r["archived"]

    def _labels_out(self, portal: Portal, frm: str, to: str, fid: str, tid: str) -> list[dict]:
        out = []
        for cat, type_id in sorted(portal.assocs.get((frm, fid, to), {}).get(tid, ())):
            d = self.sb._assoc_def(portal, frm, to, type_id)
            item = {"category": cat, "typeId": type_id}
            if d and d["label"]:
                item["label"] = d["label"]
            out.append(item)
        return out

    def assoc_batch_create(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, True)
        started = _iso(self.sb.now())
        results, errors = [], []
        for inp in self._inputs(ctx):
            fid, tid = str(inp["from"]["id"]), str(inp["to"]["id"])
            if not self._exists(ctx, frm, fid) or not self._exists(ctx, to, tid):
                errors.append(
                    _std_error(
                        "error",
                        "OBJECT_NOT_FOUND",
                        f"No {from_type} {fid} or {to_type} {tid} found",
                        {"fromObjectId": [fid], "toObjectId": [tid]},
                    )
                )
                continue
            labels = self.sb._associate(ctx.portal, frm, fid, to, tid, inp.get("types") or [])
            results.append(
                {
                    "fromObjectTypeId": frm,
                    "fromObjectId": fid,
                    "toObjectTypeId": to,
                    "toObjectId": tid,
                    "labels": labels,
                }
            )
        body = {**_batch_meta(started, self.sb), "results": results}
        if errors:
            return 207, {**body, "numErrors": len(errors), "errors": errors}
        return 201, body

    def assoc_batch_default(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, True)
        started = _iso(self.sb.now())
        defs = ctx.portal.assoc_types.get((frm, to)) or []
        if not defs:
            raise ApiError(
                400, "VALIDATION_ERROR", f"No default association between {frm} and {to}"
            )
        d = defs[0]
        spec = {"associationCategory": d["category"], "associationTypeId": d["typeId"]}
        results, errors = [], []
        for inp in self._inputs(ctx):
            fid, tid = str(inp["from"]["id"]), str(inp["to"]["id"])
            if not self._exists(ctx, frm, fid) or not self._exists(ctx, to, tid):
                errors.append(
                    _std_error(
                        "error",
                        "OBJECT_NOT_FOUND",
                        "Object not found",
                        {"fromObjectId": [fid], "toObjectId": [tid]},
                    )
                )
                continue
            self.sb._associate(ctx.portal, frm, fid, to, tid, [spec])
            results.append({"from": {"id": fid}, "to": {"id": tid}, "associationSpec": spec})
        body = {**_batch_meta(started, self.sb), "results": results}
        if errors:
            body.update(numErrors=len(errors), errors=errors)
        return 200, body

    def assoc_batch_read(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, False)
        started = _iso(self.sb.now())
        results = []
        for inp in self._inputs(ctx):
            fid = str(inp.get("id"))
            links = ctx.portal.assocs.get((frm, fid, to), {})
            results.append(
                {
                    "from": {"id": fid},
                    "to": [
                        {
                            "toObjectId": tid,
                            "associationTypes": self._labels_out(ctx.portal, frm, to, fid, tid),
                        }
                        for tid in sorted(links, key=int)
                        if links[tid]
                    ],
                }
            )
        return 200, {**_batch_meta(started, self.sb), "results": results}

    def assoc_batch_archive(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, True)
        for inp in self._inputs(ctx):
            fid = str(inp["from"]["id"])
            for t in inp.get("to") or []:
                self._unlink(ctx.portal, frm, fid, to, str(t["id"]))
        return 204, None

    def assoc_batch_labels_archive(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, True)
        portal = ctx.portal
        for inp in self._inputs(ctx):
            fid, tid = str(inp["from"]["id"]), str(inp["to"]["id"])
            for spec in inp.get("types") or []:
                d = self.sb._assoc_def(portal, frm, to, spec.get("associationTypeId"))
                key = (spec.get("associationCategory"), spec.get("associationTypeId"))
                portal.assocs.get((frm, fid, to), {}).get(tid, set()).discard(key)
                if d:
                    portal.assocs.get((to, tid, frm), {}).get(fid, set()).discard(
                        (key[0], d["inverse"])
                    )
        return 204, None

    def _unlink(self, portal: Portal, frm: str, fid: str, to: str, tid: str) -> None:
        portal.assocs.get((frm, fid, to), {}).pop(tid, None)
        portal.assocs.get((to, tid, frm), {}).pop(fid, None)

    def assoc_list(self, ctx: _Ctx, object_type: str, object_id: str, to_type: str):
        frm, to = self._pair(ctx, object_type, to_type, False)
        if not self._exists(ctx, frm, object_id):
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        limit = self._limit(ctx, 500, 500)
        after = ctx.request.args.get("after")
        links = ctx.portal.assocs.get((frm, str(object_id), to), {})
        ids = sorted((t for t in links if links[t]), key=int)
        if after and after.isdigit():
            ids = [t for t in ids if int(t) > int(after)]
        page = ids[:limit]
        body = {
            "results": [
                {
                    "toObjectId": t,
                    "associationTypes": self._labels_out(ctx.portal, frm, to, str(object_id), t),
                }
                for t in page
            ]
        }
        if len(ids) > limit:
            body["paging"] = {"next": {"after": page[-1]}}
        return 200, body

    def assoc_put(self, ctx: _Ctx, object_type: str, object_id: str, to_type: str, to_id: str):
        frm, to = self._pair(ctx, object_type, to_type, True)
        if not self._exists(ctx, frm, object_id) or not self._exists(ctx, to, to_id):
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        types = ctx.json if isinstance(ctx.json, list) else []
        labels = self.sb._associate(ctx.portal, frm, str(object_id), to, str(to_id), types)
        return 201, {
            "fromObjectTypeId": frm,
            "fromObjectId": str(object_id),
            "toObjectTypeId": to,
            "toObjectId": str(to_id),
            "labels": labels,
        }

    def assoc_put_default(
        self, ctx: _Ctx, object_type: str, object_id: str, to_type: str, to_id: str
    ):
        frm, to = self._pair(ctx, object_type, to_type, True)
        if not self._exists(ctx, frm, object_id) or not self._exists(ctx, to, to_id):
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        started = _iso(self.sb.now())
        defs = ctx.portal.assoc_types.get((frm, to)) or []
        if not defs:
            raise ApiError(
                400, "VALIDATION_ERROR", f"No default association between {frm} and {to}"
            )
        spec = {"associationCategory": defs[0]["category"], "associationTypeId": defs[0]["typeId"]}
        self.sb._associate(ctx.portal, frm, str(object_id), to, str(to_id), [spec])
        return 200, {
            **_batch_meta(started, self.sb),
            "results": [
                {"from": {"id": str(object_id)}, "to": {"id": str(to_id)}, "associationSpec": spec}
            ],
        }

    def assoc_delete(self, ctx: _Ctx, object_type: str, object_id: str, to_type: str, to_id: str):
        frm, to = self._pair(ctx, object_type, to_type, True)
        self._unlink(ctx.portal, frm, str(object_id), to, str(to_id))
        return 204, None

    def labels_list(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, False)
        return 200, {
            "results": [
                {
                    "category": d["category"],
                    "typeId": d["typeId"],
                    **({"label": d["label"]} if d["label"] else {}),
                }
                for d in ctx.portal.assoc_types.get((frm, to), [])
            ]
        }

    def label_create(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, True)
        body = ctx.json
        if not body.get("label") or not body.get("name"):
            raise ApiError(400, "VALIDATION_ERROR", "label and name are required")
        if any(d["name"] == body["name"] for d in ctx.portal.assoc_types.get((frm, to), [])):
            raise ApiError(
                409,
                "OBJECT_ALREADY_EXISTS",
                f"An association label named {body['name']!r} already exists",
            )
        fwd, inv = self.sb._define_assoc(
            ctx.portal, frm, to, "USER_DEFINED", body["label"], body["name"]
        )
        if frm != to and body.get("inverseLabel"):
            for d in ctx.portal.assoc_types[(to, frm)]:
                if d["typeId"] == inv:
                    d["label"] = body["inverseLabel"]
        results = [{"category": "USER_DEFINED", "typeId": fwd, "label": body["label"]}]
        if inv != fwd:
            results.append(
                {
                    "category": "USER_DEFINED",
                    "typeId": inv,
                    "label": body.get("inverseLabel") or body["label"],
                }
            )
        return 200, {"results": results}

    def label_update(self, ctx: _Ctx, from_type: str, to_type: str):
        frm, to = self._pair(ctx, from_type, to_type, True)
        body = ctx.json
        d = self.sb._assoc_def(ctx.portal, frm, to, body.get("associationTypeId"))
        if d is None or d["category"] != "USER_DEFINED":
            raise ApiError(404, "OBJECT_NOT_FOUND", "association type not found")
        d["label"] = body.get("label")
        return 204, None

    def label_delete(self, ctx: _Ctx, from_type: str, to_type: str, type_id: int):
        frm, to = self._pair(ctx, from_type, to_type, True)
        defs = ctx.portal.assoc_types.get((frm, to), [])
        d = next(
            (x for x in defs if x["typeId"] == type_id and x["category"] == "USER_DEFINED"), None
        )
        if d is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", "association type not found")
        defs.remove(d)
        inv = ctx.portal.assoc_types.get((to, frm), [])
        inv[:] = [x for x in inv if x["typeId"] != d["inverse"]]
        return 204, None

