"""Request fuzzing for every endpoint (issue 10 §5), shared by tests/test_fuzz.py and bench/fuzz.py.

`seed(app, client)` makes a world to aim at: a tenant with an API key, a plan
made from the enterprise template on a HubSpot deal, an installation for the
card endpoints, a buyer link, an identified buyer and an open editor session.
`request_for(draw, world, rule, method)` draws one request for one route:
path parameters are real ids or garbage, the query string, the headers
(If-Match, Content-Type, X-HubSpot-Request-Timestamp, a valid or broken v3
signature) and the body (JSON built from the API's field names and nasty
values, a form, or bytes) are generated. `check(app, client, request)` sends it
and says what was wrong: a 5xx, or a 4xx that changed the database.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from hypothesis import strategies as st
from sqlalchemy import select

from connector.hubspot import SignatureVerifier
from webapp.auth import create_key, ensure_tenant
from webapp.db import Base, database, session
from webapp.models import Installation

PORTAL = "424242"
DEAL = "9001"
SECRET = "fuzz-hubspot-secret"
PUBLIC = "http://localhost"
CONFIG = {"HUBSPOT_CLIENT_ID": "fuzz-client", "HUBSPOT_CLIENT_SECRET": SECRET,
          "HUBSPOT_APP_ID": "1000001", "PUBLIC_BASE_URL": PUBLIC,
          "SALESFORCE_CLIENT_ID": "fuzz-sf-client", "SALESFORCE_CLIENT_SECRET": "fuzz-sf-secret", "JOBS_MODE": "manual",
          "LOG_LEVEL": "ERROR"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SKIP_ENDPOINTS = {"static"}
# FUZZ_VALID_TIMESTAMPS=1 sends only well-formed HubSpot timestamps, to look past that known 500.
GARBAGE_TIMESTAMPS = os.environ.get("FUZZ_VALID_TIMESTAMPS") != "1"


def snapshot(app) -> dict:
    with database(app).engine.connect() as conn:
        return {t.name: sorted(map(repr, conn.execute(t.select()).all()))
                for t in Base.metadata.sorted_tables}


def routes(app) -> list[tuple[str, str, str]]:
    """(rule, method, endpoint) for every route but static files."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SKIP_ENDPOINTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((rule.rule, method, rule.endpoint))
    return sorted(out)


@dataclass
class World:
    key: str
    ids: dict[str, list[str]]
    editor_cookie: str | None = None
    buyer_csrf: str = ""
    editor_csrf: str = ""
    extra: dict = field(default_factory=dict)


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def seed(app, client) -> World:
    with app.app_context():
        s = session()
        tenant = ensure_tenant(s, "fuzz")
        key = create_key(s, tenant, "fuzz")
        s.add(Installation(tenant_id=tenant.id, provider="hubspot", account_id=PORTAL,
                           status="active", settings={"mode": "deal_properties"}))
        s.commit()
        installation_id = s.scalars(select(Installation.id)).first()
    auth = {"Authorization": f"Bearer {key}"}
    plan = client.post("/api/v1/plans", headers=auth, json={
        "title": "Fuzz plan", "template": "enterprise", "start_date": "2026-11-26",
        "deal": {"provider": "hubspot", "account_id": PORTAL, "deal_id": DEAL},
        "stakeholders": [{"name": "Dana", "side": "buyer", "email": "dana@example.com"}]}).json
    assert "id" in plan, plan
    link = client.post(f"/api/v1/plans/{plan['id']}/share-links", headers=auth, json={}).json
    buyer_path = _path(link["url"])
    editor_path = _path(client.post(f"/api/v1/plans/{plan['id']}/editor-link", headers=auth).json["url"])
    page = client.get(buyer_path).get_data(as_text=True)
    csrf = CSRF.search(page).group(1)
    client.post(buyer_path + "/identify", data={"csrf": csrf, "name": "Dana",
                                                 "email": "dana@example.com"})
    buyer_csrf = CSRF.search(client.get(buyer_path).get_data(as_text=True)).group(1)
    client.get(editor_path)
    editor_page = client.get(f"/editor/plans/{plan['id']}").get_data(as_text=True)
    match = CSRF.search(editor_page)
    milestones = [m for st_ in plan["stages"] for m in st_["milestones"]]
    ids = {
        "plan_id": [plan["id"]],
        "stage_id": [st_["id"] for st_ in plan["stages"]][:2],
        "milestone_id": [m["id"] for m in milestones][:3],
        "stakeholder_id": [p["id"] for p in plan["stakeholders"]],
        "link_id": [link["id"]],
        "token": [buyer_path.rsplit("/", 1)[1], editor_path.rsplit("/", 1)[1]],
        "deal_id": [DEAL, "9002"],
        "installation_id": [installation_id],
        "pipeline_id": ["default"],
        "filename": ["mutualplan.css"],
    }
    return World(key=key, ids=ids, buyer_csrf=buyer_csrf,
                 editor_csrf=match.group(1) if match else "")


