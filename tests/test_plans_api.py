from datetime import date, timedelta

from conftest import TODAY, milestones_of


def test_templates_are_listed(api):
    response = api.get("/templates")
    assert response.status_code == 200
    by_key = {t["key"]: t for t in response.json["items"]}
    assert by_key["enterprise"]["stage_count"] == 4
    assert by_key["enterprise"]["milestone_count"] == 11
    assert 3 <= by_key["quick"]["milestone_count"] <= 5


def test_create_from_enterprise_template(api, plan):
    assert [s["name"] for s in plan["stages"]] == [
        "Discovery", "Validation", "Final agreements", "Implementation"]
    titles = [m["title"] for m in milestones_of(plan)]
    assert len(titles) == 11
    assert titles[0] == "Discovery call" and titles[-1] == "Onboarding"
    assert "Commercial agreement" in titles
    first = milestones_of(plan)[0]
    assert first["due_date"] == TODAY.isoformat()  # relative to start
    go_live = date.fromisoformat(plan["constraints"]["go_live_date"])
    assert milestones_of(plan)[-1]["due_date"] == go_live.isoformat()  # relative to go-live
    assert plan["progress"] == {"done": 0, "total": 11, "percent": 0}
    assert plan["risk"] == "on_track"
    assert plan["next_milestone"]["title"] == "Discovery call"
    assert plan["slip_count"] == 0 and plan["slip_days"] == 0


def test_go_live_anchors_template_dates(api):
    response = api.post("/plans", json={"title": "T", "template": "enterprise",
                                        "start_date": "2026-12-01", "go_live_date": "2027-06-30"})
    ms = milestones_of(response.json)
    by_title = {m["title"]: m for m in ms}
    assert by_title["Onboarding"]["due_date"] == "2027-06-30"
    assert by_title["Commercial agreement"]["due_date"] == (date(2027, 6, 30) - timedelta(days=45)).isoformat()
    assert response.json["constraints"]["go_live_date"] == "2027-06-30"


def test_quick_template(api):
    response = api.post("/plans", json={"title": "Small deal", "template": "quick"})
    assert response.status_code == 201
    assert 3 <= len(milestones_of(response.json)) <= 5


def test_patch_milestone_records_slip(api, plan):
    m = milestones_of(plan)[1]
    new_due = (date.fromisoformat(m["due_date"]) + timedelta(days=5)).isoformat()
    response = api.patch(f"/milestones/{m['id']}", json={"due_date": new_due, "reason": "Buyer on holiday"})
    assert response.status_code == 200, response.json
    assert response.json["due_date"] == new_due
    assert response.json["version"] == m["version"] + 1
    doc = api.get(f"/plans/{plan['id']}").json
    assert (doc["slip_count"], doc["slip_days"]) == (1, 5)
    log = api.get(f"/plans/{plan['id']}/activity").json["items"]
    assert log[0]["action"] == "milestone.updated"
    assert log[0]["detail"]["due_date"] == [m["due_date"], new_due]
    assert log[0]["detail"]["reason"] == "Buyer on holiday"
    assert log[0]["actor"].startswith("api:")


def test_pulling_a_date_earlier_is_not_a_slip(api, plan):
    m = milestones_of(plan)[1]
    earlier = (date.fromisoformat(m["due_date"]) - timedelta(days=2)).isoformat()
    api.patch(f"/milestones/{m['id']}", json={"due_date": earlier})
    doc = api.get(f"/plans/{plan['id']}").json
    assert (doc["slip_count"], doc["slip_days"]) == (0, 0)


def test_completion_and_derived_figures(api, plan):
    ms = milestones_of(plan)
    done = api.patch(f"/milestones/{ms[0]['id']}", json={"status": "done"}).json
    assert done["completed_at"] and done["completed_by"].startswith("api:")
    api.patch(f"/milestones/{ms[2]['id']}", json={"risk": "off_track"})
    doc = api.get(f"/plans/{plan['id']}").json
    assert doc["progress"] == {"done": 1, "total": 11, "percent": 9}
    assert doc["risk"] == "off_track"
    assert doc["next_milestone"]["id"] == ms[1]["id"]
    undone = api.patch(f"/milestones/{ms[0]['id']}", json={"status": "in_progress"}).json
    assert undone["completed_at"] is None and undone["completed_by"] is None


def test_overdue_counts_as_at_risk(api):
    past = (TODAY - timedelta(days=3)).isoformat()
    doc = api.post("/plans", json={"title": "Late", "template": "quick", "start_date": past}).json
    # the first quick milestone is due on the start date, three days ago
    assert doc["overdue_count"] == 1
    assert doc["risk"] == "at_risk"
    assert milestones_of(doc)[0]["overdue"] is True


