"""Dependent milestones: relative due dates that move with their predecessor, cycles refused."""
from datetime import date, timedelta

from conftest import milestone, snapshot


def _chain(api, plan):
    """security review → legal review (2 days after it is done) → signature (5 days after
    legal review's due date)."""
    stage = plan["stages"][0]["id"]
    security = milestone(plan, plan["stages"][0]["milestones"][0]["title"])
    api.patch(f"/milestones/{security['id']}", json={"due_date": "2027-01-10"})
    legal = api.post(f"/plans/{plan['id']}/milestones", json={
        "stage_id": stage, "title": "Legal review",
        "depends_on": [{"milestone_id": security["id"], "days": 2}]}).json
    sign = api.post(f"/plans/{plan['id']}/milestones", json={
        "stage_id": stage, "title": "Signature",
        "depends_on": [{"milestone_id": legal["id"], "days": 5, "after": "due"}]}).json
    return security, legal, sign


def test_a_new_dependent_is_dated_from_its_predecessor(api, plan):
    security, legal, sign = _chain(api, plan)
    assert legal["due_date"] == "2027-01-12"
    assert sign["due_date"] == "2027-01-17"
    assert legal["depends_on"] == [{"milestone_id": security["id"], "days": 2, "after": "done"}]
    assert legal["waiting_on"] == [security["title"]]


def test_moving_a_date_moves_the_chain_and_the_slip_ledger_says_why(app, api, plan):
    security, legal, sign = _chain(api, plan)
    response = api.patch(f"/milestones/{security['id']}", json={"due_date": "2027-01-20"})
    assert response.status_code == 200
    doc = api.get(f"/plans/{plan['id']}").json
    assert milestone(doc, "Legal review")["due_date"] == "2027-01-22"
    assert milestone(doc, "Signature")["due_date"] == "2027-01-27"
    assert milestone(doc, "Legal review")["version"] > legal["version"]
    from webapp.db import session
    from webapp.models import Slip

    with app.app_context():
        reasons = {(r.milestone_id, r.reason) for r in session().query(Slip).all()}
    assert (legal["id"], f"moved with {security['title']}") in reasons
    assert (sign["id"], "moved with Legal review") in reasons
    activity = api.get(f"/plans/{plan['id']}/activity").json["items"][0]
    assert activity["detail"]["moved"] == ["Legal review", "Signature"]


def test_completing_the_predecessor_dates_the_dependent_from_completion(api, plan):
    security, legal, _ = _chain(api, plan)
    done = api.patch(f"/milestones/{security['id']}", json={"status": "done"}).json
    completed = date.fromisoformat(done["completed_at"][:10])
    after = api.get(f"/milestones/{legal['id']}").json
    assert after["due_date"] == (completed + timedelta(days=2)).isoformat()
    assert after["waiting_on"] == []


def test_a_cycle_is_refused_with_a_clear_422_and_changes_nothing(app, api, plan):
    security, legal, sign = _chain(api, plan)
    before = snapshot(app)
    response = api.patch(f"/milestones/{security['id']}",
                         json={"depends_on": [{"milestone_id": sign["id"]}]})
    assert response.status_code == 422
    assert "cycle" in response.json["detail"]
    assert "“Signature” → “Legal review”" in response.json["detail"]
    assert snapshot(app) == before
    response = api.patch(f"/milestones/{legal['id']}",
                         json={"depends_on": [{"milestone_id": legal["id"]}]})
    assert response.status_code == 422 and "itself" in response.json["detail"]


def test_unknown_and_foreign_ids_are_refused(api, other_api, plan):
    other = other_api.post("/plans", json={"title": "O", "template": "quick"}).json
    foreign = other["stages"][0]["milestones"][0]["id"]
    stage = plan["stages"][0]["id"]
    response = api.post(f"/plans/{plan['id']}/milestones", json={
        "stage_id": stage, "title": "X", "depends_on": [{"milestone_id": foreign}]})
    assert response.status_code == 422 and "no milestone" in response.json["detail"]


def test_deleting_a_predecessor_keeps_the_dependents_date(api, plan):
    security, legal, _ = _chain(api, plan)
    assert api.delete(f"/milestones/{security['id']}").status_code == 204
    after = api.get(f"/milestones/{legal['id']}").json
    assert after["depends_on"] == [] and after["due_date"] == "2027-01-12"


def test_the_buyer_page_says_waiting_on_and_never_names_an_internal_milestone(api, client, plan):
    from conftest import make_link, path_of

    security, legal, _ = _chain(api, plan)
    page = path_of(make_link(api, plan["id"])["url"])
    html = client.get(page).get_data(as_text=True)
    assert f"Waiting on {security['title']}</p>" in html
    api.patch(f"/milestones/{security['id']}", json={"internal": True})
    html = client.application.test_client().get(page).get_data(as_text=True)
    assert "Waiting on" not in html or security["title"] not in html
    editor_view = api.get(f"/milestones/{legal['id']}").json
    assert editor_view["waiting_on"] == [security["title"]]
