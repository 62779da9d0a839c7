"""The hand-off to onboarding through the Salesforce sandbox with the real simple-salesforce:
the opportunity closes won in the org, the pull applies it, the push writes MAP_Phase__c."""
from __future__ import annotations

from datetime import date, timedelta

from conftest import make_link, path_of
from test_onboarding import ONBOARDING
import test_salesforce
from test_salesforce import installation, new_plan, run

from webapp.db import session
from webapp.models import Plan, PlanTemplate

# the Salesforce sandbox served over HTTPS, an org with an opportunity, a connected app (fixtures)
sandbox, org, handle, http = (test_salesforce.sandbox, test_salesforce.org, test_salesforce.handle,
                              test_salesforce.http)
app_config, connected, opportunity = (test_salesforce.app_config, test_salesforce.connected,
                                      test_salesforce.opportunity)


def test_closed_won_opportunity_starts_onboarding_and_lost_closes_the_plan(
        app, client, connected, sandbox, org, opportunity):
    plan = new_plan(connected, org, opportunity, template="quick")
    sales_ids = {m["id"] for st in plan["stages"] for m in st["milestones"]}
    with app.app_context():
        s = session()
        row = PlanTemplate(tenant_id=s.get(Plan, plan["id"]).tenant_id, name="Customer onboarding",
                           stages=ONBOARDING, default_go_live_days=30)
        s.add(row)
        s.commit()
        template = row.id
    inst = installation(app).id
    # the opportunity owner's e-mail, through the Owner relationship, is the CS owner here
    saved = connected.put(f"/installations/{inst}/hand-off/default",
                          json={"template": template, "cs_owner_field": "Owner.Email",
                                "cs_owner_default": "success@vendor.test"})
    assert saved.status_code == 200, saved.json
    link = make_link(connected, plan["id"])
    run(app, "relay")
    assert sandbox.get_record(org, "Opportunity", opportunity)["MAP_Phase__c"] == "sales"

    sandbox.clock.advance(2)  # Salesforce stamps have second precision
    sandbox.rep_change_stage(org, opportunity, "Closed Won", close_date="2027-03-01")
    run(app, "pull", inst)
    doc = connected.get(f"/plans/{plan['id']}").json
    assert doc["phase"] == "onboarding" and doc["cs_owner"] == org.admin.email
    assert all(m["status"] == "done" for st in doc["stages"] for m in st["milestones"]
               if m["id"] in sales_ids)
    added = {m["title"]: m for st in doc["stages"] for m in st["milestones"] if m["id"] not in sales_ids}
    assert added["Kickoff call"]["due_date"] == (date(2027, 3, 1) + timedelta(days=3)).isoformat()
    html = client.get(path_of(link["url"])).get_data(as_text=True)
    assert "Onboarding</p>" in html and "Kickoff call" in html
    run(app, "relay")
    assert sandbox.get_record(org, "Opportunity", opportunity)["MAP_Phase__c"] == "onboarding"
    run(app, "pull", inst)  # seen again: nothing more
    assert connected.get(f"/plans/{plan['id']}").json["version"] == doc["version"]

    sandbox.clock.advance(2)
    sandbox.rep_change_stage(org, opportunity, "Closed Lost")
    run(app, "pull", inst)
    gone = client.get(path_of(link["url"]))
    assert gone.status_code == 410 and "This plan is closed" in gone.get_data(as_text=True)
    sandbox.clock.advance(2)
    sandbox.rep_change_stage(org, opportunity, "Negotiation/Review")
    run(app, "pull", inst)
    back = client.get(path_of(link["url"]))
    assert back.status_code == 200 and "Onboarding</p>" in back.get_data(as_text=True)
