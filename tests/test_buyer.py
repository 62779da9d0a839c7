"""Buyer links, the buyer page, buyer actions and the calendar feed (HTTP level, no browser)."""
from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from conftest import CSRF, TODAY, make_link, milestone, milestones_of, path_of, snapshot, tenant_of
from sqlalchemy import event, select

from webapp import outbox, plans, sharing
from webapp.db import database, session
from webapp.errors import NotFound
from webapp.models import Activity, Comment, DateProposal, ShareLink


@pytest.fixture
def link(api, plan):
    return make_link(api, plan["id"], label="Acme team")


@pytest.fixture
def page_path(link):
    return path_of(link["url"])


def csrf_of(client, path):
    response = client.get(path)
    assert response.status_code == 200
    return CSRF.search(response.get_data(as_text=True)).group(1)


def identify(client, path, name="Dana Buyer", email="dana@acme.example"):
    token = csrf_of(client, path)
    response = client.post(path + "/identify", data={"csrf": token, "name": name, "email": email})
    assert response.status_code == 303, response.get_data(as_text=True)
    return csrf_of(client, path)


# ---- share links -----------------------------------------------------------------


def test_share_link_is_shown_once_and_only_its_hash_is_stored(app, api, plan, link):
    token = link["url"].rsplit("/", 1)[1]
    assert len(token) >= 43  # 256 bits, base64url
    assert link["active"] is True and link["label"] == "Acme team"
    assert token not in repr(snapshot(app))
    with app.app_context():
        row = session().scalars(select(ShareLink)).one()
        assert row.token_hash == sharing.hash_token(token)
    listed = api.get(f"/plans/{plan['id']}/share-links").json["items"]
    assert [x["id"] for x in listed] == [link["id"]]
    assert "url" not in listed[0] and token not in repr(listed)


def test_revoked_expired_and_unknown_links_all_answer_the_same_404(app, api, client, plan, link, page_path):
    assert client.get(page_path).status_code == 200
    expired = make_link(api, plan["id"], expires_at=(datetime.now(UTC) + timedelta(seconds=60)).isoformat())
    with app.app_context():
        s = session()
        row = s.get(ShareLink, expired["id"])
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        s.commit()
    assert api.delete(f"/share-links/{link['id']}").status_code == 204
    bodies = set()
    for path in (page_path, path_of(expired["url"]), "/p/" + "A" * 43, page_path + "/calendar.ics"):
        response = client.get(path, headers={"Accept": "text/html"})
        assert response.status_code == 404
        body = response.get_data(as_text=True)
        assert "Acme rollout" not in body
        bodies.add(body)
        assert response.headers["X-Robots-Tag"].startswith("noindex")
    assert len(bodies) == 1
    assert api.get(f"/plans/{plan['id']}/share-links").json["items"][-1]["active"] is False


def test_share_link_validation_and_tenancy(api, other_api, plan, link):
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert api.post(f"/plans/{plan['id']}/share-links", json={"expires_at": past}).status_code == 422
    assert api.post(f"/plans/{plan['id']}/share-links", json={"nope": 1}).status_code == 422
    assert other_api.get(f"/plans/{plan['id']}/share-links").status_code == 404
    assert other_api.post(f"/plans/{plan['id']}/share-links", json={}).status_code == 404
    assert other_api.delete(f"/share-links/{link['id']}").status_code == 404
    assert api.post(f"/plans/{plan['id']}/share-links").status_code == 201  # body optional


def test_current_or_new_link_reuses_then_rotates(app, plan, keys):
    with app.app_context():
        s = session()
        p = plans.get_plan(s, tenant_of(s, plan), plan["id"])
        first = sharing.current_or_new_link(s, p, "tests", keys)
        s.commit()
        assert sharing.current_or_new_link(s, p, "tests", keys) == first
        rotated = sharing.current_or_new_link(s, p, "tests", keys, rotate=True)
        s.commit()
        assert rotated != first
        with pytest.raises(NotFound):
            sharing.resolve(s, first.rsplit("/", 1)[1])
        assert sharing.resolve(s, rotated.rsplit("/", 1)[1]).plan_id == plan["id"]


