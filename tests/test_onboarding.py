"""The hand-off to onboarding, end to end through the HubSpot sandbox with the real SDK
(webapp/onboarding.py; the Salesforce twin is tests/test_onboarding_salesforce.py).

The deal moves in HubSpot's UI (the sandbox), its webhook queues a pull, the pull applies
the outcome; the next push writes the phase on the deal (mp_phase)."""
from __future__ import annotations

from datetime import date, timedelta

from conftest import make_link, path_of
from sqlalchemy import select
import test_hubspot
from test_hubspot import ENT, app_url, deal_id, installed, milestones, new_plan, queued, run

from webapp.db import session
from webapp.models import Installation, Plan, PlanTemplate, ShareLink

# the HubSpot sandbox, the app configured for it, the app on a real port (fixtures)
sb, app_config, served = test_hubspot.sb, test_hubspot.app_config, test_hubspot.served

ONBOARDING = [
    {"name": "Kickoff", "milestones": [
        {"title": "Kickoff call", "owner_side": "both", "anchor": "start", "days": 3, "description": ""},
        {"title": "Admin accounts created", "owner_side": "seller", "anchor": "start", "days": 7,
         "description": ""}]},
    {"name": "Go-live", "milestones": [
        {"title": "Users trained", "owner_side": "buyer", "anchor": "start", "days": 21, "description": ""}]},
]


def onboarding_template(app, plan_id: str) -> str:
    """An admin's onboarding template (the templates page makes such rows)."""
    with app.app_context():
        s = session()
        tenant = s.get(Plan, plan_id).tenant_id
        row = PlanTemplate(tenant_id=tenant, name="Customer onboarding", stages=ONBOARDING,
                           default_go_live_days=30)
        s.add(row)
        s.commit()
        return row.id


def deal_moves(app, sb, installation_id: str, deal: str, props: dict) -> int:
    """A rep moves the deal in HubSpot; its webhook queues a pull, which runs."""
    sb.advance(60)
    sb.drain_events()
    sb.rep_update_deal(ENT, deal, props)
    deliveries = sb.send_webhooks(app_url(app), sb.drain_events(ENT))
    assert all(d.status == 204 for d in deliveries)
    assert ("pull", (installation_id,)) in queued(app)
    return run(app, "pull", installation_id)


def plan_row(app, plan_id: str) -> Plan:
    with app.app_context():
        s = session()
        plan = s.get(Plan, plan_id)
        _ = [m for st in plan.stages for m in st.milestones]  # loaded while the session lives
        return plan


