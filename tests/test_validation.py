"""Bad input gets a clear 4xx problem document and changes nothing."""
import pytest
from conftest import snapshot


def first_milestone(plan):
    return plan["stages"][0]["milestones"][0]


BAD_PLAN_BODIES = [
    ({"title": ""}, 422, "title"),
    ({"title": "   "}, 422, "title"),
    ({"title": "x" * 201}, 422, "title"),
    ({"title": "ok", "template": "nope"}, 422, "template"),
    ({"title": "ok", "start_date": "2026-13-01"}, 422, "start_date"),
    ({"title": "ok", "start_date": 20261201}, 422, "start_date"),
    ({"title": "ok", "colour": "red"}, 422, "colour"),
    ({"title": "ok", "resources": [{"title": "x", "url": "javascript:alert(1)"}]}, 422, "resources.0.url"),
    ({"title": "ok", "resources": [{"title": "x", "url": "ftp://example.com/a"}]}, 422, "resources.0.url"),
    ({"title": "ok", "deal": {"provider": "pipedrive", "account_id": "1", "deal_id": "2"}}, 422, "deal.provider"),
    ({"title": "ok", "stakeholders": [{"name": "A", "side": "middle"}]}, 422, "stakeholders.0.side"),
    ({"title": "ok", "stakeholders": [{"name": "A", "side": "buyer", "email": "nope"}]}, 422,
     "stakeholders.0.email"),
    ({"title": "ok", "value_summary": "x" * 10_001}, 422, "value_summary"),
    ([1, 2], 400, None),
]


@pytest.mark.parametrize("body,status,field", BAD_PLAN_BODIES)
def test_bad_plan_bodies(app, api, plan, body, status, field):
    before = snapshot(app)
    response = api.post("/plans", json=body)
    assert response.status_code == status, response.json
    assert response.mimetype == "application/problem+json"
    assert {"type", "title", "status", "detail"} <= set(response.json)
    if field:
        assert field in [e["field"] for e in response.json["errors"]]
    assert snapshot(app) == before


BAD_MILESTONE_PATCHES = [
    ({"status": "finished"}, "status"),
    ({"risk": "red"}, "risk"),
    ({"owner_side": "nobody"}, "owner_side"),
    ({"due_date": "tomorrow"}, "due_date"),
    ({"title": None}, "title"),
    ({"internal": "yes"}, "internal"),
    ({"reason": "no date change"}, "reason"),
    ({"stage_id": "00000000-0000-0000-0000-000000000000"}, "stage_id"),
    ({"owners": [{"name": "A", "email": "not-an-email"}]}, "owners.0.email"),
    ({"position": -1}, "position"),
    ({"status": "done", "unknown": 1}, "unknown"),
]


@pytest.mark.parametrize("body,field", BAD_MILESTONE_PATCHES)
def test_bad_milestone_patches(app, api, plan, body, field):
    m = first_milestone(plan)
    before = snapshot(app)
    response = api.patch(f"/milestones/{m['id']}", json=body)
    assert response.status_code == 422, response.json
    assert field in [e["field"] for e in response.json["errors"]]
    assert snapshot(app) == before


def test_malformed_json(app, api, plan):
    before = snapshot(app)
    response = api.post("/plans", data='{"title": "x"', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["title"] == "Malformed JSON"
    assert snapshot(app) == before


def test_wrong_content_type(app, api, plan):
    before = snapshot(app)
    response = api.post("/plans", data="title=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"
    assert snapshot(app) == before


def test_bad_query_parameters(api):
    assert api.get("/plans?limit=0").status_code == 422
    assert api.get("/plans?limit=abc").status_code == 422
    assert api.get("/plans?provider=x").status_code == 422
    assert api.get("/plans?sort=title").status_code == 422


def test_bad_if_match(api, plan):
    response = api.patch(f"/plans/{plan['id']}", json={"title": "x"}, headers={"If-Match": "garbage"})
    assert response.status_code == 412


def test_unknown_route_and_method_are_problems(api, plan):
    missing = api.get("/nothing-here")
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    wrong = api.client.put(f"/api/v1/plans/{plan['id']}", headers={"Authorization": f"Bearer {api.key}"})
    assert wrong.status_code == 405 and "PATCH" in wrong.headers["Allow"]


def test_body_too_large(app, api):
    before = snapshot(app)
    response = api.post("/plans", data='{"title": "' + "x" * 300_000 + '"}',
                        headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert snapshot(app) == before


def test_failed_command_rolls_back(app, api, plan):
    """A domain error raised after some fields were applied leaves nothing behind."""
    m = first_milestone(plan)
    before = snapshot(app)
    response = api.patch(f"/milestones/{m['id']}", json={
        "status": "done", "due_date": "2027-01-01", "stage_id": "00000000-0000-0000-0000-000000000000"})
    assert response.status_code == 422
    assert snapshot(app) == before
    assert api.get(f"/milestones/{m['id']}").json["status"] == "not_started"
