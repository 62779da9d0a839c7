# ruff: noqa: F811 - the fixtures are imported from test_login
""""New plan" on the rep's home (issue 12): search the CRM's deals by name through the real
connectors and sandboxes, pick one, and the plan is created, owned by the rep, titled with the
deal's name, and opened in the editor; the by-deal route the Salesforce component opens."""
from __future__ import annotations

import re

from sqlalchemy import select
from test_login import (  # noqa: F401 - fixtures
    ENT,
    HTML,
    app_config,
    hs,
    hubspot_round,
    install_hubspot,
    install_salesforce,
    local,
    org,
    salesforce_round,
    sf,
)

from webapp.db import session
from webapp.models import Plan, User


def csrf_of(page) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def sign_in_hubspot(client, hs, user_id=None):
    install_hubspot(client, hs)
    back = hubspot_round(client, hs, "/login/hubspot", ENT, user_id or 9100000 + ENT)
    assert client.get(local(back)).status_code == 303


def sign_in_salesforce(client, sf, org, user=None):
    install_salesforce(client, sf, org)
    back = salesforce_round(client, sf, org, user or org.admin, "/login/salesforce")
    assert client.get(local(back)).status_code == 303


def test_hubspot_new_plan_from_a_searched_deal(app, client, hs):
    sign_in_hubspot(client, hs)
    home = client.get("/app", headers=HTML)
    assert 'action="/app/deals"' in home.text
    found = client.get("/app/deals?q=platform", headers=HTML)
    assert found.status_code == 200
    deal = next(r for r in hs.records(ENT, "deals")
                if r["properties"]["dealname"] == "Acme - Platform rollout")
    assert f'data-deal="{deal["id"]}"' in found.text
    assert "Acme - Expansion" not in found.text  # a name without the word is not listed
    made = client.post("/app/plans", headers=HTML, data={
        "csrf": csrf_of(found), "deal_id": deal["id"], "title": "Acme - Platform rollout"})
    assert made.status_code == 303 and made.headers["Location"].startswith("/editor/plans/")
    with app.app_context():
        plan = session().scalars(select(Plan)).one()
        owner = session().get(User, plan.owner_user_id)
        assert (plan.title, plan.deal_id, plan.deal_account_id) == (
            "Acme - Platform rollout", deal["id"], str(ENT))
        assert owner.crm_user_id == str(9100000 + ENT) and owner.role == "rep"
    editor = client.get(made.headers["Location"], headers=HTML)
    assert editor.status_code == 200
    again = client.get("/app/deals?q=platform", headers=HTML)
    assert f'/editor/plans/{plan.id}' in again.text  # listed as taken, no second plan


def test_a_plan_needs_the_forms_csrf(app, client, hs):
    sign_in_hubspot(client, hs)
    deal = hs.records(ENT, "deals")[0]
    refused = client.post("/app/plans", headers=HTML, data={"csrf": "x", "deal_id": deal["id"]})
    assert refused.status_code == 403
    with app.app_context():
        assert session().scalars(select(Plan)).all() == []


def test_salesforce_new_plan_and_the_by_deal_route(app, client, sf, org):
    opp = sf.create_record(org, "Opportunity", {
        "Name": "Globex 100% renewal", "StageName": "Prospecting", "CloseDate": "2027-03-31"})
    sf.create_record(org, "Opportunity", {"Name": "Initech pilot", "StageName": "Prospecting",
                                          "CloseDate": "2027-03-31"})
    rep = sf.add_user(org, "rita@acme.example", name="Rita Rep")
    sign_in_salesforce(client, sf, org, rep)
    found = client.get("/app/deals?q=globex 100%", headers=HTML)
    assert found.status_code == 200, found.text
    assert f'data-deal="{opp}"' in found.text and "Initech" not in found.text
    assert 'value="Globex 100% renewal"' in found.text  # the title defaults to the deal's name
    assert "No deal" in client.get("/app/deals?q=o'hara_%", headers=HTML).text  # escaped SOQL

    by_deal = f"/app/plans/by-deal/salesforce/{org.id}/{opp}"
    offer = client.get(by_deal, headers=HTML)
    assert offer.status_code == 200 and 'id="create-plan"' in offer.text
    made = client.post("/app/plans", headers=HTML, data={"csrf": csrf_of(offer), "deal_id": opp,
                                                           "title": ""})
    assert made.status_code == 303
    opened = client.get(by_deal, headers=HTML)
    assert opened.status_code == 303 and opened.headers["Location"] == made.headers["Location"]
    with app.app_context():
        plan = session().scalars(select(Plan)).one()
        assert plan.title == "Mutual Action Plan" and plan.deal_id == opp
    current = client.get(f"/app/plans/by-deal/salesforce/current/{opp}", headers=HTML)
    assert current.headers["Location"] == made.headers["Location"]  # the component's URL
    assert client.get(f"/app/plans/by-deal/salesforce/00Dother/{opp}",
                      headers=HTML).status_code == 404


def test_by_deal_sends_anonymous_people_to_sign_in(client):
    answer = client.get("/app/plans/by-deal/salesforce/00D1/006A", headers=HTML)
    assert answer.status_code == 302 and "/login?next=" in answer.headers["Location"]


def _own_template(app, pipeline):
    from webapp.models import PlanTemplate, Tenant
    with app.app_context():
        s = session()
        row = PlanTemplate(tenant_id=s.scalars(select(Tenant.id)).one(), name="Pilot first",
                           default_for_pipeline=pipeline, default_go_live_days=30,
                           stages=[{"name": "Pilot", "milestones": [
                               {"title": "Pilot kickoff", "owner_side": "both", "anchor": "start", "days": 0,
                                "description": ""}]}])
        s.add(row)
        s.commit()
        return row.id


def test_new_plan_preselects_the_pipelines_default_template(app, client, hs):
    sign_in_hubspot(client, hs)
    deal = next(r for r in hs.records(ENT, "deals")
                if r["properties"]["dealname"] == "Acme - Platform rollout")
    key = _own_template(app, deal["properties"]["pipeline"])
    found = client.get("/app/deals?q=platform", headers=HTML)
    assert re.search(rf'<option value="{key}" selected>Pilot first', found.text)
    assert '<option value="enterprise" selected' not in found.text
    made = client.post("/app/plans", headers=HTML, data={
        "csrf": csrf_of(found), "deal_id": deal["id"], "template": key})
    assert made.status_code == 303
    with app.app_context():
        plan = session().scalars(select(Plan)).one()
        assert [m.title for m in plan.milestones] == ["Pilot kickoff"] and plan.template == key