# ---- values -------------------------------------------------------------------------------

NASTY_TEXT = ["", " ", "a\x00b", "\x00", "\x07", "\u00b2", "\u0663", "\ud800", "x" * 121,
              "x" * 201, "x" * 10_001, "<script>alert(1)</script>", "javascript:alert(1)",
              "9" * 400, "-1", "0", "1e999", "NaN", "null", "../../etc/passwd", "%00", "\u202e",
              "\r\n", "a\nb"]
NASTY_DATES = ["9999-12-31", "0001-01-01", "1999-12-31", "2101-01-01", "2026-02-30",
               "2026-11-26", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
               "2027-01-01T00:00:00Z", "2027-01-01T00:00:00"]
NASTY_INTS = [-1, 0, 1, 2**31, 2**63, 10**30, -(10**30)]
FIELDS = ["title", "name", "label", "email", "side", "role", "status", "risk", "owner_side",
          "due_date", "start_date", "go_live_date", "expires_at", "reason", "description",
          "value_summary", "version", "position", "stage_id", "internal", "owners", "template",
          "deal", "constraints", "objectives", "resources", "stakeholders", "rotate",
          "milestone_ids", "gates", "close_milestone", "allow_closed", "url", "dates",
          "challenges", "budget", "provider", "account_id", "deal_id", "date"]
FORM_FIELDS = ["csrf", "name", "email", "body", "date", "reason", "action", "done", "op",
               "title", "stage_id", "milestone_id", "stakeholder_id", "link_id", "dir",
               "due_date", "position", "internal", "status", "risk", "label", "expires_at",
               "version", "portal_id", "owners", "resources", "go_live_date", "start_date"]
QUERY_KEYS = ["limit", "offset", "provider", "account_id", "deal_id", "ok", "state", "code",
              "error", "error_description", "portalId", "userId", "userEmail", "sandbox",
              "my_domain", "archived"]

scalars = st.one_of(
    st.sampled_from(NASTY_TEXT), st.sampled_from(NASTY_DATES), st.sampled_from(NASTY_INTS),
    st.booleans(), st.none(), st.text(max_size=30), st.integers(),
    st.floats(allow_nan=False, allow_infinity=False))


def json_values(world: World):
    real = st.sampled_from([v for values in world.ids.values() for v in values])
    leaf = st.one_of(scalars, real)
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), children,
                            max_size=5)),
        max_leaves=12)


def json_bodies(world: World):
    values = json_values(world)
    objects = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6)
    return st.one_of(objects, objects, values)


def header_text():
    return st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=20)).map(_header_safe)


def _header_safe(value: str) -> str:
    value = "".join(ch for ch in value if ch not in "\r\n\x00")
    return value.encode("utf-8", "surrogatepass").decode("latin-1")


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict
    body: bytes | None
    note: str = ""

    def describe(self) -> str:
        body = (self.body or b"")[:200]
        return (f"{self.method} {self.path}{'?' + self.query if self.query else ''} "
                f"headers={self.headers} body={body!r}")


