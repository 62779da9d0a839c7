"""CRM records: /crm/v3/objects (single, batch, search)."""

from __future__ import annotations

import logging
from typing import Any

from .sandbox import (
    SEARCH_MAX_RESULTS,
    SEARCH_PAGE_LIMIT,
    ApiError,
    _batch_meta,
    _Ctx,
    _iso,
    _parse_time_ms,
    _prop_error,
    _std_error,
)

log = logging.getLogger("sandboxes.hubspot")


class ObjectHandlers:
    # ---- objects -------------------------------------------------------------------------
    def _after_write_events(
        self,
        ctx: _Ctx,
        tid: str,
        rec: dict,
        changed: dict | None,
        created: bool = False,
        deleted: bool = False,
    ) -> None:
        if tid == "0-3":
            self.sb._deal_events(
                ctx.portal,
                rec["id"],
                changed,
                None,
                "INTEGRATION",
                created=created,
                deleted=deleted,
                source_id=str(ctx.token.app_id) if ctx.token else None,
            )

    def _create(self, ctx: _Ctx, tid: str, props: dict) -> tuple[dict, list[str]]:
        if not isinstance(props, dict):
            raise ApiError(400, "VALIDATION_ERROR", "properties must be an object")
        clean, errors = self.sb._check_values(ctx.portal, tid, props)
        errors += self.sb._check_pipeline(ctx.portal, tid, None, clean)
        if tid in ctx.portal.schemas:
            missing = [n for n in ctx.portal.schemas[tid]["requiredProperties"] if not clean.get(n)]
            errors += [
                {"isValid": False, "message": f"{n} is required", "error": "REQUIRED", "name": n}
                for n in missing
            ]
        if errors:
            raise _prop_error(errors)
        self.sb._check_unique(ctx.portal, tid, None, clean)
        rec = self.sb._insert(ctx.portal, tid, clean, self.sb.now())
        self._after_write_events(
            ctx, tid, rec, {k: (None, v) for k, v in clean.items() if v}, created=True
        )
        return rec, list(clean)

    def object_create(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True)
        body = ctx.json
        assocs = body.get("associations") or []
        checked = []
        for a in assocs:
            to_id = str((a.get("to") or {}).get("id", ""))
            to_tid = self._find_assoc_target(ctx, tid, to_id, a.get("types") or [])
            checked.append((to_tid, to_id, a.get("types") or []))
        rec, written = self._create(ctx, tid, body.get("properties") or {})
        for to_tid, to_id, types in checked:
            self.sb._associate(ctx.portal, tid, rec["id"], to_tid, to_id, types)
        return 201, self.sb._out(ctx.portal, tid, rec, written=written)

    def _find_assoc_target(self, ctx: _Ctx, tid: str, to_id: str, types: list[dict]) -> str:
        """Inline associations name only the target id; the type id says which object type."""
        for spec in types:
            for (frm, to), defs in ctx.portal.assoc_types.items():
                if (
                    frm == tid
                    and any(d["typeId"] == spec.get("associationTypeId") for d in defs)
                    and to_id in ctx.portal.objects.get(to, {})
                ):
                    return to
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"Association target {to_id} not found for the given association types",
        )

    def object_get(self, ctx: _Ctx, object_type: str, object_id: str):
        tid = self._type(ctx, object_type)
        a = ctx.request.args
        rec = self._record(
            ctx, tid, object_id, a.get("idProperty"), self._archived_arg(ctx)
        )
        return 200, self.sb._out(
            ctx.portal,
            tid,
            rec,
            ctx.arg_list("properties"),
            associations=ctx.arg_list("associations"),
        )

    def object_patch(self, ctx: _Ctx, object_type: str, object_id: str):
        tid = self._type(ctx, object_type, write=True)
        rec = self._record(ctx, tid, object_id, ctx.request.args.get("idProperty"))
        props = ctx.json.get("properties") or {}
        changed = self.sb._update(ctx.portal, tid, rec, props)
        self._after_write_events(ctx, tid, rec, changed)
        return 200, self.sb._out(ctx.portal, tid, rec, written=props)

    def object_delete(self, ctx: _Ctx, object_type: str, object_id: str):
        tid = self._type(ctx, object_type, write=True)
        rec = ctx.portal.objects[tid].get(str(object_id))
        if rec is not None and not rec["archived"]:  # deleting a missing record answers 204 too
            self.sb._archive(ctx.portal, tid, rec)
            self._after_write_events(ctx, tid, rec, None, deleted=True)
        return 204, None

    def objects_list(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type)
        limit = self._limit(ctx, 10, 100)
        archived = self._archived_arg(ctx)
        after = ctx.request.args.get("after")
        recs = sorted(
            (r for r in ctx.portal.objects[tid].values() if r["archived"] == archived),
            key=lambda r: int(r["id"]),
        )
        if after:
            recs = [r for r in recs if int(r["id"]) > int(after)] if after.isdigit() else []
        page = recs[:limit]
        body = {
            "results": [
                self.sb._out(
                    ctx.portal,
                    tid,
                    r,
                    ctx.arg_list("properties"),
                    associations=ctx.arg_list("associations"),
                )
                for r in page
            ]
        }
        if len(recs) > limit:
            nxt = page[-1]["id"]
            body["paging"] = {
                "next": {
                    "after": nxt,
                    "link": f"{ctx.request.host_url.rstrip('/')}"
                    f"{ctx.request.path}?after={nxt}&limit={limit}",
                }
            }
        return 200, body

    def _check_dupes(self, ids: list[str]) -> None:
        seen, dupes = set(), set()
        for i in ids:
            (dupes if i in seen else seen).add(i)
        if dupes:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"Duplicate IDs found in batch input: {sorted(dupes)}. IDs must be unique",
                context={"ids": sorted(dupes)},
            )

    def batch_create(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True)
        started = _iso(self.sb.now())
        inputs = self._inputs(ctx)
        # validate everything first: HubSpot's batch create is all or nothing
        for inp in inputs:
            clean, errors = self.sb._check_values(ctx.portal, tid, inp.get("properties") or {})
            errors += self.sb._check_pipeline(ctx.portal, tid, None, clean)
            if errors:
                raise _prop_error(errors)
        results = []
        for inp in inputs:
            rec, written = self._create(ctx, tid, inp.get("properties") or {})
            for a in inp.get("associations") or []:
                to_id = str((a.get("to") or {}).get("id", ""))
                to_tid = self._find_assoc_target(ctx, tid, to_id, a.get("types") or [])
                self.sb._associate(ctx.portal, tid, rec["id"], to_tid, to_id, a.get("types") or [])
            out = self.sb._out(ctx.portal, tid, rec, written=written)
            if inp.get("objectWriteTraceId"):
                out["objectWriteTraceId"] = inp["objectWriteTraceId"]
            results.append(out)
        return 201, {**_batch_meta(started, self.sb), "results": results}

    def batch_read(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type)
        started = _iso(self.sb.now())
        body = ctx.json
        inputs = self._inputs(ctx)
        id_prop = body.get("idProperty")
        archived = self._archived_arg(ctx)
        results, missing = [], []
        for inp in inputs:
            try:
                rec = self._record(ctx, tid, str(inp.get("id")), id_prop, archived)
                results.append(self.sb._out(ctx.portal, tid, rec, body.get("properties") or []))
            except ApiError:
                missing.append(str(inp.get("id")))
        out = {**_batch_meta(started, self.sb), "results": results}
        if missing:
            return 207, {
                **out,
                "numErrors": 1,
                "errors": [
                    _std_error(
                        "error",
                        "OBJECT_NOT_FOUND",
                        "Could not get some "
                        f"{object_type} objects, "
                        "they may be deleted or not exist. Check that ids are valid.",
                        {"ids": missing},
                    )
                ],
            }
        return 200, out

    def batch_update(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True)
        started = _iso(self.sb.now())
        inputs = self._inputs(ctx)
        self._check_dupes([str(i.get("id")) for i in inputs])
        targets, missing = [], []
        for inp in inputs:
            try:
                targets.append(
                    (self._record(ctx, tid, str(inp.get("id")), inp.get("idProperty")), inp)
                )
            except ApiError:
                missing.append(str(inp.get("id")))
        for rec, inp in targets:  # validate all before writing any
            clean, errors = self.sb._check_values(ctx.portal, tid, inp.get("properties") or {})
            errors += self.sb._check_pipeline(ctx.portal, tid, rec, clean)
            if errors:
                raise _prop_error(errors)
        results = []
        for rec, inp in targets:
            changed = self.sb._update(ctx.portal, tid, rec, inp.get("properties") or {})
            self._after_write_events(ctx, tid, rec, changed)
            out = self.sb._out(ctx.portal, tid, rec, written=inp.get("properties") or {})
            if inp.get("objectWriteTraceId"):
                out["objectWriteTraceId"] = inp["objectWriteTraceId"]
            results.append(out)
        out = {**_batch_meta(started, self.sb), "results": results}
        if missing:
            return 207, {
                **out,
                "numErrors": 1,
                "errors": [
                    _std_error(
                        "error", "OBJECT_NOT_FOUND", "Some objects were not found", {"ids": missing}
                    )
                ],
            }
        return 200, out

    def batch_upsert(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True)
        started = _iso(self.sb.now())
        portal = ctx.portal
        inputs = self._inputs(ctx)
        query_id_prop = ctx.request.args.get("idProperty")
        plan = []
        for inp in inputs:
            id_prop = inp.get("idProperty") or query_id_prop
            d = portal.properties[tid].get(id_prop or "")
            if not id_prop or d is None or not d["hasUniqueValue"]:
                raise ApiError(
                    400,
                    "VALIDATION_ERROR",
                    f"idProperty {id_prop!r} is not a unique value property of "
                    f"{object_type}; upsert needs a property with hasUniqueValue",
                    context={"idProperty": [str(id_prop)]},
                )
            if not inp.get("id"):
                raise ApiError(400, "VALIDATION_ERROR", "Each upsert input needs an id")
            props = dict(inp.get("properties") or {})
            if str(props.get(id_prop, inp["id"])) != str(inp["id"]):
                raise ApiError(400, "VALIDATION_ERROR", f"properties.{id_prop} differs from id")
            plan.append((id_prop, str(inp["id"]), props, inp))
        self._check_dupes([f"{p}={i}" for p, i, _x, _y in plan])
        existing = {}
        for id_prop, idv, props, _inp in plan:
            rec = next(
                (
                    r
                    for r in portal.objects[tid].values()
                    if not r["archived"] and r["properties"].get(id_prop) == idv
                ),
                None,
            )
            existing[(id_prop, idv)] = rec
            clean, errors = self.sb._check_values(portal, tid, props)
            errors += self.sb._check_pipeline(portal, tid, rec, clean)
            if rec is None and tid in portal.schemas:
                have = {**clean, id_prop: idv}
                errors += [
                    {
                        "isValid": False,
                        "message": f"{n} is required",
                        "error": "REQUIRED",
                        "name": n,
                    }
                    for n in portal.schemas[tid]["requiredProperties"]
                    if not have.get(n)
                ]
            if errors:
                raise _prop_error(errors)
        results = []
        for id_prop, idv, props, inp in plan:
            rec = existing[(id_prop, idv)]
            if rec is None:
                rec, written = self._create(ctx, tid, {**props, id_prop: idv})
                is_new = True
            else:
                changed = self.sb._update(portal, tid, rec, props)
                self._after_write_events(ctx, tid, rec, changed)
                written, is_new = list(props), False
            out = self.sb._out(
                portal, tid, rec, written=list(written) + [id_prop], extra={"new": is_new}
            )
            if inp.get("objectWriteTraceId"):
                out["objectWriteTraceId"] = inp["objectWriteTraceId"]
            results.append(out)
        return 200, {**_batch_meta(started, self.sb), "results": results}

    def batch_archive(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type, write=True)
        for inp in self._inputs(ctx):
            rec = ctx.portal.objects[tid].get(str(inp.get("id")))
            if rec is not None and not rec["archived"]:
                self.sb._archive(ctx.portal, tid, rec)
                self._after_write_events(ctx, tid, rec, None, deleted=True)
        return 204, None

    # ---- search --------------------------------------------------------------------------
    def objects_search(self, ctx: _Ctx, object_type: str):
        tid = self._type(ctx, object_type)
        body = ctx.json if isinstance(ctx.json, dict) else {}
        portal = ctx.portal
        limit = body.get("limit", 10)
        if not isinstance(limit, int) or limit < 0 or limit > SEARCH_PAGE_LIMIT:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"limit must be between 0 and {SEARCH_PAGE_LIMIT}; got {limit}",
            )
        try:
            offset = int(body.get("after") or 0)
        except (TypeError, ValueError):
            raise ApiError(400, "VALIDATION_ERROR", f"Invalid after: {body.get('after')!r}")
        if offset + limit > SEARCH_MAX_RESULTS:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"The search API returns at most "
                f"{SEARCH_MAX_RESULTS} results; page further with a narrower filter.",
            )
        groups = body.get("filterGroups") or []
        if len(groups) > 5 or sum(len(g.get("filters") or []) for g in groups) > 18:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "Too many filters: at most 5 filterGroups and 18 filters in total",
            )
        defs = portal.properties[tid]
        recs = [r for r in portal.objects[tid].values() if not r["archived"]]
        if groups:
            recs = [
                r
                for r in recs
                if any(all(self._match(defs, r, f) for f in g.get("filters") or []) for g in groups)
            ]
        q = (body.get("query") or "").strip().lower()
        if q:
            searchable = (
                portal.schemas[tid]["searchableProperties"]
                if tid in portal.schemas
                else ["dealname", "name", "email", "firstname", "lastname", "subject"]
            )
            recs = [
                r for r in recs if any(q in r["properties"].get(p, "").lower() for p in searchable)
            ]
        recs.sort(key=lambda r: int(r["id"]))
        for name, desc in reversed(self._sorts(body.get("sorts") or [])):
            recs.sort(key=lambda r, n=name: self._sort_key(defs, r, n), reverse=desc)
        page = recs[offset : offset + limit]
        out = {
            "total": len(recs),
            "results": [self.sb._out(portal, tid, r, body.get("properties") or []) for r in page],
        }
        if offset + limit < len(recs):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return 200, out

    @staticmethod
    def _sorts(sorts: list) -> list[tuple[str, bool]]:
        """`sorts` as HubSpot publishes it: an array of strings, "prop" ascending and "-prop"
        descending.

        Sources: the search request schema (`PublicObjectSearchRequest.sorts`, items
        `{"type": "string"}`) in HubSpot's spec (sandboxes/specs/hubspot, CRM/Objects v3) and on
        https://developers.hubspot.com/docs/api-reference/2026-03/crm/objects/custom-objects/search/search-custom-objects
        (`"sorts": ["<string>"]`); hubspot-api-client 12 types it `list[str]`; the format is
        documented in HubSpot's own SDK README (HubSpot/hubspot-api-nodejs, "CRM Search"):
        `["createdate"]` ascending, `["-createdate"]` descending, "only one sort parameter is
        supported". The object form `{"propertyName", "direction"}` shown in the search guide
        is refused by the contract check before it gets here (contract="strict").
        """
        out = []
        for s in sorts:
            if not isinstance(s, str) or not s.lstrip("-"):
                raise ApiError(
                    400, "VALIDATION_ERROR", f"Invalid sort {s!r}: sorts are property names, "
                    "'-' in front for descending"
                )
            out.append((s.lstrip("-"), s.startswith("-")))
        return out

    @staticmethod
    def _typed(defs: dict, name: str, value: Any):
        t = defs.get(name, {}).get("type")
        if value is None:
            return None
        if t in ("datetime", "date"):
            return _parse_time_ms(value)
        if t == "number":
            try:
                return float(value)
            except ValueError:
                return None
        return str(value).lower()

    def _sort_key(self, defs: dict, rec: dict, name: str):
        v = self._typed(defs, name, rec["properties"].get(name))
        return (v is None, v if v is not None else 0)

    def _match(self, defs: dict, rec: dict, f: dict) -> bool:
        name, op = f.get("propertyName", ""), f.get("operator", "EQ")
        raw = rec["properties"].get(name)
        if op == "HAS_PROPERTY":
            return raw not in (None, "")
        if op == "NOT_HAS_PROPERTY":
            return raw in (None, "")
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(f.get("value", "")).lower().strip("*")
            hit = raw is not None and token in str(raw).lower()
            return hit if op == "CONTAINS_TOKEN" else not hit
        have = self._typed(defs, name, raw)
        if op in ("IN", "NOT_IN"):
            vals = [self._typed(defs, name, v) for v in f.get("values") or []]
            hit = have is not None and have in vals
            return hit if op == "IN" else not hit
        want = self._typed(defs, name, f.get("value"))
        if op == "NEQ":
            return have != want
        if have is None or want is None:
            return False
        try:
            if op == "EQ":
                return have == want
            if op == "LT":
                return have < want
            if op == "LTE":
                return have <= want
            if op == "GT":
                return have > want
            if op == "GTE":
                return have >= want
            if op == "BETWEEN":
                high = self._typed(defs, name, f.get("highValue"))
                return high is not None and want <= have <= high
        except TypeError:
            return False
        raise ApiError(400, "VALIDATION_ERROR", f"Unsupported operator {op}")