def test_closed_won_hands_the_plan_over_to_onboarding_at_the_same_link(app, client, sb, served):
    installation_id, api = installed(app, client, sb, ENT)
    deal = deal_id(sb, ENT)
    plan = new_plan(api, ENT, deal, twelve=False)
    sales_ids = {m["id"] for m in milestones(plan)}
    template = onboarding_template(app, plan["id"])
    with sb.lock:
        sb._add_property(sb.portals[ENT], "0-3", {"name": "cs_owner_email", "label": "CS owner",
                                                  "groupName": "dealinformation"})
    saved = api.put(f"/installations/{installation_id}/hand-off/default",
                    json={"template": template, "cs_owner_field": "cs_owner_email",
                          "cs_owner_default": "success@vendor.test"})
    assert saved.status_code == 200, saved.json
    assert api.get(f"/installations/{installation_id}/hand-off/default").json["template"] == template
    link = make_link(api, plan["id"])
    run(app)  # the first push: the deal carries our summary properties (the pull filters on them)
    assert sb.get_record(ENT, "deals", deal)["properties"]["mp_phase"] == "sales"
    page = client.get(path_of(link["url"]))
    assert page.status_code == 200 and "Mutual action plan</p>" in page.get_data(as_text=True)

    close = date(2027, 2, 1)
    sb.advance(60)
    won_events = sb.rep_update_deal(ENT, deal, {
        "dealstage": "closedwon", "closedate": "2027-02-01T00:00:00.000Z",
        "cs_owner_email": "dana.cs@vendor.test"})
    sb.drain_events()
    sb.send_webhooks(app_url(app), won_events)
    assert queued(app) == [("pull", (installation_id,))]
    assert run(app, "pull", installation_id) >= 1

    doc = api.get(f"/plans/{plan['id']}").json
    assert doc["phase"] == "onboarding" and doc["cs_owner"] == "dana.cs@vendor.test"
    sales = [m for m in milestones(doc) if m["id"] in sales_ids]
    assert sales and all(m["status"] == "done" for m in sales)  # the sales stages fold as done
    added = {m["title"]: m for m in milestones(doc) if m["id"] not in sales_ids}
    assert added["Kickoff call"]["due_date"] == (close + timedelta(days=3)).isoformat()
    assert added["Users trained"]["due_date"] == (close + timedelta(days=21)).isoformat()
    assert added["Admin accounts created"]["owners"] == [{"name": "dana.cs", "email": "dana.cs@vendor.test"}]
    assert [st["name"] for st in doc["stages"]][-2:] == ["Kickoff", "Go-live"]

    html = client.get(path_of(link["url"])).get_data(as_text=True)  # the same link
    assert "Onboarding</p>" in html and "Mutual action plan</p>" not in html
    assert "<strong>Onboarding.</strong>" in html and "dana.cs@vendor.test" in html and "Kickoff call" in html
    assert 'class="stage-block folded"' in html

    run(app)  # the push writes the phase on the deal
    assert sb.get_record(ENT, "deals", deal)["properties"]["mp_phase"] == "onboarding"

    # the same events delivered again, and a poll that sees the closed deal again (from the
    # start): nothing changes a second time
    version = api.get(f"/plans/{plan['id']}").json["version"]
    sb.send_webhooks(app_url(app), won_events)
    with app.app_context():
        session().get(Installation, installation_id).pull_state = {}
        session().commit()
    assert run(app, "pull", installation_id) >= 1
    again = api.get(f"/plans/{plan['id']}").json
    assert again["version"] == version and len(milestones(again)) == len(milestones(doc))


def test_closed_lost_closes_the_links_and_a_reopened_deal_brings_them_back(app, client, sb, served):
    installation_id, api = installed(app, client, sb, ENT)
    deal = deal_id(sb, ENT)
    plan = new_plan(api, ENT, deal, twelve=False)
    kept, switched_off = make_link(api, plan["id"]), make_link(api, plan["id"], label="old")
    assert api.delete(f"/share-links/{switched_off['id']}").status_code == 204  # a rep's revoke
    run(app)

    deal_moves(app, sb, installation_id, deal, {"dealstage": "closedlost"})
    closed = client.get(path_of(kept["url"]))
    text = closed.get_data(as_text=True)
    assert closed.status_code == 410 and "This plan is closed" in text
    assert plan["title"] not in text and "Discovery call" not in text  # nothing of the plan
    assert plan_row(app, plan["id"]).archived_at is not None
    assert plan_row(app, plan["id"]).phase == "closed"
    run(app)  # the deal says so too
    assert sb.get_record(ENT, "deals", deal)["properties"]["mp_phase"] == "closed"
    run(app, "pull", installation_id)  # a repeated poll changes nothing
    assert client.get(path_of(kept["url"])).status_code == 410

    deal_moves(app, sb, installation_id, deal, {"dealstage": "contractsent"})  # reopened
    plan_now = plan_row(app, plan["id"])
    assert plan_now.archived_at is None and plan_now.phase == "sales"
    assert client.get(path_of(kept["url"])).status_code == 200
    assert client.get(path_of(switched_off["url"])).status_code == 404  # the rep's revoke stays
    with app.app_context():
        reasons = {row.id: row.revoked_reason for row in session().scalars(select(ShareLink))}
    assert reasons[kept["id"]] is None


def test_hand_off_settings_are_validated(app, client, sb, served):
    installation_id, api = installed(app, client, sb, ENT)
    bad = api.put(f"/installations/{installation_id}/hand-off/default",
                  json={"template": "no-such-template"})
    assert bad.status_code == 422
    bad = api.put(f"/installations/{installation_id}/hand-off/default",
                  json={"cs_owner_field": "x'; DROP"})
    assert bad.status_code == 422
    bad = api.put(f"/installations/{installation_id}/hand-off/nope", json={})
    assert bad.status_code == 422
    assert api.get(f"/installations/{installation_id}/hand-off/default").json["template"] is None