# ---- the page ----------------------------------------------------------------------


def test_page_headers(client, page_path):
    response = client.get(page_path)
    h = response.headers
    assert h["Referrer-Policy"] == "no-referrer"
    assert "noindex" in h["X-Robots-Tag"]
    assert h["Cache-Control"] == "no-store"
    csp = h["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert "script-src 'self'" in csp
    # no third-party origins, except the click-to-load video players in frame-src
    assert "http" not in ";".join(d for d in csp.split(";") if not d.strip().startswith("frame-src"))


def test_page_content_order_and_internal_items_absent(api, client, plan, page_path):
    pid = plan["id"]
    api.patch(f"/plans/{pid}", json={"value_summary": "Because VALUE-FIRST matters",
                                     "objectives": {"challenges": ["Slow deals"]},
                                     "constraints": {"budget": "$10k", "go_live_date": "2027-03-01"},
                                     "resources": [{"title": "Deck", "url": "https://example.com/deck"}]})
    stage = plan["stages"][0]["id"]
    secret = api.post(f"/plans/{pid}/milestones", json={"stage_id": stage, "title": "SECRET-DISCOUNT",
                                                        "internal": True}).json
    visible = milestone(plan, "Discovery call")
    with client.application.app_context():
        s = session()
        p = plans.get_plan(s, tenant_of(s, plan), pid)
        m = plans.get_milestone(s, p.tenant_id, visible["id"])
        sharing.add_comment(s, p, m, "INTERNAL-NOTE-TEXT", side="seller", name="Rep", email="",
                            actor="rep", internal=True)
        m2 = plans.get_milestone(s, p.tenant_id, secret["id"])
        sharing.add_comment(s, p, m2, "NOTE-ON-SECRET", side="seller", name="Rep", email="", actor="rep")
        s.commit()
    api.post(f"/plans/{pid}/stakeholders", json={"name": "Pat Buyer", "side": "buyer", "role": "approver"})
    html = client.get(page_path).get_data(as_text=True)
    for absent in ("SECRET-DISCOUNT", "INTERNAL-NOTE-TEXT", "NOTE-ON-SECRET", secret["id"]):
        assert absent not in html
    order = [html.index(x) for x in ('id="why-h"', "VALUE-FIRST", 'id="glance-h"', 'id="obj-h"', 'id="tl-h"', 'id="ms-h"',
                                     'id="people-h"', "Pat Buyer", 'id="con-h"', "$10k", 'id="res-h"',
                                     "https://example.com/deck")]
    assert order == sorted(order)
    assert "Approver" in html and "1 Mar 2027" in html and "Add to calendar" in html
    assert 'role="progressbar"' in html and "Today" in html


def test_overdue_is_plain(api, client, plan, page_path):
    m = milestone(plan, "Discovery call")
    api.patch(f"/milestones/{m['id']}", json={"due_date": (TODAY - timedelta(days=3)).isoformat()})
    html = client.get(page_path).get_data(as_text=True)
    assert "Overdue by 3 days" in html and "1 overdue" in html


XSS = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'&'


def test_text_fields_are_escaped(api, client, plan, page_path):
    pid = plan["id"]
    api.patch(f"/plans/{pid}", json={
        "title": XSS, "value_summary": XSS,
        "objectives": {"challenges": [XSS], "ideal_results": [XSS], "deliverables": [XSS]},
        "constraints": {"budget": XSS[:200], "dates": [{"label": XSS, "date": "2027-01-01"}]},
        "resources": [{"title": XSS, "url": "https://example.com/?q=<script>"}]})
    m = milestone(plan, "Discovery call")
    api.patch(f"/milestones/{m['id']}", json={"title": XSS, "description": XSS, "owner_side": "buyer",
                                              "owners": [{"name": XSS[:200], "email": ""}]})
    api.patch(f"/stages/{plan['stages'][0]['id']}", json={"name": XSS})
    api.post(f"/plans/{pid}/stakeholders", json={"name": XSS, "title": XSS, "side": "buyer"})
    token = identify(client, page_path, name=XSS[:100])
    client.post(f"{page_path}/m/{m['id']}/comment", data={"csrf": token, "body": XSS})
    html = client.get(page_path).get_data(as_text=True)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10


def test_javascript_links_are_refused_and_never_rendered(app, api, client, plan, page_path):
    response = api.patch(f"/plans/{plan['id']}", json={
        "resources": [{"title": "x", "url": "javascript:alert(1)"}]})
    assert response.status_code == 422
    with app.app_context():  # even a row written behind the API's back is not linked
        s = session()
        from webapp.models import Plan

        p = s.get(Plan, plan["id"])
        p.resources = [{"title": "Evil", "url": "javascript:alert(1)"},
                       {"title": "Data", "url": "data:text/html,hi"}]
        s.commit()
    html = client.get(page_path).get_data(as_text=True)
    assert "javascript:" not in html and "data:text" not in html


# ---- buyer actions ---------------------------------------------------------------------


def test_buyer_completes_a_buyer_milestone_through_the_domain(app, client, plan, page_path,
                                                              monkeypatch):
    calls = []
    record = outbox.record
    monkeypatch.setattr(outbox, "record", lambda s, p: (calls.append(p.id), record(s, p)))
    token = identify(client, page_path)
    m = milestone(plan, "Identify problems to solve")  # buyer-owned
    response = client.post(f"{page_path}/m/{m['id']}/done", data={"csrf": token, "done": "1"})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"#m-{m['id']}")
    monkeypatch.undo()
    assert calls == [plan["id"]]
    with app.app_context():
        s = session()
        row = plans.get_milestone(s, tenant_of(s, plan), m["id"])
        assert row.status == "done" and row.completed_by == "buyer:Dana Buyer <dana@acme.example>"
        actors = [a.actor for a in s.scalars(select(Activity).where(Activity.action == "milestone.updated"))]
        assert "buyer:Dana Buyer <dana@acme.example>" in actors
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Marked as done" in html and "Mark as not done" in html
    token = CSRF.search(html).group(1)
    client.post(f"{page_path}/m/{m['id']}/done", data={"csrf": token, "done": "0"})
    assert "Marked as not done" in client.get(page_path + "?ok=undone").get_data(as_text=True)


