"""F2: what one plan may hold. Each limit is a 422 problem naming it (`limit`, `max`), and
the refused request changes nothing. Rows up to the limit are inserted directly (fast); the
request that would pass it goes through the API (or the domain, for buyer comments)."""
from __future__ import annotations

import pytest
from conftest import milestones_of, snapshot

from webapp import plans, sharing
from webapp.db import session
from webapp.domain_errors import LimitReached
from webapp.models import Comment, Milestone, Plan, ShareLink, Stage, Stakeholder, new_id


def _fill(app, plan_id: str, make, up_to: int) -> None:
    with app.app_context():
        s = session()
        plan = s.get(Plan, plan_id)
        for i in range(up_to):
            s.add(make(plan, i))
        s.commit()


def _assert_limit(response, name: str, maximum: int) -> None:
    assert response.status_code == 422, response.json
    assert response.json["type"].endswith("/limit-reached")
    assert (response.json["limit"], response.json["max"]) == (name, maximum)


def test_milestones_per_plan(app, api, plan):
    stage_id = plan["stages"][0]["id"]
    have = len(milestones_of(plan))
    _fill(app, plan["id"], lambda p, i: Milestone(tenant_id=p.tenant_id, plan_id=p.id,
                                                  stage_id=stage_id, title=f"m{i}", position=50 + i),
          100 - have)
    before = snapshot(app)
    response = api.post(f"/plans/{plan['id']}/milestones", json={"stage_id": stage_id, "title": "one more"})
    _assert_limit(response, "milestones_per_plan", 100)
    assert snapshot(app) == before


def test_stages_per_plan(app, api, plan):
    _fill(app, plan["id"], lambda p, i: Stage(tenant_id=p.tenant_id, plan_id=p.id, name=f"s{i}",
                                              position=10 + i), 20 - len(plan["stages"]))
    before = snapshot(app)
    _assert_limit(api.post(f"/plans/{plan['id']}/stages", json={"name": "one more"}),
                  "stages_per_plan", 20)
    assert snapshot(app) == before


def test_stakeholders_per_plan(app, api, plan):
    _fill(app, plan["id"], lambda p, i: Stakeholder(tenant_id=p.tenant_id, plan_id=p.id,
                                                    name=f"p{i}", side="buyer", position=i), 100)
    before = snapshot(app)
    _assert_limit(api.post(f"/plans/{plan['id']}/stakeholders", json={"name": "x", "side": "buyer"}),
                  "stakeholders_per_plan", 100)
    assert snapshot(app) == before


def test_live_share_links_per_plan_revoked_ones_do_not_count(app, api, plan):
    def link(p, i):
        return ShareLink(id=new_id(), tenant_id=p.tenant_id, plan_id=p.id, token_hash=f"h{i}",
                         salt="s", created_by="t")

    _fill(app, plan["id"], link, 50)
    before = snapshot(app)
    _assert_limit(api.post(f"/plans/{plan['id']}/share-links", json={}),
                  "live_share_links_per_plan", 50)
    assert snapshot(app) == before
    first = api.get(f"/plans/{plan['id']}/share-links").json["items"][0]
    assert api.delete(f"/share-links/{first['id']}").status_code == 204
    assert api.post(f"/plans/{plan['id']}/share-links", json={}).status_code == 201


def test_comments_per_milestone(app, plan):
    m_id = milestones_of(plan)[0]["id"]
    _fill(app, plan["id"], lambda p, i: Comment(tenant_id=p.tenant_id, plan_id=p.id, milestone_id=m_id,
                                                side="buyer", author_name="b", body=f"c{i}"), 200)
    with app.app_context():
        s = session()
        p = plans.get_plan(s, s.get(Plan, plan["id"]).tenant_id, plan["id"])
        with pytest.raises(LimitReached) as refused:
            sharing.add_comment(s, p, s.get(Milestone, m_id), "one more", side="buyer", name="b",
                                email="", actor="buyer:b")
        assert (refused.value.limit, refused.value.max) == ("comments_per_milestone", 200)


def test_resources_are_bounded_by_the_schema(api, plan):
    resources = [{"title": f"r{i}", "url": "https://example.com"} for i in range(51)]
    response = api.patch(f"/plans/{plan['id']}", json={"resources": resources})
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "resources"

