"""SOQL: a parser for the subset MutualPlan uses, and query / queryMore."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .sandbox import (
    MAX_BATCH,
    QUERY_LOCATOR_TTL,
    ApiError,
    Org,
    _b62,
    _Ctx,
    _out,
    _parse_dt,
    id18,
    normalize_id,
)
from .schema import (
    _NUMERIC,
    _Field,
    _soql_type_name,
    _SType,
)

# --------------------------------------------------------------------------------------------
# SOQL subset
# --------------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(r"""\s*(?:
  (?P<str>'(?:\\.|[^'\\])*')
 |(?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
 |(?P<date>\d{4}-\d{2}-\d{2})
 |(?P<num>-?\d+(?:\.\d+)?)
 |(?P<op><=|>=|!=|<>|=|<|>)
 |(?P<punct>[(),])
 |(?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
)""", re.VERBOSE)
_ESC = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def _malformed(msg: str) -> ApiError:
    return ApiError(400, "MALFORMED_QUERY", msg)


def _tokenize(q: str) -> list:
    out, pos, q = [], 0, q.rstrip()
    while pos < len(q):
        m = _TOKEN_RE.match(q, pos)
        if not m or m.end() == pos:
            raise _malformed(f"unexpected token: '{q[pos:].strip()[:20]}'")
        pos = m.end()
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "str":
            val = re.sub(r"\\(.)", lambda mm: _ESC.get(mm.group(1), mm.group(1)), val[1:-1])
        out.append((kind, val))
    return out


class _Parser:
    def __init__(self, q: str):
        self.toks = _tokenize(q)
        self.i = 0

    def peek(self, k: int = 0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else (None, None)

    def kw(self, *words) -> bool:
        kind, val = self.peek()
        if kind == "ident" and val.upper() == words[0]:
            for n, w in enumerate(words[1:], 1):
                k2, v2 = self.peek(n)
                if k2 != "ident" or v2.upper() != w:
                    return False
            self.i += len(words)
            return True
        return False

    def expect(self, kind, val=None):
        k, v = self.peek()
        if k != kind or (val is not None and (v or "").upper() != val):
            raise _malformed(f"unexpected token: '{v}'" if v else "unexpected end of query")
        self.i += 1
        return v

    def query(self) -> dict:
        if not self.kw("SELECT"):
            raise _malformed("unexpected token: expected SELECT")
        q: dict = {"fields": [], "count": False, "where": None, "order": [], "limit": None,
                   "offset": 0}
        while True:
            k, v = self.peek()
            if k == "ident" and v.upper() == "COUNT" and self.peek(1) == ("punct", "("):
                self.i += 2
                self.expect("punct", ")")
                q["count"] = True
            else:
                q["fields"].append(self.expect("ident"))
            if self.peek() == ("punct", ","):
                self.i += 1
                continue
            break
        if not self.kw("FROM"):
            raise _malformed("unexpected token: expected FROM")
        q["type"] = self.expect("ident")
        if self.kw("WHERE"):
            q["where"] = self.expr()
        if self.kw("WITH"):
            self.expect("ident")
        if self.kw("ORDER", "BY"):
            while True:
                path = self.expect("ident")
                desc = False
                if self.kw("DESC"):
                    desc = True
                else:
                    self.kw("ASC")
                nulls_first = not desc
                if self.kw("NULLS", "FIRST"):
                    nulls_first = True
                elif self.kw("NULLS", "LAST"):
                    nulls_first = False
                q["order"].append((path, desc, nulls_first))
                if self.peek() == ("punct", ","):
                    self.i += 1
                    continue
                break
        if self.kw("LIMIT"):
            q["limit"] = int(self.expect("num"))
        if self.kw("OFFSET"):
            q["offset"] = int(self.expect("num"))
            if q["offset"] > 2000:
                raise ApiError(400, "NUMBER_OUTSIDE_VALID_RANGE",
                               "Maximum SOQL offset allowed is 2000")
        return q

    def done(self) -> bool:
        return self.i >= len(self.toks)

    def expr(self):
        left = self.term()
        while self.kw("OR"):
            left = ("or", left, self.term())
        return left

    def term(self):
        left = self.factor()
        while self.kw("AND"):
            left = ("and", left, self.factor())
        return left

    def factor(self):
        if self.kw("NOT"):
            return ("not", self.factor())
        if self.peek() == ("punct", "("):
            self.i += 1
            e = self.expr()
            self.expect("punct", ")")
            return e
        path = self.expect("ident")
        if self.kw("NOT", "IN"):
            return ("in", path, True, self.in_values())
        if self.kw("IN"):
            return ("in", path, False, self.in_values())
        if self.kw("LIKE"):
            k, v = self.peek()
            if k != "str":
                raise _malformed("LIKE needs a string literal")
            self.i += 1
            return ("like", path, v)
        op = self.expect("op")
        return ("cmp", path, "!=" if op == "<>" else op, self.literal())

    def in_values(self):
        self.expect("punct", "(")
        if self.peek()[0] == "ident" and self.peek()[1].upper() == "SELECT":
            depth, start = 0, self.i
            while True:
                k, v = self.peek()
                if k is None:
                    raise _malformed("unbalanced parentheses")
                if (k, v) == ("punct", "("):
                    depth += 1
                if (k, v) == ("punct", ")"):
                    if depth == 0:
                        break
                    depth -= 1
                self.i += 1
            sub = _Parser.__new__(_Parser)
            sub.toks, sub.i = self.toks[start:self.i], 0
            self.i += 1
            parsed = sub.query()
            return ("sub", parsed)
        vals = [self.literal()]
        while self.peek() == ("punct", ","):
            self.i += 1
            vals.append(self.literal())
        self.expect("punct", ")")
        return vals

    def literal(self):
        k, v = self.peek()
        if k is None:
            raise _malformed("unexpected end of query")
        self.i += 1
        if k == "str":
            return ("str", v)
        if k == "num":
            return ("num", float(v))
        if k == "date":
            return ("date", v)
        if k == "dt":
            return ("dt", _parse_dt(v))
        if k == "ident" and v.upper() in ("TRUE", "FALSE"):
            return ("bool", v.upper() == "TRUE")
        if k == "ident" and v.upper() == "NULL":
            return ("null", None)
        raise _malformed(f"unexpected token: '{v}'")

class QueryHandlers:
    # ---- query ------------------------------------------------------------------------------
    def _resolve_path(self, org: Org, st: _SType, path: str, ctx: _Ctx) -> tuple:
        """(getter(record) -> value, final _Field, [(relationship field, target stype)...])."""
        sb = self.sb
        parts = path.split(".")
        chain = []
        cur = st
        for rel in parts[:-1]:
            ref = None
            for f in cur.fields.values():
                if f.relationship_name and (f.relationship_name.lower() == rel.lower() or (
                        ctx.default_ns and f.relationship_name.lower()
                        == f"{ctx.default_ns}__{rel}".lower())):
                    ref = f
                    break
            if ref is None:
                raise ApiError(400, "INVALID_FIELD",
                               f"Didn't understand relationship '{rel}' in field path. If you "
                               f"are attempting to use a custom relationship, be sure to append "
                               f"the '__r' after the custom relationship name.")
            target = org.stype(ref.reference_to[0])
            if target is None:
                raise ApiError(400, "INVALID_FIELD", f"No such relationship '{rel}'")
            chain.append((ref, target))
            cur = target
        f = sb._field(org, cur, parts[-1], ctx.default_ns)
        if f is None:
            raise ApiError(400, "INVALID_FIELD",
                           f"No such column '{parts[-1]}' on entity '{cur.name}'. If you are "
                           f"attempting to use a custom field, be sure to append the '__c' after"
                           f" the custom field name. Please reference your WSDL or the describe "
                           f"call for the appropriate names.")

        def getter(rec: dict, _chain=tuple(chain), _name=f.name):
            for ref, target in _chain:
                rid = rec.get(ref.name)
                if rid is None:
                    return None
                found = sb._find_by_id(org, rid)
                if found is None:
                    return None
                rec = found[1]
            return rec.get(_name)

        def parent(rec: dict, depth: int):
            for ref, target in chain[:depth]:
                rid = rec.get(ref.name)
                found = sb._find_by_id(org, rid) if rid else None
                if found is None:
                    return None
                rec = found[1]
            return rec
        return getter, f, chain, parent

    def _literal(self, f: _Field, lit: tuple) -> Any:
        kind, val = lit
        if kind == "null":
            return None
        want = _soql_type_name(f)
        if f.type in ("datetime", "date"):
            if kind == "str":
                raise ApiError(400, "INVALID_FIELD",
                               f"value of filter criterion for field '{f.name}' must be of type "
                               f"{want} and should not be enclosed in quotes")
            if f.type == "datetime" and kind == "dt":
                return val
            if f.type == "date" and kind == "date":
                return val
            raise ApiError(400, "INVALID_FIELD",
                           f"value of filter criterion for field '{f.name}' must be of type "
                           f"{want} and should not be enclosed in quotes")
        if f.type in _NUMERIC:
            if kind != "num":
                raise ApiError(400, "INVALID_FIELD",
                               f"value of filter criterion for field '{f.name}' must be of type "
                               f"{want} and should not be enclosed in quotes")
            return val
        if f.type == "boolean":
            if kind != "bool":
                raise ApiError(400, "INVALID_FIELD",
                               f"value of filter criterion for field '{f.name}' must be of type "
                               f"boolean and should not be enclosed in quotes")
            return val
        if kind != "str":
            raise ApiError(400, "INVALID_FIELD",
                           f"value of filter criterion for field '{f.name}' must be of type "
                           f"{want} and should be enclosed in quotes")
        if f.type in ("id", "reference"):
            rid = normalize_id(val)
            if rid is None:
                raise ApiError(400, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {val}")
            return rid
        return val.lower()

    def _compile(self, org: Org, st: _SType, node, ctx: _Ctx, include_deleted: bool) -> Callable:
        kind = node[0]
        if kind in ("and", "or"):
            a = self._compile(org, st, node[1], ctx, include_deleted)
            b = self._compile(org, st, node[2], ctx, include_deleted)
            return (lambda r: a(r) and b(r)) if kind == "and" else (lambda r: a(r) or b(r))
        if kind == "not":
            a = self._compile(org, st, node[1], ctx, include_deleted)
            return lambda r: not a(r)
        getter, f, _, _ = self._resolve_path(org, st, node[1], ctx)
        text = f.type not in ("id", "reference", "datetime", "date", "boolean") and \
            f.type not in _NUMERIC

        def val(r):
            x = getter(r)
            return x.lower() if text and isinstance(x, str) else x
        if kind == "like":
            pat = re.compile("^" + "".join(".*" if c == "%" else "." if c == "_" else re.escape(c)
                                           for c in node[2].lower()) + "$", re.DOTALL)
            return lambda r: isinstance(getter(r), str) and bool(pat.match(getter(r).lower()))
        if kind == "in":
            _, _, negate, values = node
            if isinstance(values, tuple) and values[0] == "sub":
                _, sub_resolved, sub_rows = self._run_query(ctx, values[1], include_deleted=False)
                if len(sub_resolved) != 1:
                    raise _malformed("semi-join sub-selects must select exactly one field")
                g0 = sub_resolved[0][0]
                vals = {(x.lower() if text and isinstance(x, str) else x)
                        for x in (g0(row) for row in sub_rows)}
            else:
                vals = {self._literal(f, lit) for lit in values}
            return (lambda r: val(r) not in vals) if negate else (lambda r: val(r) in vals)
        _, _, op, lit = node
        want = self._literal(f, lit)
        if want is None:
            if op not in ("=", "!="):
                raise _malformed("null can only be used with = and !=")
            return (lambda r: val(r) is None) if op == "=" else (lambda r: val(r) is not None)
        ops = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
               "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
        fn = ops[op]
        if op == "!=":
            return lambda r: val(r) != want

        def compare(r):
            x = val(r)
            return x is not None and fn(x, want)
        return compare

    def _run_query(self, ctx: _Ctx, q: dict, include_deleted: bool) -> tuple:
        """Evaluate a parsed query -> (stype, resolved select paths, rows)."""
        org = ctx.org
        st = org.stype(q["type"], ctx.default_ns)
        if st is None:
            raise ApiError(400, "INVALID_TYPE",
                           f"sObject type '{q['type']}' is not supported. If you are attempting "
                           f"to use a custom object, be sure to append the '__c' after the entity"
                           f" name. Please reference your WSDL or the describe call for the "
                           f"appropriate names.")
        resolved = [self._resolve_path(org, st, fp, ctx) for fp in q["fields"]]
        pred = self._compile(org, st, q["where"], ctx, include_deleted) if q["where"] else None
        rows = [r for r in self.sb._rows(org, st) if (include_deleted or not r["IsDeleted"])
                and (pred is None or pred(r))]
        for path, desc, nulls_first in reversed(q["order"]):
            g = self._resolve_path(org, st, path, ctx)[0]
            present = [r for r in rows if g(r) is not None]
            absent = [r for r in rows if g(r) is None]

            def sort_key(r, g=g):
                x = g(r)
                return x.lower() if isinstance(x, str) else x
            present.sort(key=sort_key, reverse=desc)
            rows = absent + present if nulls_first else present + absent
        rows = rows[q["offset"]:]
        if q["limit"] is not None:
            rows = rows[:q["limit"]]
        return st, resolved, rows

    def query(self, ctx: _Ctx, text: str, include_deleted: bool) -> dict:
        parser = _Parser(text)
        q = parser.query()
        if not parser.done():
            raise _malformed(f"unexpected token: '{parser.peek()[1]}'")
        if q["count"] and q["fields"]:
            raise _malformed("COUNT() cannot be combined with other fields")
        st, resolved, rows = self._run_query(ctx, q, include_deleted)
        if q["count"]:
            return {"totalSize": len(rows), "done": True, "records": []}
        v = ctx.version
        records = []
        for row in rows:
            out = self.sb._serialize(st, row, v, [])
            for fp, (getter, f, chain, parent) in zip(q["fields"], resolved):
                if not chain:
                    out[f.name] = _out(row.get(f.name), f)
                    continue
                node = out
                for depth, (ref, target) in enumerate(chain, 1):
                    prec = parent(row, depth)
                    if prec is None:
                        node[ref.relationship_name] = None
                        break
                    child = node.get(ref.relationship_name)
                    if child is None:
                        child = self.sb._serialize(target, prec, v, [])
                        node[ref.relationship_name] = child
                    node = child
                else:
                    node[f.name] = _out(getter(row), f)
            records.append(out)
        batch = min(ctx.batch_size or MAX_BATCH, self.sb.query_batch_size)
        return self._query_page(ctx, records, 0, batch,
                                "queryAll" if include_deleted else "query")

    def _query_page(self, ctx: _Ctx, records: list, offset: int, batch: int, kind: str,
              locator: str | None = None) -> dict:
        sb = self.sb
        chunk = records[offset:offset + batch]
        done = offset + batch >= len(records)
        out = {"totalSize": len(records), "done": done, "records": chunk}
        if locator is None and not done:
            locator = id18("01g" + ctx.org.pod + "0" + _b62(sb._next(), 9))
        if not done:
            sb._cursors[locator] = {"org": ctx.org.id, "records": records, "batch": batch,
                                    "kind": kind, "touched": sb.clock.now()}
            out["nextRecordsUrl"] = f"/services/data/v{ctx.version}/{kind}/{locator}-" \
                                    f"{offset + batch}"
        elif locator:
            sb._cursors.pop(locator, None)
        return out

    def query_more(self, ctx: _Ctx, token: str) -> dict:
        sb = self.sb
        locator, _, off = token.partition("-")
        cur = sb._cursors.get(locator)
        if cur is None or cur["org"] != ctx.org.id or not off.isdigit() or \
                (sb.clock.now() - cur["touched"]).total_seconds() > QUERY_LOCATOR_TTL:
            sb._cursors.pop(locator, None)
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._query_page(ctx, cur["records"], int(off), cur["batch"], cur["kind"],
                                locator)