def test_seller_milestones_cannot_be_completed_and_refusals_are_explained(app, client, plan, page_path):
    m = milestone(plan, "Customized product demo")  # seller-owned
    token = csrf_of(client, page_path)
    before = snapshot(app)
    response = client.post(f"{page_path}/m/{m['id']}/done", data={"csrf": token, "done": "1"})
    assert response.status_code == 400 and "Tell us your name" in response.get_data(as_text=True)
    token = identify(client, page_path)
    before = snapshot(app)
    response = client.post(f"{page_path}/m/{m['id']}/done", data={"csrf": token, "done": "1"})
    assert response.status_code == 422
    assert "only milestones owned by your side" in response.get_data(as_text=True).lower()
    assert snapshot(app) == before


def test_csrf_origin_and_input_limits(app, client, plan, page_path):
    token = identify(client, page_path)
    m = milestone(plan, "Discovery call")
    before = snapshot(app)
    response = client.post(f"{page_path}/m/{m['id']}/comment", data={"csrf": "forged", "body": "hi"})
    assert response.status_code == 403 and "out of date" in response.get_data(as_text=True)
    response = client.post(f"{page_path}/m/{m['id']}/comment", data={"csrf": token, "body": "hi"},
                           headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403 and "another website" in response.get_data(as_text=True)
    response = client.post(f"{page_path}/m/{m['id']}/comment", data={"csrf": token, "body": "x" * 2001})
    assert response.status_code == 422 and "At most 2000 characters" in response.get_data(as_text=True)
    response = client.post(f"{page_path}/m/{m['id']}/comment", data={"csrf": token, "body": "  "})
    assert response.status_code == 422 and "Write something first" in response.get_data(as_text=True)
    assert snapshot(app) == before
    response = client.post(f"{page_path}/m/{m['id']}/comment", data={"csrf": token, "body": "Looks good"},
                           headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 303
    with app.app_context():
        assert [c.body for c in session().scalars(select(Comment))] == ["Looks good"]


def test_identity_is_validated(client, page_path):
    token = csrf_of(client, page_path)
    response = client.post(page_path + "/identify", data={"csrf": token, "name": "Dana", "email": "nope"})
    assert response.status_code == 422 and "email" in response.get_data(as_text=True)
    response = client.post(page_path + "/identify", data={"csrf": token, "name": "", "email": "a@b.co"})
    assert response.status_code == 422


def test_rate_limits_per_link(app, client, plan, page_path):
    app.config["BUYER_RATE_LIMITS"] = {"ip": (100, 600), "link": (3, 600)}
    token = identify(client, page_path)  # 1
    m = milestone(plan, "Discovery call")
    assert client.post(f"{page_path}/m/{m['id']}/comment", data={"csrf": token, "body": "a"}).status_code == 303
    assert client.post(f"{page_path}/m/{m['id']}/comment", data={"csrf": token, "body": "b"}).status_code == 303
    response = client.post(f"{page_path}/m/{m['id']}/comment", data={"csrf": token, "body": "c"})
    assert response.status_code == 429 and "Too many updates" in response.get_data(as_text=True)
    assert response.headers["Retry-After"]


def test_rate_limits_per_ip(app, client, plan, page_path):
    app.config["BUYER_RATE_LIMITS"] = {"ip": (1, 600), "link": (100, 600)}
    identify(client, page_path)
    token = csrf_of(client, page_path)
    m = milestone(plan, "Discovery call")
    response = client.post(f"{page_path}/m/{m['id']}/comment", data={"csrf": token, "body": "a"})
    assert response.status_code == 429


def test_confirm_and_propose_dates(app, client, plan, page_path):
    token = identify(client, page_path)
    m = milestone(plan, "Customized product demo")
    response = client.post(f"{page_path}/m/{m['id']}/date", data={"csrf": token, "action": "confirm"})
    assert response.status_code == 303
    assert "Date confirmed by Dana Buyer" in client.get(page_path).get_data(as_text=True)
    response = client.post(f"{page_path}/m/{m['id']}/date",
                           data={"csrf": token, "action": "propose", "date": "2027-01-20", "reason": ""})
    assert response.status_code == 422 and "say why" in response.get_data(as_text=True).lower()
    response = client.post(f"{page_path}/m/{m['id']}/date",
                           data={"csrf": token, "action": "propose", "date": "not a date", "reason": "x"})
    assert response.status_code == 422
    response = client.post(f"{page_path}/m/{m['id']}/date",
                           data={"csrf": token, "action": "propose", "date": "2027-01-20",
                                 "reason": "Board meets later"})
    assert response.status_code == 303
    html = client.get(page_path).get_data(as_text=True)
    assert "Dana Buyer proposed 20 Jan 2027" in html
    with app.app_context():
        rows = session().scalars(select(DateProposal).order_by(DateProposal.at)).all()
        assert [(r.kind, r.status) for r in rows] == [("confirm", "confirmed"), ("propose", "pending")]


def test_actions_on_internal_or_foreign_milestones_are_404(api, other_api, client, plan, page_path):
    token = identify(client, page_path)
    secret = api.post(f"/plans/{plan['id']}/milestones", json={
        "stage_id": plan["stages"][0]["id"], "title": "Hidden", "internal": True, "owner_side": "buyer"}).json
    other = other_api.post("/plans", json={"title": "Other", "template": "quick"}).json
    foreign = other["stages"][0]["milestones"][0]
    for mid in (secret["id"], foreign["id"]):
        response = client.post(f"{page_path}/m/{mid}/comment", data={"csrf": token, "body": "x"})
        assert response.status_code == 404


# ---- calendar -----------------------------------------------------------------------------


def test_calendar_is_valid_rfc5545(api, client, plan, page_path):
    m = milestone(plan, "Discovery call")
    long_title = "Ünïcödé, commas; semicolons \\ backslashes and a long title " * 3
    api.patch(f"/milestones/{m['id']}", json={"title": long_title[:200], "description": "line1\nline2"})
    response = client.get(page_path + "/calendar.ics")
    assert response.status_code == 200 and response.mimetype == "text/calendar"
    raw = response.data
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    lines = raw.split(b"\r\n")[:-1]
    assert all(len(line) <= 75 for line in lines)
    for line in lines:
        line.decode("utf-8")  # folding never splits a character
    unfolded = raw.decode().replace("\r\n ", "")
    assert "\\, commas\\; semicolons \\\\ backslashes" in unfolded
    assert "line1\\nline2" in unfolded
    assert unfolded.count("BEGIN:VEVENT") == 11
    uid = re.search(rf"UID:({m['id']}@[^\r]+)", unfolded).group(1)
    seq = int(re.search(rf"UID:{m['id']}@[^\r]+\r\nDTSTAMP:\w+\r\nLAST-MODIFIED:\w+\r\nSEQUENCE:(\d+)", unfolded).group(1))
    api.patch(f"/milestones/{m['id']}", json={"due_date": "2027-02-01", "reason": "moved"})
    again = client.get(page_path + "/calendar.ics").data.decode().replace("\r\n ", "")
    assert f"UID:{uid}" in again
    seq2 = int(re.search(rf"UID:{m['id']}@[^\r]+\r\nDTSTAMP:\w+\r\nLAST-MODIFIED:\w+\r\nSEQUENCE:(\d+)", again).group(1))
    assert seq2 > seq and "DTSTART;VALUE=DATE:20270201" in again


def test_calendar_leaves_out_internal_milestones(api, client, plan, page_path):
    api.post(f"/plans/{plan['id']}/milestones", json={
        "stage_id": plan["stages"][0]["id"], "title": "Hidden-cal", "internal": True, "due_date": "2027-01-01"})
    assert b"Hidden-cal" not in client.get(page_path + "/calendar.ics").data


# ---- queries per page view -----------------------------------------------------------------


def _count_queries(app, client, path) -> int:
    """SQL statements of one view: through SQLAlchemy, and on db.FastRead's bare cursor."""
    from webapp.db import FastRead

    engine = database(app).engine
    count = {"n": 0}

    me = threading.get_ident()

    def before(*_args, **_kw):
        if threading.get_ident() == me:  # not the in-process job runner's polls
            count["n"] += 1

    read = FastRead.first

    def counted(self, **params):
        count["n"] += 1
        return read(self, **params)

    event.listen(engine, "before_cursor_execute", before)
    FastRead.first = counted
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", before)
        FastRead.first = read
    return count["n"]


def test_queries_per_page_view_do_not_grow_with_the_plan(app, api, client, plan, page_path,
                                                         monkeypatch):
    from webapp.blueprints import buyer

    monkeypatch.setattr(buyer, "monotonic", lambda: 1000.0)  # the recheck interval: frozen
    small = _count_queries(app, client, page_path)
    stage = plan["stages"][1]["id"]
    token = identify(client, page_path)
    for i in range(30):
        m = api.post(f"/plans/{plan['id']}/milestones", json={
            "stage_id": stage, "title": f"Extra {i}", "owner_side": "buyer", "due_date": "2027-01-05"}).json
        client.post(f"{page_path}/m/{m['id']}/comment", data={"csrf": token, "body": f"c{i}"})
    for i in range(5):
        api.post(f"/plans/{plan['id']}/stakeholders", json={"name": f"P{i}", "side": "buyer"})
    big = _count_queries(app, client, page_path)
    assert big == small  # a page rendered afresh (the plan changed since the last view)
    assert small <= 9  # 7, branding, content blocks (views are counted without a write)
    # unchanged plan: the rendered page is reused, and so is the read of the link and its
    # versions for BUYER_LINK_RECHECK_SECONDS; then it is read again, once
    assert _count_queries(app, client, page_path) == 0
    monkeypatch.setattr(buyer, "monotonic", lambda: 1000.0 + buyer.DEFAULT_RECHECK_SECONDS)
    assert _count_queries(app, client, page_path) == 1


def test_reused_pages_are_never_stale(api, client, plan, page_path):
    m = milestone(plan, "Discovery call")
    assert "Renamed step" not in client.get(page_path).get_data(as_text=True)
    api.patch(f"/milestones/{m['id']}", json={"title": "Renamed step"})
    assert "Renamed step" in client.get(page_path).get_data(as_text=True)
    token = identify(client, page_path)  # the viewer is part of the key
    html = client.get(page_path).get_data(as_text=True)
    assert "You are Dana Buyer" in html and CSRF.search(html).group(1) == token
    other = client.application.test_client()
    html = other.get(page_path).get_data(as_text=True)
    assert "You are Dana Buyer" not in html and CSRF.search(html).group(1) != token


def test_share_link_and_editor_link_responses_match_the_openapi_document(api, client, plan):
    import jsonschema

    spec = client.get("/api/v1/openapi.json").json

    def check(method, path, response):
        op = spec["paths"][path][method]["responses"][str(response.status_code)]
        schema = next(iter(op["content"].values()))["schema"]
        jsonschema.validate(response.json, {**schema, "components": spec["components"]},
                            cls=jsonschema.Draft202012Validator)

    pid = plan["id"]
    check("post", "/plans/{plan_id}/share-links", api.post(f"/plans/{pid}/share-links", json={"label": "a"}))
    check("get", "/plans/{plan_id}/share-links", api.get(f"/plans/{pid}/share-links"))
    check("post", "/plans/{plan_id}/editor-link", api.post(f"/plans/{pid}/editor-link"))
    check("post", "/plans/{plan_id}/share-links", api.post(f"/plans/{pid}/share-links", json={"label": 5}))


# ---- page speed and the page cache (issue 10, F2 and item 9) ------------------------


def _plan_with(api, milestones: int) -> str:
    """A quick-template plan with exactly `milestones` milestones, a stakeholder, and a link."""
    plan = api.post("/plans", json={"title": f"{milestones} steps", "template": "quick",
                                    "start_date": TODAY.isoformat()}).json
    have = milestones_of(plan)
    for m in have[milestones:]:
        assert api.delete(f"/milestones/{m['id']}").status_code == 204
    stage = plan["stages"][0]["id"]
    for i in range(milestones - len(have)):
        response = api.post(f"/plans/{plan['id']}/milestones", json={
            "stage_id": stage, "title": f"Step {i}", "owner_side": "buyer",
            "description": "What done looks like.", "due_date": "2027-01-05"})
        assert response.status_code == 201, response.json
    api.post(f"/plans/{plan['id']}/stakeholders", json={"name": "Pat", "side": "buyer"})
    plan = api.get(f"/plans/{plan['id']}").json
    assert len(milestones_of(plan)) == milestones
    return path_of(make_link(api, plan["id"])["url"])


def test_sql_statements_per_view_are_the_same_for_3_and_50_milestones(app, api, client,
                                                                      monkeypatch):
    from webapp.blueprints import buyer

    monkeypatch.setattr(buyer, "monotonic", lambda: 1000.0)  # the recheck interval never ends
    small, big = _plan_with(api, 3), _plan_with(api, 50)
    fresh = [_count_queries(app, client, small), _count_queries(app, client, big)]
    reused = [_count_queries(app, client, small), _count_queries(app, client, big)]
    assert fresh[0] == fresh[1] <= 9  # the link, the plan and its parts, branding, content
    # unchanged plan: nothing within BUYER_LINK_RECHECK_SECONDS of the last read (the view
    # is counted in memory or Redis: webapp/view_counter.py)
    assert reused == [0, 0]


def _cache(app):
    from webapp.blueprints.buyer import page_cache

    with app.app_context():
        return page_cache()


def test_edit_view_rounds_keep_one_page_per_link(app, api, client, plan, page_path):
    """The F2 attack: every edit is a new version; the cache keeps the newest page only."""
    cache = _cache(app)
    for i in range(6):
        response = api.patch(f"/plans/{plan['id']}", json={"title": f"Take {i}"})
        assert response.status_code == 200, response.json
        assert f"Take {i}" in client.get(page_path).get_data(as_text=True)
        assert len(cache) == 1
    identify(client, page_path)  # a second viewer of the same version: a second variant
    assert len(cache) == 2
    assert api.patch(f"/plans/{plan['id']}", json={"title": "Final"}).status_code == 200
    assert "Final" in client.get(page_path).get_data(as_text=True)
    assert len(cache) == 1  # both pages of the old version went with it


def test_page_cache_is_bounded_in_bytes_least_recently_used_first():
    from webapp.blueprints.buyer import ENTRY_OVERHEAD, PageCache

    cache = PageCache(max_bytes=8 * 1024)
    page = b"x" * (1000 - ENTRY_OVERHEAD)  # 1,000 bytes with its overhead
    for i in range(8):
        cache.put(f"link{i}", (1, TODAY), (None, ""), page)
    assert cache.get("link0", (1, TODAY), (None, "")) == page  # now the most recently used
    cache.put("link8", (1, TODAY), (None, ""), page)
    cache.put("link9", (1, TODAY), (None, ""), page)
    assert cache.size <= 8 * 1024 and len(cache) == 8
    assert cache.get("link1", (1, TODAY), (None, "")) is None  # least recently used: gone
    assert cache.get("link0", (1, TODAY), (None, "")) == page
    cache.put("huge", (1, TODAY), (None, ""), b"x" * 1025)  # over an eighth of the budget
    assert cache.get("huge", (1, TODAY), (None, "")) is None


def test_page_cache_drops_older_versions_and_refuses_late_renders():
    from webapp.blueprints.buyer import PageCache

    cache = PageCache()
    cache.put("link", (1, TODAY), (None, ""), b"v1 anonymous")
    cache.put("link", (1, TODAY), ("dana", ""), b"v1 dana")
    cache.put("other", (1, TODAY), (None, ""), b"other v1")
    cache.put("link", (2, TODAY), (None, ""), b"v2 anonymous")
    assert cache.get("link", (1, TODAY), ("dana", "")) is None
    assert cache.get("link", (1, TODAY), (None, "")) is None
    assert cache.get("other", (1, TODAY), (None, "")) == b"other v1"
    cache.put("link", (1, TODAY), ("dana", ""), b"v1 dana, rendered late")
    assert cache.get("link", (1, TODAY), ("dana", "")) is None
    assert len(cache) == 2 and cache.size == sum(len(p) + 256 for p in (b"v2 anonymous", b"other v1"))


def test_pooled_connections_closed_by_the_server_are_replaced_unseen(app, client, page_path,
                                                                     monkeypatch):
    """The pool pings only connections idle for a while (webapp/db.py): those recover at
    checkout; one used a moment ago fails its statement, and the buyer page reads again."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from webapp import db

    engine = database(app).engine
    if engine.dialect.name != "postgresql":
        pytest.skip("needs a database server that can close our connections (TEST_DATABASE_URL)")

    def close_pooled_connections():  # of both pools (the page's first read uses db.reads)
        pids = []
        for pool in (engine, database(app).reads):
            with pool.connect() as conn:
                pids += [pid for (pid,) in conn.execute(text("SELECT pg_backend_pid()"))]
        with create_engine(engine.url, poolclass=NullPool).connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE pid = ANY(:pids)"), {"pids": pids})
            admin.commit()

    app.config["BUYER_LINK_RECHECK_SECONDS"] = 0  # every view reads the link
    assert client.get(page_path).status_code == 200
    close_pooled_connections()
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 1e9)  # no ping: the page's read fails, once
    assert client.get(page_path).status_code == 200
    close_pooled_connections()
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)  # idle: pinged, replaced at checkout
    assert client.get("/healthz").status_code == 200


def test_every_decision_role_has_a_label_on_the_buyer_page_and_in_the_editor(api, client, plan):
    """The analytics' coverage roles (economic buyer, technical, legal, security) are real roles:
    the buyer page names them and the editor offers them."""
    for name, role in [("Sam", "security"), ("Eve", "economic_buyer")]:
        response = api.post(f"/plans/{plan['id']}/stakeholders",
                            json={"name": name, "side": "buyer", "role": role})
        assert response.status_code == 201, response.json
    html = client.get(path_of(make_link(api, plan["id"])["url"])).get_data(as_text=True)
    assert "Security" in html and "Economic buyer" in html
    from test_editor import open_editor

    editor = client.get(open_editor(api, client, plan["id"])).get_data(as_text=True)
    assert '<option value="economic_buyer"' in editor and ">Legal</option>" in editor


def test_a_page_cached_by_another_process_follows_revocation_edits_and_branding(
        app, api, client, plan, link, page_path, monkeypatch):
    """Two web processes (two apps on one database): what one commits, the other's page shows
    within BUYER_LINK_RECHECK_SECONDS (its remembered read of the link, plan version and
    branding); the process that commits shows it at once."""
    from webapp import branding, create_app
    from webapp.blueprints import buyer

    ticks = [1000.0]
    monkeypatch.setattr(buyer, "monotonic", lambda: ticks[0])
    other = create_app({k: app.config[k] for k in (
        "DATABASE_URL", "TESTING", "TODAY", "LOG_LEVEL", "SECRET_KEY", "JOBS_MODE",
        "RATE_LIMIT_NAMESPACE", "TOKEN_ENCRYPTION_KEYS")})
    try:
        elsewhere = other.test_client()

        def later(text):
            ticks[0] += buyer.DEFAULT_RECHECK_SECONDS
            return text in elsewhere.get(page_path).get_data(as_text=True)

        assert "Acme rollout" in elsewhere.get(page_path).get_data(as_text=True)
        assert api.patch(f"/plans/{plan['id']}", json={"title": "Renamed here"}).status_code == 200
        assert "Renamed here" in client.get(page_path).get_data(as_text=True)  # this process
        assert later("Renamed here")
        with app.app_context():
            s = session()
            branding.save(s, tenant_of(s, plan), {"company_name": "Seller Group"})
            s.commit()
        assert later("Seller Group")
        assert api.delete(f"/share-links/{link['id']}").status_code == 204
        assert client.get(page_path).status_code == 404  # this process: at once
        assert elsewhere.get(page_path).status_code == 200  # the other: within the interval
        ticks[0] += buyer.DEFAULT_RECHECK_SECONDS
        assert elsewhere.get(page_path).status_code == 404
    finally:
        database(other).engine.dispose()


def test_an_expiry_ends_a_remembered_link_on_the_dot(app, api, client, plan):
    made = make_link(api, plan["id"], expires_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    path = path_of(made["url"])
    assert client.get(path).status_code == 200  # read and remembered
    app.config["CLOCK"] = lambda: datetime.now(UTC) + timedelta(hours=1, seconds=1)
    assert client.get(path).status_code == 404


def test_a_link_read_begun_before_a_commit_is_not_remembered():
    """A view reads the link, another request of this process commits a revocation, then the
    view stores what it read: LinkChecks drops it, so this process never serves the old state."""
    from webapp.blueprints.buyer import LinkChecks

    checks = LinkChecks(seconds=60)
    epoch = checks.epoch
    checks.forget()  # the after_commit hook
    checks.put("token", "link", (1, ""), epoch)
    assert checks.get("token") is None
    checks.put("token", "link", (1, ""), checks.epoch)
    assert checks.get("token") == ("link", (1, ""))
    assert LinkChecks(seconds=0).get("token") is None
