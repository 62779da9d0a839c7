"""The rep editor: signed links, its session, framing rules and every operation."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from conftest import CSRF, milestone, path_of, snapshot
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from webapp import clock, sharing
from webapp.db import session
from webapp.models import Activity, Comment, DateProposal, Slip


def open_editor(api, client, plan_id):
    response = api.post(f"/plans/{plan_id}/editor-link")
    assert response.status_code == 200, response.json
    assert response.headers["Cache-Control"] == "no-store"
    response = client.get(path_of(response.json["url"]))
    assert response.status_code == 303
    page = f"/editor/plans/{plan_id}"
    assert response.headers["Location"].endswith(page)
    return page


class Editor:
    def __init__(self, client, page):
        self.client, self.page = client, page

    def html(self, path=None):
        response = self.client.get(path or self.page)
        assert response.status_code == 200, response.status_code
        return response.get_data(as_text=True)

    def do(self, op, expect=303, **fields):
        token = CSRF.search(self.html()).group(1)
        response = self.client.post(self.page + "/do", data={"csrf": token, "op": op, **fields})
        assert response.status_code == expect, response.get_data(as_text=True)[-3000:]
        return response


@pytest.fixture
def editor(api, client, plan):
    return Editor(client, open_editor(api, client, plan["id"]))


def test_editor_link_function_and_api(app, api, plan, keys):
    with app.test_request_context():
        url, expires_at = sharing.editor_link("t", plan["id"], "hubspot:user 1", keys)
        assert url.startswith(app.config["PUBLIC_BASE_URL"] + "/editor/open/")
        assert timedelta(minutes=14) < expires_at - clock.now() <= timedelta(minutes=15)
    assert api.post("/plans/" + "0" * 36 + "/editor-link").status_code == 404


def test_editor_headers_allow_only_crm_framing(client, editor):
    response = client.get(editor.page)
    csp = response.headers["Content-Security-Policy"]
    fa = csp.split("frame-ancestors", 1)[1]
    for origin in ("https://app.hubspot.com", "https://app-eu1.hubspot.com", "https://*.hubspot.com",
                   "https://*.lightning.force.com", "https://*.my.salesforce.com"):
        assert origin in fa
    assert "X-Frame-Options" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert "unsafe" not in csp


def test_https_cookie_is_cross_site_and_partitioned(app, api, client, plan):
    app.config["PUBLIC_BASE_URL"] = "https://plans.example.com"
    url = api.post(f"/plans/{plan['id']}/editor-link").json["url"]
    response = client.get(path_of(url))
    cookie = response.headers["Set-Cookie"]
    for part in ("Secure", "HttpOnly", "SameSite=None", "Partitioned", f"Path=/editor/plans/{plan['id']}"):
        assert part in cookie


def test_bad_expired_and_other_plan_sessions_are_refused(app, api, client, plan, editor):
    assert client.get("/editor/open/garbage").status_code == 401
    with app.app_context():
        s = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="mutualplan-editor-link")
        old = s.dumps({"t": "x", "p": plan["id"], "a": "a"})
    import time
    from unittest import mock

    with mock.patch("time.time", return_value=time.time() + 3600):
        assert client.get(f"/editor/open/{old}").status_code == 401
    other = api.post("/plans", json={"title": "Second"}).json
    assert client.get(f"/editor/plans/{other['id']}").status_code == 401  # cookie is per plan
    fresh = client.application.test_client()
    assert fresh.get(editor.page).status_code == 401
    assert "Open the plan again" in fresh.get(editor.page).get_data(as_text=True)


def test_csrf_and_origin_are_checked(app, client, editor):
    before = snapshot(app)
    response = client.post(editor.page + "/do", data={"csrf": "nope", "op": "stage-add", "name": "X"})
    assert response.status_code == 403
    token = CSRF.search(editor.html()).group(1)
    response = client.post(editor.page + "/do", data={"csrf": token, "op": "stage-add", "name": "X"},
                           headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert snapshot(app) == before


def test_edit_plan_fields(api, plan, editor):
    editor.do("plan", title="Renamed", value_summary="Why <b>now</b>", challenges="A\nB",
              ideal_results="C", deliverables="", budget="$5k", go_live_date="2027-04-01",
              start_date="2026-11-20", dates="Board | 2027-01-15",
              resources="Deck | https://example.com/d", version=str(api.get(f"/plans/{plan['id']}").json["version"]))
    doc = api.get(f"/plans/{plan['id']}").json
    assert doc["title"] == "Renamed" and doc["objectives"]["challenges"] == ["A", "B"]
    assert doc["constraints"] == {"budget": "$5k", "go_live_date": "2027-04-01",
                                  "dates": [{"label": "Board", "date": "2027-01-15"}]}
    assert doc["resources"] == [{"title": "Deck", "url": "https://example.com/d"}]
    assert "Why &lt;b&gt;now&lt;/b&gt;" in editor.html()
    response = editor.do("plan", expect=422, title="T", resources="Evil | javascript:alert(1)")
    assert "http and https" in response.get_data(as_text=True)
    response = editor.do("plan", expect=409, title="Stale", version="1")
    assert "Someone else changed this first" in response.get_data(as_text=True)


def test_stages_add_rename_reorder_delete(api, plan, editor):
    editor.do("stage-add", name="Extra")
    doc = api.get(f"/plans/{plan['id']}").json
    extra = doc["stages"][-1]
    assert extra["name"] == "Extra"
    editor.do("stage-rename", stage_id=extra["id"], name="Renamed")
    editor.do("stage-move", stage_id=extra["id"], dir="up")
    doc = api.get(f"/plans/{plan['id']}").json
    assert [s["name"] for s in doc["stages"]][-2:] == ["Renamed", "Implementation"]
    response = editor.do("stage-delete", expect=409, stage_id=doc["stages"][0]["id"])
    assert "Move or delete" in response.get_data(as_text=True)
    editor.do("stage-delete", stage_id=extra["id"])
    assert len(api.get(f"/plans/{plan['id']}").json["stages"]) == 4


def test_milestones_add_edit_with_slip_reason_move_delete(app, api, plan, editor):
    stage = plan["stages"][0]
    editor.do("milestone-add", stage_id=stage["id"], title="Pilot", owner_side="buyer",
              due_date="2026-12-20", internal="1")
    doc = api.get(f"/plans/{plan['id']}").json
    pilot = doc["stages"][0]["milestones"][-1]
    assert pilot["title"] == "Pilot" and pilot["internal"] is True and pilot["owner_side"] == "buyer"
    editor.do("milestone-edit", milestone_id=pilot["id"], version=str(pilot["version"]), title="Pilot 2",
              description="d", owner_side="both", owners="Sam <sam@acme.example>\nRiley",
              due_date="2027-01-10", reason="Holidays", status="in_progress", risk="at_risk",
              stage_id=stage["id"])
    m = api.get(f"/milestones/{pilot['id']}").json
    assert (m["title"], m["status"], m["risk"], m["internal"], m["due_date"]) == \
        ("Pilot 2", "in_progress", "at_risk", False, "2027-01-10")
    assert m["owners"] == [{"name": "Sam", "email": "sam@acme.example"}, {"name": "Riley", "email": ""}]
    with app.app_context():
        slip = session().scalars(select(Slip).where(Slip.milestone_id == pilot["id"])).one()
        assert slip.reason == "Holidays" and slip.actor.startswith("api:")
    assert "Holidays" in editor.html()
    editor.do("milestone-move", milestone_id=pilot["id"], dir="up")
    assert api.get(f"/milestones/{pilot['id']}").json["position"] == 2
    editor.do("milestone-move", milestone_id=pilot["id"], dir="down")
    editor.do("milestone-move", milestone_id=pilot["id"], dir="down")  # over the edge: next stage
    m = api.get(f"/milestones/{pilot['id']}").json
    assert m["stage_id"] == plan["stages"][1]["id"] and m["position"] == 0
    editor.do("milestone-delete", milestone_id=pilot["id"])
    assert api.get(f"/milestones/{pilot['id']}").status_code == 404
    onboarding = milestone(plan, "Onboarding")
    response = editor.do("milestone-edit", expect=422, milestone_id=onboarding["id"],
                         title="", owner_side="both", status="done", risk="on_track")
    assert "title" in response.get_data(as_text=True)


def test_stakeholders(api, plan, editor):
    editor.do("person-add", name="Pat", title="CFO", email="pat@acme.example", side="buyer", role="approver")
    person = api.get(f"/plans/{plan['id']}").json["stakeholders"][-1]
    assert (person["name"], person["role"]) == ("Pat", "approver")
    editor.do("person-edit", stakeholder_id=person["id"], name="Pat Lee", title="CFO", email="",
              side="buyer", role="decision_maker")
    assert api.get(f"/plans/{plan['id']}").json["stakeholders"][-1]["name"] == "Pat Lee"
    editor.do("person-delete", stakeholder_id=person["id"])
    assert api.get(f"/plans/{plan['id']}").json["stakeholders"] == []


def test_apply_template(api, editor, plan):
    editor.do("template", template="quick")
    doc = api.get(f"/plans/{plan['id']}").json
    assert len(doc["stages"]) == 5 and doc["progress"]["total"] == 15
    editor.do("template", expect=422, template="nope")


def test_buyer_proposal_comment_and_activity_show_and_can_be_decided(app, api, client, plan, editor):
    link = api.post(f"/plans/{plan['id']}/share-links", json={}).json
    buyer_page = path_of(link["url"])
    buyer = client.application.test_client()
    token = CSRF.search(buyer.get(buyer_page).get_data(as_text=True)).group(1)
    buyer.post(buyer_page + "/identify", data={"csrf": token, "name": "Dana", "email": "dana@acme.example"})
    m = milestone(plan, "Customized product demo")
    buyer.post(f"{buyer_page}/m/{m['id']}/date", data={"csrf": token, "action": "propose",
                                                       "date": "2027-01-05", "reason": "Budget freeze"})
    buyer.post(f"{buyer_page}/m/{m['id']}/comment", data={"csrf": token, "body": "Can we add SSO?"})
    html = editor.html()
    assert "Dana" in html and "Budget freeze" in html and "Can we add SSO?" in html
    assert "1 date proposal to answer" in html
    with app.app_context():
        proposal = session().scalars(select(DateProposal)).one()
    editor.do("decide", proposal_id=proposal.id, decision="accept")
    doc = api.get(f"/milestones/{m['id']}").json
    assert doc["due_date"] == "2027-01-05"
    with app.app_context():
        s = session()
        assert s.scalars(select(DateProposal)).one().status == "accepted"
        slip = s.scalars(select(Slip).where(Slip.milestone_id == m["id"])).one()
        assert "Budget freeze" in slip.reason
        assert "date.accepted" in [a.action for a in s.scalars(select(Activity))]
    response = editor.do("decide", expect=422, proposal_id=proposal.id, decision="decline")
    assert "already answered" in response.get_data(as_text=True)


def test_rep_comments_and_internal_notes(app, api, client, plan, editor):
    m = milestone(plan, "Discovery call")
    editor.do("comment", milestone_id=m["id"], body="Agenda attached")
    editor.do("comment", milestone_id=m["id"], body="Buyer is price-sensitive", internal="1")
    with app.app_context():
        rows = session().scalars(select(Comment).order_by(Comment.at)).all()
        assert [(c.side, c.internal) for c in rows] == [("seller", False), ("seller", True)]
    link = api.post(f"/plans/{plan['id']}/share-links", json={}).json
    html = client.application.test_client().get(path_of(link["url"])).get_data(as_text=True)
    assert "Agenda attached" in html and "price-sensitive" not in html
    assert "price-sensitive" in editor.html()


def test_buyer_links_create_copy_revoke(api, client, plan, editor):
    editor.do("link-create", label="Acme team", expires_in_days="30")
    html = editor.html()
    url = re.search(r'class="url" type="text" readonly value="([^"]+)"', html).group(1)
    assert "Acme team" in html and "expires" in html and 'data-copy="' in html
    assert client.application.test_client().get(path_of(url)).status_code == 200
    link_id = api.get(f"/plans/{plan['id']}/share-links").json["items"][0]["id"]
    editor.do("link-revoke", link_id=link_id)
    assert client.application.test_client().get(path_of(url)).status_code == 404
    assert "Revoked" in editor.html()
    editor.do("link-create", expect=422, label="x", expires_in_days="999")


def test_other_tenants_ids_are_404(other_api, editor):
    other = other_api.post("/plans", json={"title": "Theirs", "template": "quick"}).json
    foreign = other["stages"][0]["milestones"][0]
    response = editor.do("milestone-delete", expect=404, milestone_id=foreign["id"])
    assert other_api.get(f"/milestones/{foreign['id']}").status_code == 200
    assert response.status_code == 404
