"""Tenants are isolated: another tenant's ids answer 404, exactly like unknown ones."""
import pytest
from conftest import snapshot


def test_missing_and_bad_keys(client, plan):
    assert client.get("/api/v1/plans").status_code == 401
    response = client.get("/api/v1/plans", headers={"Authorization": "Bearer mp_wrong"})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/plans", headers={"Authorization": "Basic abc"}).status_code == 401


def test_other_tenant_sees_nothing(app, api, other_api, plan):
    assert other_api.get("/plans").json["items"] == []
    assert api.get("/plans").json["items"][0]["id"] == plan["id"]


def _targets(plan):
    stage = plan["stages"][0]
    m = stage["milestones"][0]
    return [
        ("get", f"/plans/{plan['id']}", None),
        ("patch", f"/plans/{plan['id']}", {"title": "hijack"}),
        ("delete", f"/plans/{plan['id']}", None),
        ("get", f"/plans/{plan['id']}/activity", None),
        ("post", f"/plans/{plan['id']}/milestones", {"stage_id": stage["id"], "title": "x"}),
        ("post", f"/plans/{plan['id']}/stages", {"name": "x"}),
        ("post", f"/plans/{plan['id']}/stakeholders", {"name": "x", "side": "buyer"}),
        ("get", f"/milestones/{m['id']}", None),
        ("patch", f"/milestones/{m['id']}", {"status": "done"}),
        ("delete", f"/milestones/{m['id']}", None),
        ("patch", f"/stages/{stage['id']}", {"name": "x"}),
        ("delete", f"/stages/{stage['id']}", None),
    ]


def test_cross_tenant_ids_answer_404_and_change_nothing(app, api, other_api, plan):
    before = snapshot(app)
    for method, path, body in _targets(plan):
        kwargs = {"json": body} if body is not None else {}
        response = getattr(other_api, method)(path, **kwargs)
        assert response.status_code == 404, (method, path, response.json)
        unknown = getattr(other_api, method)(path.replace(path.split("/")[2], "0" * 36), **kwargs)
        assert unknown.json["detail"].split()[0:2] == response.json["detail"].split()[0:2]
    assert snapshot(app) == before


def test_moving_a_milestone_into_another_tenants_stage_is_refused(app, api, other_api, plan):
    theirs = other_api.post("/plans", json={"title": "Theirs", "template": "quick"}).json
    m = plan["stages"][0]["milestones"][0]
    before = snapshot(app)
    response = api.patch(f"/milestones/{m['id']}", json={"stage_id": theirs["stages"][0]["id"]})
    assert response.status_code == 422
    assert snapshot(app) == before


@pytest.mark.parametrize("path", ["/plans", "/templates"])
def test_every_api_route_needs_a_key(client, path):
    assert client.get("/api/v1" + path).status_code == 401