def request_for(draw, world: World, rule: str, method: str) -> Request:
    # path parameters: a real id most of the time, else garbage
    def fill(match):
        name = match.group(2)
        real = world.ids.get(name, ["x"])
        if name == "token":
            real = real[1:] if rule.startswith("/editor/") else real[:1]
        value = draw(st.one_of(st.sampled_from(real), st.sampled_from(real),
                               st.sampled_from(NASTY_TEXT), st.text(min_size=1, max_size=40)))
        return quote(value.encode("utf-8", "surrogatepass"), safe="")

    path = re.sub(r"<(?:([^:>]+):)?([^>]+)>", fill, rule)

    query = draw(st.dictionaries(st.one_of(st.sampled_from(QUERY_KEYS), st.text(max_size=6)),
                                 st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=12)),
                                 max_size=3))
    card = rule.startswith("/hubspot/card/")
    if card and draw(st.integers(0, 4)):
        query["portalId"] = PORTAL
        query.setdefault("userEmail", "rep@example.com")
    query_string = urlencode({k.encode("utf-8", "surrogatepass"): v.encode("utf-8", "surrogatepass")
                              for k, v in query.items()})

    headers = {}
    if draw(st.integers(0, 5)):
        headers["Authorization"] = f"Bearer {world.key}"
    if draw(st.booleans()):
        headers["If-Match"] = draw(st.one_of(
            st.sampled_from(['"1"', '"2"', "*", 'W/"1"', '"' + "9" * 4300 + '"', '"\u00b2"',
                             '"2147483648"', '"-1"']).map(_header_safe), header_text()))
    kind = draw(st.sampled_from(["json", "json", "form", "bytes", "none"]))
    body: bytes | None = None
    if kind == "json":
        body = json.dumps(draw(json_bodies(world))).encode()
        headers["Content-Type"] = draw(st.sampled_from(
            ["application/json", "application/json", "text/plain", "application/json; charset=latin-1"]))
    elif kind == "form":
        form = draw(st.dictionaries(st.sampled_from(FORM_FIELDS),
                                    st.one_of(st.sampled_from(NASTY_TEXT + NASTY_DATES),
                                              st.text(max_size=20)), max_size=6))
        if draw(st.integers(0, 3)):
            form["csrf"] = world.editor_csrf if rule.startswith("/editor/") else world.buyer_csrf
        body = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in form.items()}).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif kind == "bytes":
        body = draw(st.binary(max_size=64))
        headers["Content-Type"] = draw(header_text())
    if rule.startswith(("/hubspot/", "/webhooks/")):
        stamp = str(int(time.time() * 1000))
        if GARBAGE_TIMESTAMPS:
            stamp = draw(st.one_of(st.just(stamp), st.just(stamp), st.sampled_from(
                ["\u00b2", "9" * 400, "", "-1", "0", "1" * 14]).map(_header_safe), header_text()))
        if stamp:
            headers["X-HubSpot-Request-Timestamp"] = stamp
        uri = PUBLIC + path + (f"?{query_string}" if query_string else "")
        if draw(st.integers(0, 3)):
            headers["X-HubSpot-Signature-v3"] = SignatureVerifier(SECRET).sign(
                method, uri, body or b"", stamp)
        else:
            headers["X-HubSpot-Signature-v3"] = draw(header_text())
    return Request(method, path, query_string, headers, body)


def send(client, request: Request):
    kwargs = {"headers": request.headers}
    if request.body is not None:
        kwargs["data"] = request.body
    if request.query:
        kwargs["query_string"] = request.query
    return client.open(request.path, method=request.method, **kwargs)


class _Tracebacks(logging.Handler):
    """Keeps where the last unhandled error of a request was raised."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.where: list[str] = []

    def emit(self, record):
        if record.exc_info and record.exc_info[2] is not None:
            frames = traceback.extract_tb(record.exc_info[2])
            ours = [f for f in frames if "/webapp/" in f.filename or "/connector/" in f.filename]
            last = (ours or frames)[-1]
            self.where.append(f"{record.exc_info[0].__name__} at "
                              f"{last.filename.split('/e/')[-1]}:{last.lineno} ({last.name})")


def _tracebacks(app) -> _Tracebacks:
    found = [h for h in app.logger.handlers if isinstance(h, _Tracebacks)]
    if found:
        return found[0]
    handler = _Tracebacks()
    app.logger.addHandler(handler)
    return handler


def check(app, client, request: Request) -> str | None:
    """None when the answer is acceptable; else what was wrong."""
    before = snapshot(app)
    tracebacks = _tracebacks(app)
    tracebacks.where.clear()
    response = send(client, request)
    if response.status_code >= 500:
        where = tracebacks.where[-1] if tracebacks.where else "no traceback"
        return f"{response.status_code} [{where}] for {request.describe()}"
    if 400 <= response.status_code < 500 and snapshot(app) != before:
        return f"{response.status_code} changed the database: {request.describe()}"
    return None
