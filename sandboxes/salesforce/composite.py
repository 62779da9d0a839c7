"""Composite requests and sObject Collections (answer 200 even when parts fail)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .sandbox import (
    ApiError,
    _Ctx,
    normalize_id,
)


class CompositeHandlers:
    # ---- composite ----------------------------------------------------------------------------
    _REF_RE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")

    def _resolve_refs(self, value: Any, results: dict) -> Any:
        if isinstance(value, str):
            def sub(m):
                ref, path = m.group(1), m.group(2)
                if ref not in results:
                    raise KeyError(f"{ref}{path}")
                cur = results[ref]
                for step in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
                    try:
                        cur = cur[step[0]] if step[0] else cur[int(step[1])]
                    except (KeyError, IndexError, TypeError):
                        raise KeyError(f"{ref}{path}") from None
                return str(cur)
            return self._REF_RE.sub(sub, value)
        if isinstance(value, list):
            return [self._resolve_refs(x, results) for x in value]
        if isinstance(value, dict):
            return {k: self._resolve_refs(x, results) for k, x in value.items()}
        return value

    def composite(self, ctx: _Ctx, body: Any, path: str) -> dict:
        sb, org = self.sb, ctx.org
        if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "compositeRequest is required")
        subs = body["compositeRequest"]
        if not subs or len(subs) > 25:
            raise ApiError(400, "INVALID_INPUT",
                           "The composite request must contain between 1 and 25 subrequests")
        ids = [s.get("referenceId") for s in subs]
        if any(not isinstance(i, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", i)
               for i in ids) or len(set(ids)) != len(ids):
            raise ApiError(400, "INVALID_INPUT", "referenceId must be unique and alphanumeric")
        heavy = sum(1 for s in subs if "/query" in str(s.get("url", ""))
                    or "/composite/sobjects" in str(s.get("url", "")))
        if heavy > 5:
            raise ApiError(400, "INVALID_INPUT",
                           "A composite request can have at most 5 query or sObject "
                           "collection subrequests")
        for s in subs:
            hdrs = {k.lower() for k in (s.get("httpHeaders") or {})}
            if hdrs & {"accept", "authorization", "content-type"}:
                raise ApiError(400, "INVALID_INPUT",
                               "The httpHeaders can't include Accept, Authorization or "
                               "Content-Type")
        all_or_none = bool(body.get("allOrNone", False))
        writes = [i for i, s in enumerate(subs)
                  if str(s.get("method", "")).upper() in ("POST", "PATCH", "PUT", "DELETE")]
        failing: dict = {}
        f = sb._take_fault(("composite_partial",), path)
        if f and writes:
            idx = f.options.get("index", writes[-1])
            failing[idx] = ApiError(400, "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                    "Injected validation failure (sandbox composite_partial)",
                                    [])
        f = sb._take_fault(("unable_to_lock_row",), path)
        if f and writes:
            idx = f.options.get("index", writes[0])
            failing[idx] = ApiError(400, "UNABLE_TO_LOCK_ROW",
                                    "unable to obtain exclusive access to this record or 1 "
                                    "records: " + org.id)
        results: dict = {}
        responses = []
        failed = False
        sb._begin(org)
        try:
            for i, s in enumerate(subs):
                ref = s["referenceId"]
                if failed and all_or_none:
                    responses.append(None)
                    continue
                try:
                    url = self._resolve_refs(str(s.get("url", "")), results)
                    sbody = self._resolve_refs(s.get("body"), results)
                except KeyError as e:
                    responses.append({"body": [{"errorCode": "PROCESSING_HALTED", "message":
                                                f"Invalid reference specified. No value for "
                                                f"{e.args[0]} found in {ref}. Provided "
                                                f"referenceId ({e.args[0].split('.')[0]}) must "
                                                f"be a valid reference."}],
                                      "httpHeaders": {}, "httpStatusCode": 400,
                                      "referenceId": ref})
                    failed = True
                    continue
                status, payload, headers = self._sub(ctx, str(s.get("method", "GET")).upper(),
                                                     url, sbody, s.get("httpHeaders") or {},
                                                     failing.get(i))
                if status < 300 and isinstance(payload, (dict, list)):
                    results[ref] = payload
                elif status >= 300:
                    failed = True
                responses.append({"body": payload, "httpHeaders": headers,
                                  "httpStatusCode": status, "referenceId": ref})
            if failed and all_or_none:
                sb._rollback(org)
                halted = [{"errorCode": "PROCESSING_HALTED", "message":
                           "The transaction was rolled back since another operation in the same"
                           " transaction failed."}]
                # only the first real failure keeps its error; every other sub-request halted
                first = next(i for i, r in enumerate(responses)
                             if r is not None and r["httpStatusCode"] >= 300)
                responses = [responses[i] if i == first else
                             {"body": halted, "httpHeaders": {}, "httpStatusCode": 400,
                              "referenceId": s["referenceId"]} for i, s in enumerate(subs)]
            else:
                sb._commit(org)
        finally:
            if org._journal is not None:
                sb._commit(org)
        return {"compositeResponse": responses}

    def _sub(self, ctx: _Ctx, method: str, url: str, body: Any, headers: dict,
             fail: ApiError | None) -> tuple:
        parts = urlsplit(url)
        m = re.match(r"^/services/data/(v\d+\.\d)(/.*)?$", parts.path.rstrip("/"))
        if not m:
            e = ApiError(400, "INVALID_INPUT", f"Invalid URL in composite subrequest: {url}")
            return e.status, e.body(), {}
        if fail is not None:
            return fail.status, fail.body(), {}
        sub_ctx = _Ctx(ctx.org, ctx.session, m.group(1)[1:], headers)
        sub_ctx.default_ns = None
        try:
            segs = [unquote(x) for x in (m.group(2) or "").split("/")[1:]]
            status, payload, hdrs = self.rest(sub_ctx, method, segs,
                                              dict(parse_qsl(parts.query)), body, url,
                                              in_composite=True)
        except ApiError as e:
            return e.status, e.body(), {}
        return status, payload, dict(hdrs or {})

    # ---- sObject Collections ------------------------------------------------------------------
    def collections(self, ctx: _Ctx, method: str, p: list, args: dict, body: Any, path: str,
                    allow) -> tuple:
        sb, org, v = self.sb, ctx.org, ctx.version
        if method == "GET" or (method == "POST" and len(p) == 1):
            if not p:
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
            st = sb._stype(org, p[0])
            ids = (body or {}).get("ids") if method == "POST" else args.get("ids", "").split(",")
            fields_names = (body or {}).get("fields") if method == "POST" else \
                args.get("fields", "").split(",")
            fl = self._fields_arg(org, st, {"fields": ",".join(fields_names or [])}, ctx) \
                or [st.fields["id"]]
            out = []
            for i in ids or []:
                rid = normalize_id(i)
                rec = org.records.get(st.name.lower(), {}).get(rid or "")
                out.append(sb._serialize(st, rec, v, fl) if rec and not rec["IsDeleted"]
                           else None)
            return 200, out, {}
        if method == "DELETE" and not p:
            ids = [x for x in args.get("ids", "").split(",") if x]
            all_or_none = args.get("allOrNone", "false").lower() == "true"
            items = [("delete", None, i) for i in ids]
        else:
            if not isinstance(body, dict) or not isinstance(body.get("records"), list):
                raise ApiError(400, "JSON_PARSER_ERROR", "records is required")
            all_or_none = bool(body.get("allOrNone", False))
            recs = body["records"]
            if method == "POST" and not p:
                items = [("create", r, None) for r in recs]
            elif method == "PATCH" and not p:
                items = [("update", r, None) for r in recs]
            elif method == "PATCH" and len(p) == 2:
                items = [("upsert", r, (p[0], p[1])) for r in recs]
            else:
                allow("GET", "POST", "PATCH", "DELETE")
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if len(items) > 200:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more "
                                                     "than 200 records into this call")
        lock = sb._take_fault(("unable_to_lock_row",), path)
        results = []
        failed = False
        sb._begin(org)
        try:
            for n, (op, rec, extra) in enumerate(items):
                try:
                    if lock and n == 0:
                        raise ApiError(400, "UNABLE_TO_LOCK_ROW",
                                       "unable to obtain exclusive access to this record")
                    results.append(self._collection_op(ctx, op, rec, extra))
                except ApiError as e:
                    failed = True
                    err = {"statusCode": e.code, "message": e.message, "fields": e.fields or []}
                    res = {"id": None, "success": False, "errors": [err]}
                    if op == "upsert":
                        res["created"] = False
                    results.append(res)
            if failed and all_or_none:
                sb._rollback(org)
                for r in results:
                    if r["success"]:
                        r.update(id=None, success=False, errors=[{
                            "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                            "message": "Record rolled back because not all records were valid and"
                                       " the request was using AllOrNone header", "fields": []}])
            else:
                sb._commit(org)
        finally:
            if org._journal is not None:
                sb._commit(org)
        return 200, results, {}

    def _collection_op(self, ctx: _Ctx, op: str, rec: Any, extra: Any) -> dict:
        sb, org = self.sb, ctx.org
        if op == "delete":
            rid = normalize_id(extra)
            found = sb._find_by_id(org, rid) if rid else None
            if found is None or not found[0].stored:
                raise ApiError(404, "ENTITY_IS_DELETED" if found else "INVALID_CROSS_REFERENCE_KEY",
                               "entity is deleted" if found else "invalid cross reference id")
            st, row = found
            if row["IsDeleted"]:
                raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
            sb._delete(org, st, rid, ctx.user_id)
            return {"id": rid, "success": True, "errors": []}
        if not isinstance(rec, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "record must be an object")
        rec = dict(rec)
        attrs = rec.pop("attributes", None) or {}
        if op == "upsert":
            st = sb._stype(org, extra[0])
            f = sb._field(org, st, extra[1])
            if f is None or not f.external_id:
                raise ApiError(400, "INVALID_FIELD", f"Field {extra[1]} is not an external id")
            value = None
            for k in list(rec):
                kf = sb._field(org, st, k)
                if kf is not None and kf.name == f.name:
                    value = rec.pop(k)
            if value in (None, ""):
                raise ApiError(400, "MISSING_ARGUMENT",
                               f"{f.name} not specified")
            matches = self._match_ext(org, st, f, str(value))
            if len(matches) > 1:
                raise ApiError(300, "DUPLICATE_EXTERNAL_ID",
                               f"{f.name}: more than one record found for external id field")
            if matches:
                sb._write(org, st, matches[0], rec, ctx.user_id)
                return {"id": matches[0], "success": True, "errors": [], "created": False}
            rec[f.name] = value
            rid = sb._write(org, st, None, rec, ctx.user_id)
            return {"id": rid, "success": True, "errors": [], "created": True}
        type_name = attrs.get("type")
        if op == "update":
            rid = normalize_id(rec.pop("id", None) or rec.pop("Id", None))
            if rid is None:
                raise ApiError(400, "MALFORMED_ID", "Id in record is missing or malformed")
            found = sb._find_by_id(org, rid)
            if found is None:
                raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
            st = found[0]
            if found[1].get("IsDeleted"):
                raise ApiError(400, "ENTITY_IS_DELETED", "entity is deleted")
            sb._write(org, st, rid, rec, ctx.user_id)
            return {"id": rid, "success": True, "errors": []}
        if not type_name:
            raise ApiError(400, "INVALID_TYPE", "attributes.type is required")
        st = org.stype(type_name)
        if st is None:
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
        if "id" in rec or "Id" in rec:
            raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
        rid = sb._write(org, st, None, rec, ctx.user_id)
        return {"id": rid, "success": True, "errors": []}