def test_etag_and_if_match(api, plan):
    first = api.get(f"/plans/{plan['id']}")
    etag = first.headers["ETag"]
    ok = api.patch(f"/plans/{plan['id']}", json={"title": "Renamed"}, headers={"If-Match": etag})
    assert ok.status_code == 200 and ok.headers["ETag"] != etag
    stale = api.patch(f"/plans/{plan['id']}", json={"title": "Lost update"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.mimetype == "application/problem+json"
    assert api.get(f"/plans/{plan['id']}").json["title"] == "Renamed"


def test_milestone_version_conflict(api, plan):
    m = milestones_of(plan)[0]
    assert api.patch(f"/milestones/{m['id']}", json={"risk": "at_risk", "version": m["version"]}).status_code == 200
    stale = api.patch(f"/milestones/{m['id']}", json={"risk": "off_track", "version": m["version"]})
    assert stale.status_code == 412
    assert stale.json["current_version"] == m["version"] + 1
    etag = api.get(f"/milestones/{m['id']}").headers["ETag"]
    assert api.patch(f"/milestones/{m['id']}", json={"status": "done"}, headers={"If-Match": etag}).status_code == 200


def test_add_move_and_delete_milestones(api, plan):
    stages = plan["stages"]
    created = api.post(f"/plans/{plan['id']}/milestones", json={
        "stage_id": stages[0]["id"], "title": "Security review", "owner_side": "buyer",
        "owners": [{"name": "Sam", "email": "sam@acme.example"}], "due_date": "2026-12-20",
        "internal": True, "position": 0})
    assert created.status_code == 201, created.json
    assert created.json["position"] == 0
    doc = api.get(f"/plans/{plan['id']}").json
    assert [m["position"] for m in doc["stages"][0]["milestones"]] == [0, 1, 2, 3]
    assert doc["stages"][0]["milestones"][0]["title"] == "Security review"
    moved = api.patch(f"/milestones/{created.json['id']}", json={"stage_id": stages[1]["id"], "position": 1})
    assert moved.status_code == 200
    doc = api.get(f"/plans/{plan['id']}").json
    assert [m["title"] for m in doc["stages"][1]["milestones"]][1] == "Security review"
    assert [m["position"] for m in doc["stages"][0]["milestones"]] == [0, 1, 2]
    assert api.delete(f"/milestones/{created.json['id']}").status_code == 204
    doc = api.get(f"/plans/{plan['id']}").json
    assert doc["progress"]["total"] == 11
    assert [m["position"] for m in doc["stages"][1]["milestones"]] == [0, 1, 2]


def test_stages(api, plan):
    doc = api.post(f"/plans/{plan['id']}/stages", json={"name": "Expansion"}).json
    new = doc["stages"][-1]
    assert new["name"] == "Expansion" and new["position"] == 4
    doc = api.patch(f"/stages/{new['id']}", json={"position": 0}).json
    assert [s["name"] for s in doc["stages"]][0] == "Expansion"
    assert [s["position"] for s in doc["stages"]] == [0, 1, 2, 3, 4]
    busy = doc["stages"][1]["id"]
    assert api.delete(f"/stages/{busy}").status_code == 409
    assert api.delete(f"/stages/{new['id']}").status_code == 204
    assert len(api.get(f"/plans/{plan['id']}").json["stages"]) == 4


def test_stakeholders(api, plan):
    created = api.post(f"/plans/{plan['id']}/stakeholders", json={
        "name": "Dana", "title": "VP Sales", "email": "dana@acme.example", "side": "buyer",
        "role": "decision_maker"})
    assert created.status_code == 201
    changed = api.patch(f"/stakeholders/{created.json['id']}", json={"role": "approver"})
    assert changed.json["role"] == "approver"
    assert api.get(f"/plans/{plan['id']}").json["stakeholders"][0]["role"] == "approver"
    assert api.delete(f"/stakeholders/{created.json['id']}").status_code == 204
    assert api.get(f"/plans/{plan['id']}").json["stakeholders"] == []


def test_plan_fields_and_deal_filter(api):
    body = {
        "title": "Initech", "deal": {"provider": "hubspot", "account_id": "123", "deal_id": "987"},
        "value_summary": "Why we do this",
        "objectives": {"challenges": ["a"], "ideal_results": ["b"], "deliverables": ["c"]},
        "constraints": {"budget": "$10k", "go_live_date": "2027-03-01",
                        "dates": [{"label": "Board meeting", "date": "2027-01-15"}]},
        "resources": [{"title": "Deck", "url": "https://example.com/deck"}],
    }
    created = api.post("/plans", json=body)
    assert created.status_code == 201, created.json
    doc = created.json
    assert doc["deal"] == body["deal"]
    assert doc["objectives"] == body["objectives"]
    assert doc["constraints"] == body["constraints"]
    assert doc["resources"] == body["resources"]
    api.post("/plans", json={"title": "Other"})
    found = api.get("/plans?provider=hubspot&account_id=123&deal_id=987").json["items"]
    assert [p["id"] for p in found] == [doc["id"]]
    assert len(api.get("/plans").json["items"]) == 2
    again = api.post("/plans", json=body)
    assert again.status_code == 409 and again.json["plan_id"] == doc["id"]


def test_delete_plan(api, plan):
    assert api.delete(f"/plans/{plan['id']}").status_code == 204
    assert api.get(f"/plans/{plan['id']}").status_code == 404
    assert api.get("/plans").json["items"] == []
