"""The REST API below /services/data: dispatch, sObjects, describe, picklists."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from .sandbox import (
    _VERSION_RE,
    MIN_API_VERSION,
    ApiError,
    Org,
    _Ctx,
    _fmt_dt,
    _json,
    _parse_dt,
    normalize_id,
)
from .schema import (
    _NUMERIC,
    _Field,
    _SType,
)


class RestHandlers:
    def data(self, request: Request, path: str) -> tuple:
        sb = self.sb
        parts = path.split("/")[3:]          # ['v66.0', 'sobjects', ...]
        m = _VERSION_RE.match(parts[0])
        endpoint = f"{request.method} /services/data/vXX.X/" + "/".join(
            _endpoint_shape(parts[1:]))
        endpoint = endpoint.rstrip("/")
        if not m:
            return endpoint, None, _json([{"errorCode": "NOT_FOUND", "message":
                                           "The requested resource does not exist"}], 404)
        major = int(m.group(1))
        if major < MIN_API_VERSION:
            return endpoint, None, _json([{"errorCode": "GONE", "message":
                                           "This version of the API has been retired."}], 410)
        if major > int(float(sb.latest_api_version)):
            return endpoint, None, _json([{"errorCode": "NOT_FOUND", "message":
                                           "The requested resource does not exist"}], 404)
        session = self._bearer(request)
        if session is None:
            return endpoint, None, _json([{"message": "Session expired or invalid",
                                           "errorCode": "INVALID_SESSION_ID"}], 401)
        org = sb.orgs[session.org_id]
        fault = sb._take_fault(("invalid_session", "request_limit"), path)
        if fault and fault.kind == "invalid_session":
            session.revoked = True
            return endpoint, org.id, _json([{"message": "Session expired or invalid",
                                             "errorCode": "INVALID_SESSION_ID"}], 401)
        limit_header = lambda: {"Sforce-Limit-Info":
                                f"api-usage={org.api_usage()}/{org.daily_api_limit}"}
        if fault or org.api_usage() >= org.daily_api_limit:
            return endpoint, org.id, _json([{"message": "TotalRequests Limit exceeded.",
                                             "errorCode": "REQUEST_LIMIT_EXCEEDED"}], 403,
                                           limit_header())
        org.api_calls.append(sb.clock.now())
        ctx = _Ctx(org, session, f"{m.group(1)}.{m.group(2)}", request.headers)
        raw = request.get_data()
        body: Any = None
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise ApiError(400, "JSON_PARSER_ERROR",
                                   "Unexpected character: was expecting a JSON value") from None
            if request.method in ("POST", "PATCH", "PUT", "DELETE"):
                lock = sb._take_fault(("unable_to_lock_row",), path) \
                    if parts[1:2] != ["composite"] else None
                if lock:
                    raise ApiError(400, "UNABLE_TO_LOCK_ROW",
                                   "unable to obtain exclusive access to this record or 1 "
                                   "records: " + (parts[-1] if len(parts) > 3 else ""))
            status, payload, headers = self.rest(ctx, request.method, parts[1:],
                                                 dict(request.args.items()), body, path)
        except ApiError as e:
            status, payload, headers = e.status, e.body(), {}
        headers = dict(headers or {})
        headers.update(limit_header())
        if status == 204:
            resp = Response(status=204)
            del resp.headers["Content-Type"]
            for k, v in headers.items():
                resp.headers[k] = v
        else:
            resp = _json(payload, status, headers)
        return endpoint, org.id, resp

    def rest(self, ctx: _Ctx, method: str, parts: list, args: dict, body: Any,
             path: str = "", in_composite: bool = False) -> tuple:
        """Dispatch one REST call below /services/data/vXX.X/. Returns (status, body, headers)."""
        org, v = ctx.org, ctx.version
        p = [x for x in parts if x != ""]
        n = len(p)

        def allow(*methods):
            if method not in methods:
                raise ApiError(405, "METHOD_NOT_ALLOWED",
                               f"HTTP Method '{method}' not allowed. Allowed are "
                               f"{','.join(methods)}")

        if n == 0:
            allow("GET")
            base = f"/services/data/v{v}"
            return 200, {k: f"{base}/{k}" for k in (
                "sobjects", "query", "queryAll", "composite", "limits", "search", "ui-api")}, {}
        head = p[0]
        if head == "sobjects":
            return self.sobjects(ctx, method, p[1:], args, body, allow)
        if head in ("query", "queryAll"):
            allow("GET")
            if n == 2:
                return 200, self.query_more(ctx, p[1]), {}
            if "q" not in args:
                raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
            return 200, self.query(ctx, args["q"], head == "queryAll"), {}
        if head == "composite":
            if n == 1:
                allow("POST")
                if in_composite:
                    raise ApiError(400, "INVALID_INPUT", "Composite can't be nested")
                return 200, self.composite(ctx, body, path), {}
            if p[1] == "sobjects":
                return self.collections(ctx, method, p[2:], args, body, path, allow)
        if head == "limits" and n == 1:
            allow("GET")
            used = org.api_usage()
            return 200, {
                "DailyApiRequests": {"Max": org.daily_api_limit,
                                     "Remaining": max(0, org.daily_api_limit - used)},
                "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
                "DataStorageMB": {"Max": 5, "Remaining": 5},
                "FileStorageMB": {"Max": 20, "Remaining": 20},
            }, {}
        if head == "ui-api" and n in (2, 3) and p[1] == "records":
            return self.ui_records(ctx, method, p[2] if n == 3 else None, args, body, allow)
        if head == "ui-api" and n == 6 and p[1] == "object-info" and p[3] == "picklist-values":
            allow("GET")
            return 200, self.picklist_values(ctx, p[2], p[4], p[5]), {}
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    # ---- ui-api records (what Lightning Data Service calls) -----------------------------------
    def ui_records(self, ctx: _Ctx, method: str, record_id: str | None, args: dict, body: Any,
                   allow) -> tuple:
        """``POST /ui-api/records`` (createRecord), ``GET|PATCH|DELETE /ui-api/records/{id}``
        (getRecord, updateRecord, deleteRecord); see ``SalesforceSandbox.lds_create``. The
        record is written as the session's user (the rep, in the component)."""
        sb = self.sb
        if record_id is None:
            allow("POST")
            return 201, sb._ui_create(ctx.org, body, ctx.user_id, ctx.version), {}
        allow("GET", "PATCH", "DELETE")
        if method == "GET":
            st, rid = sb._ui_target(ctx.org, record_id)
            return 200, sb._ui_record(ctx.org, st, rid, ctx.version), {}
        if method == "PATCH":
            return 200, sb._ui_update(ctx.org, record_id, body, ctx.user_id, ctx.version), {}
        sb._ui_delete(ctx.org, record_id, ctx.user_id)
        return 204, None, {}

    # ---- sobjects -----------------------------------------------------------------------------
    def sobjects(self, ctx: _Ctx, method: str, p: list, args: dict, body: Any, allow) -> tuple:
        sb, org, v = self.sb, ctx.org, ctx.version
        if not p:
            allow("GET")
            return 200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
                self._describe_basic(st, v) for st in sorted(org.schema.values(),
                                                             key=lambda s: s.name)]}, {}
        st = sb._stype(org, p[0], ctx.default_ns)
        n = len(p)
        if n == 1:
            allow("GET", "POST")
            if method == "GET":
                return 200, {"objectDescribe": self._describe_basic(st, v),
                             "recentItems": []}, {}
            rid = sb._write(org, st, None, body, ctx.user_id, ctx.default_ns)
            return 201, {"id": rid, "success": True, "errors": []}, {
                "Location": f"/services/data/v{v}/sobjects/{st.name}/{rid}"}
        if n == 2 and p[1] == "describe":
            allow("GET")
            return 200, self._describe(org, st, v), {}
        if n == 2 and p[1] in ("updated", "deleted"):
            allow("GET")
            return 200, self._changed(org, st, p[1], args), {}
        if n == 2:
            allow("GET", "PATCH", "DELETE")
            if method == "GET":
                rid = sb._existing(org, st, p[1])
                rec = org.records[st.name.lower()][rid]
                return 200, sb._serialize(st, rec, v, self._fields_arg(org, st, args, ctx)), {}
            if method == "PATCH":
                rid = sb._existing(org, st, p[1])
                sb._write(org, st, rid, body, ctx.user_id, ctx.default_ns)
                return 204, None, {}
            rid = sb._existing(org, st, p[1])
            sb._delete(org, st, rid, ctx.user_id)
            return 204, None, {}
        if n == 3:
            allow("GET", "PATCH", "DELETE", "POST")
            f = sb._field(org, st, p[1], ctx.default_ns)
            if f is None or not (f.external_id or f.name == "Id"):
                raise ApiError(404, "NOT_FOUND",
                               f"Provided external ID field does not exist or is not "
                               f"accessible: {p[1]}")
            value = p[2]
            matches = self._match_ext(org, st, f, value)
            if method == "GET":
                if not matches:
                    raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
                if len(matches) > 1:
                    raise ApiError(300, "MULTIPLE_CHOICES", "Multiple records match")
                rec = org.records[st.name.lower()][matches[0]]
                return 200, sb._serialize(st, rec, v, self._fields_arg(org, st, args, ctx)), {}
            if method == "DELETE":
                if not matches:
                    raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
                sb._delete(org, st, matches[0], ctx.user_id)
                return 204, None, {}
            return self._upsert(ctx, st, f, value, body, matches)
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    def _match_ext(self, org: Org, st: _SType, f: _Field, value: str) -> list:
        table = org.records.get(st.name.lower(), {})
        if f.name == "Id":
            rid = normalize_id(value)
            return [rid] if rid in table and not table[rid]["IsDeleted"] else []
        lv = value if f.case_sensitive else value.lower()
        return [rid for rid, r in table.items() if not r["IsDeleted"] and r.get(f.name) is not None
                and (r[f.name] if f.case_sensitive else str(r[f.name]).lower()) == lv]

    def _upsert(self, ctx: _Ctx, st: _SType, f: _Field, value: str, body: Any,
                matches: list) -> tuple:
        sb, org, v = self.sb, ctx.org, ctx.version
        if len(matches) > 1:
            raise ApiError(300, "MULTIPLE_CHOICES", "Multiple records match the external id")
        data = dict(body) if isinstance(body, dict) else body
        if isinstance(data, dict):
            for k in list(data):
                kf = sb._field(org, st, k, ctx.default_ns)
                if kf is not None and kf.name == f.name:
                    if str(data[k]).lower() != value.lower():
                        raise ApiError(400, "INVALID_FIELD",
                                       f"The value of the external ID field in the body "
                                       f"({data[k]}) doesn't match the URL ({value})", [f.name])
                    data.pop(k)
        if matches:
            sb._write(org, st, matches[0], data, ctx.user_id, ctx.default_ns)
            if float(v) >= 46:
                return 200, {"id": matches[0], "success": True, "errors": [],
                             "created": False}, {}
            return 204, None, {}
        if f.name == "Id":
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if isinstance(data, dict):
            data[f.name] = value
        rid = sb._write(org, st, None, data, ctx.user_id, ctx.default_ns)
        return 201, {"id": rid, "success": True, "errors": [], "created": True}, {
            "Location": f"/services/data/v{v}/sobjects/{st.name}/{rid}"}

    def _fields_arg(self, org: Org, st: _SType, args: dict, ctx: _Ctx) -> list | None:
        if not args.get("fields"):
            return None
        out = []
        for name in args["fields"].split(","):
            f = self.sb._field(org, st, name.strip(), ctx.default_ns)
            if f is None:
                raise ApiError(400, "INVALID_FIELD",
                               f"No such column '{name.strip()}' on sobject of type {st.name}")
            out.append(f)
        return out

    def _changed(self, org: Org, st: _SType, which: str, args: dict) -> dict:
        start, end = _parse_dt(args.get("start", "")), _parse_dt(args.get("end", ""))
        if start is None or end is None:
            raise ApiError(400, "INVALID_INPUT", "start and end must be ISO 8601 date-times")
        rows = org.records.get(st.name.lower(), {}).values()
        sel = [r for r in rows if start <= r["SystemModstamp"] <= end
               and r["IsDeleted"] == (which == "deleted")]
        latest = _fmt_dt(end.replace(second=0))
        if which == "updated":
            return {"ids": [r["Id"] for r in sel], "latestDateCovered": latest}
        return {"deletedRecords": [{"id": r["Id"], "deletedDate": _fmt_dt(r["SystemModstamp"])}
                                   for r in sel],
                "earliestDateAvailable": _fmt_dt(self.sb.clock.now() - timedelta(days=15)),
                "latestDateCovered": latest}

    def _describe_basic(self, st: _SType, v: str) -> dict:
        base = f"/services/data/v{v}/sobjects/{st.name}"
        return {"name": st.name, "label": st.label, "labelPlural": st.label_plural,
                "keyPrefix": st.key_prefix, "custom": st.custom, "queryable": True,
                "createable": st.writable, "updateable": st.writable, "deletable": st.writable,
                "retrieveable": True, "searchable": st.stored, "layoutable": st.stored,
                "urls": {"sobject": base, "describe": f"{base}/describe",
                         "rowTemplate": f"{base}/{{ID}}"}}

    def _describe(self, org: Org, st: _SType, v: str) -> dict:
        d = self._describe_basic(st, v)
        fields = []
        for f in st.fields.values():
            pick = []
            if f.name == "StageName" and st.name == "Opportunity":
                pick = [{"active": s.is_active, "defaultValue": False, "label": s.label,
                         "value": s.api_name, "validFor": None} for s in org.stages]
            elif f.picklist:
                pick = [{"active": True, "defaultValue": False, "label": p.replace("_", " "),
                         "value": p, "validFor": None} for p in f.picklist]
            fields.append({
                "name": f.name, "label": f.label, "type": f.type, "length": f.length,
                "custom": f.custom, "externalId": f.external_id, "unique": f.unique,
                "caseSensitive": f.case_sensitive, "idLookup": f.external_id or f.name == "Id",
                "nillable": not f.required and f.type != "boolean" and f.name != "Id",
                "createable": f.createable, "updateable": f.updateable,
                "defaultedOnCreate": f.type == "boolean" or f.name in ("OwnerId",),
                "calculated": False, "referenceTo": list(f.reference_to),
                "relationshipName": f.relationship_name, "cascadeDelete":
                    f.delete_constraint == "Cascade", "restrictedPicklist": f.restricted
                    or f.name == "StageName", "picklistValues": pick,
                "soapType": "xsd:" + {"datetime": "dateTime", "boolean": "boolean",
                                      "date": "date", "int": "int"}.get(
                    f.type, "double" if f.type in _NUMERIC else "string"),
            })
        d["fields"] = fields
        children = []
        for cst in org.schema.values():
            for f in cst.fields.values():
                if st.name in f.reference_to and cst.stored and f.custom:
                    children.append({"childSObject": cst.name, "field": f.name,
                                     "cascadeDelete": f.delete_constraint == "Cascade",
                                     "relationshipName": f.child_relationship_name})
        d["childRelationships"] = children
        rts = []
        if st.name == "Opportunity":
            rts.append({"active": True, "available": True, "defaultRecordTypeMapping":
                        not org.record_types, "developerName": "Master", "master": True,
                        "name": "Master", "recordTypeId": "012000000000000AAA"})
            for rt in org.record_types.values():
                rts.append({"active": rt.is_active, "available": True,
                            "defaultRecordTypeMapping": False, "developerName": rt.developer_name,
                            "master": False, "name": rt.name, "recordTypeId": rt.id})
        d["recordTypeInfos"] = rts
        return d

    def picklist_values(self, ctx: _Ctx, sobject: str, rt_id: str, field_name: str) -> dict:
        org = ctx.org
        st = self.sb._stype(org, sobject)
        f = st.field(field_name)
        if f is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if st.name == "Opportunity" and f.name == "StageName":
            labels = [s.label for s in org.stages if s.is_active]
            rt = org.record_types.get(normalize_id(rt_id) or "")
            if rt is None and rt_id != "012000000000000AAA":
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
            if rt and rt.sales_process:
                allowed = org.sales_processes[rt.sales_process].stages
                labels = [x for x in labels if x in allowed]
        else:
            labels = list(f.picklist)
        return {"controllerValues": {}, "defaultValue": None, "eTag": hashlib.md5(
            "|".join(labels).encode()).hexdigest(),
            "url": f"/services/data/v{ctx.version}/ui-api/object-info/{st.name}/picklist-values/"
                   f"{rt_id}/{f.name}",
            "values": [{"attributes": None, "label": x, "validFor": [], "value": x}
                       for x in labels]}


def _endpoint_shape(p: list) -> list:
    """Normalise path segments for the call log ("sobjects/{type}/{id}")."""
    if not p:
        return []
    if p[0] == "sobjects" and len(p) >= 2:
        rest = p[2:]
        if not rest:
            return ["sobjects", "{type}"]
        if rest[0] in ("describe", "updated", "deleted"):
            return ["sobjects", "{type}", rest[0]]
        if len(rest) == 1:
            return ["sobjects", "{type}", "{id}"]
        return ["sobjects", "{type}", "{field}", "{value}"]
    if p[0] in ("query", "queryAll") and len(p) > 1:
        return [p[0], "{locator}"]
    if p[0] == "composite" and len(p) > 2:
        return ["composite", "sobjects", "{type}", "{field}"][:len(p)]
    if p[0] == "ui-api" and len(p) >= 2 and p[1] == "records":
        return ["ui-api", "records"] + (["{id}"] if len(p) > 2 else [])
    if p[0] == "ui-api":
        return ["ui-api", "..."]
    return p


