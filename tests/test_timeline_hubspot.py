"""Buyer activity on HubSpot's deal timeline, end to end: buyer actions over HTTP, the outbox
relay, the real hubspot-api-client against the sandbox (contract-checked against the Timeline
spec), and what the sandbox's deal page shows."""
from __future__ import annotations

import pytest
import requests
from conftest import CSRF, make_link, path_of, signed_in
from sqlalchemy import select
from test_hubspot import ENT, PUBLIC, SECRET, deal_id, inst, installed, milestone, new_plan, run, sb  # noqa: F401

from connector import hubspot as hubspot_connector
from webapp import view_counter
from webapp.db import session
from webapp.models import CrmActivity

EVENTS = "POST /integrators/timeline/v3/events/batch/create"
DEV_KEY = "sandbox-developer-key"


@pytest.fixture(autouse=True)
def fresh_templates():
    hubspot_connector._TEMPLATE_CACHE.clear()  # templates are per app; each test has a new sandbox
    yield
    hubspot_connector._TEMPLATE_CACHE.clear()


@pytest.fixture
def app_config(sb):  # noqa: F811 - as test_hubspot's, plus the app's developer API key
    return {"HUBSPOT_CLIENT_ID": "sandbox-client-id", "HUBSPOT_CLIENT_SECRET": SECRET,
            "HUBSPOT_APP_ID": "1000001", "HUBSPOT_DEVELOPER_API_KEY": DEV_KEY,
            "HUBSPOT_API_BASE": sb.server.url, "HUBSPOT_AUTH_BASE": sb.server.url,
            "PUBLIC_BASE_URL": PUBLIC, "HUBSPOT_RETRY_SLEEP": lambda seconds: None,
            "HUBSPOT_TIMEOUT": (2.0, 5.0)}


def buyer_acts(client, api, plan) -> None:
    """Someone opens the link, says who they are (Dana's first view), completes a milestone,
    proposes a date, confirms another and comments: six entries for the timeline."""
    page = path_of(make_link(api, plan["id"])["url"])
    token = CSRF.search(client.get(page).get_data(as_text=True)).group(1)  # link opened
    flush_views(client)  # views are counted in a buffer; its flush records "link opened"
    assert client.post(page + "/identify", data={"csrf": token, "name": "Dana Buyer",
                                                 "email": "dana@acme.example"}).status_code == 303
    token = CSRF.search(client.get(page).get_data(as_text=True)).group(1)
    flush_views(client)
    done = milestone(plan, "Identify problems to solve")
    dated = milestone(plan, "Legal and compliance review")
    r = client.post(f"{page}/m/{done['id']}/done", data={"csrf": token, "done": "1"})
    assert r.status_code == 303, r.get_data(as_text=True)
    r = client.post(f"{page}/m/{dated['id']}/date", data={"csrf": token, "action": "propose",
                                                          "date": "2027-01-15", "reason": "Holidays"})
    assert r.status_code == 303, r.get_data(as_text=True)
    r = client.post(f"{page}/m/{done['id']}/date", data={"csrf": token, "action": "confirm"})
    assert r.status_code == 303, r.get_data(as_text=True)
    r = client.post(f"{page}/m/{dated['id']}/comment", data={"csrf": token, "body": "Legal is on it"})
    assert r.status_code == 303, r.get_data(as_text=True)


def flush_views(client) -> None:
    with client.application.app_context():
        view_counter.flush()


def pending(app) -> list[CrmActivity]:
    with app.app_context():
        return list(session().scalars(select(CrmActivity).where(CrmActivity.pushed_at.is_(None))))


def test_buyer_actions_become_timeline_events_in_one_batch_with_the_next_push(app, client, sb):  # noqa: F811
    installation_id, api = installed(app, client, sb, ENT)
    assert "timeline" in inst(app, installation_id).settings["scopes"]
    deal = deal_id(sb, ENT)
    plan = new_plan(api, ENT, deal, twelve=False)
    run(app)  # the plan's first push
    buyer_acts(client, api, plan)
    assert len(pending(app)) == 6  # recorded with the actions; nothing sent from the buyer's requests
    assert sb.call_counts(ENT).get(EVENTS, 0) == 0
    sb.reset_calls()
    run(app)
    counts = sb.call_counts(ENT)
    assert counts[EVENTS] == 1, counts  # six actions, one batch call
    assert not pending(app)
    timeline = sb.deal_timeline(ENT, deal)
    assert [e["template"] for e in timeline] == [
        "MutualPlan: buyer link opened", "MutualPlan: buyer link opened", "MutualPlan: milestone completed", "MutualPlan: date proposed",
        "MutualPlan: date confirmed", "MutualPlan: buyer comment"]
    assert timeline[3]["tokens"]["mp_subject"].startswith("Dana Buyer <dana@acme.example>: Date proposed")
    assert "Holidays" in timeline[3]["tokens"]["mp_detail"]
    assert timeline[5]["tokens"]["mp_detail"] == "Legal is on it"
    home = requests.get(sb.server.url + "/", timeout=5).text  # the sandbox's deal page shows them
    assert "MutualPlan: buyer comment: Dana Buyer &lt;dana@acme.example&gt;: Comment on" in home
    # the templates were made once, with the developer key, and are reused
    assert len(sb.event_templates[1000001]) == 5
    sb.reset_calls()
    run(app)
    assert EVENTS not in sb.call_counts(ENT)  # nothing new, nothing sent




def test_without_timeline_access_the_activity_goes_as_notes_on_the_deal(app, client, sb):  # noqa: F811
    installation_id, api = installed(app, client, sb, ENT)
    deal = deal_id(sb, ENT)
    plan = new_plan(api, ENT, deal, twelve=False)
    run(app)
    for token in sb.tokens.values():  # the portal's admin took timeline access away: events get a 403
        token.scopes = [scope for scope in token.scopes if scope != "timeline"]
    buyer_acts(client, api, plan)
    sb.reset_calls()
    run(app)
    counts = sb.call_counts(ENT)
    assert counts[EVENTS] == 1 and counts["POST /crm/v3/objects/{object_type}/batch/create"] == 1, counts
    assert not pending(app)
    timeline = sb.deal_timeline(ENT, deal)
    assert [e["type"] for e in timeline] == ["note"] * 6
    assert "Date proposed" in timeline[3]["body"] and "Holidays" in timeline[3]["body"]
    assert "MutualPlan" not in str(timeline)  # no event landed


def test_switched_off_nothing_is_recorded_or_sent(app, client, sb):  # noqa: F811
    installation_id, api = installed(app, client, sb, ENT)
    deal = deal_id(sb, ENT)
    plan = new_plan(api, ENT, deal, twelve=False)
    run(app)
    page_user = signed_in(client, tenant=tenant_name(app, installation_id), role="admin")
    page = client.get("/settings/connections").get_data(as_text=True)
    assert "Buyer activity on the HubSpot timeline:</strong> on" in page
    url = f"/settings/connections/{installation_id}/timeline"
    assert client.post(url, data={"csrf": "forged", "timeline": "off"}).status_code == 403
    assert inst(app, installation_id).settings.get("timeline", True) is True  # refused: nothing saved
    assert client.post(url, data={"csrf": page_user.csrf, "timeline": "maybe"}).status_code == 400
    response = client.post(url, data={"csrf": page_user.csrf, "timeline": "off"})
    assert response.status_code == 303
    assert "timeline:</strong> off" in client.get("/settings/connections").get_data(as_text=True)
    buyer_acts(client, api, plan)
    assert not pending(app)
    sb.reset_calls()
    run(app)
    assert EVENTS not in sb.call_counts(ENT) and sb.deal_timeline(ENT, deal) == []
    # and on again through the API; only what happens from now on is sent
    listed = api.get("/installations").json["items"]
    assert [i["timeline"] for i in listed] == [False]
    assert api.patch(f"/installations/{installation_id}", json={"timeline": "yes"}).status_code == 422
    assert api.patch(f"/installations/{installation_id}", json={"nope": True}).status_code == 422
    r = api.patch(f"/installations/{installation_id}", json={"timeline": True})
    assert r.status_code == 200 and r.json["timeline"] is True
    assert api.patch("/installations/not-an-id", json={"timeline": True}).status_code == 404
    client.get(path_of(make_link(api, plan["id"])["url"]))  # a new link: its first view is "opened"
    flush_views(client)
    run(app)
    assert [e["template"] for e in sb.deal_timeline(ENT, deal)] == ["MutualPlan: buyer link opened"]


def tenant_name(app, installation_id) -> str:
    from webapp.models import Tenant

    with app.app_context():
        s = session()
        return s.get(Tenant, inst(app, installation_id).tenant_id).name


def test_a_backlog_larger_than_one_push_goes_in_several(app, client, sb, monkeypatch):  # noqa: F811
    from webapp import timeline

    monkeypatch.setattr(timeline, "BATCH", 4)
    installation_id, api = installed(app, client, sb, ENT)
    deal = deal_id(sb, ENT)
    plan = new_plan(api, ENT, deal, twelve=False)
    run(app)
    buyer_acts(client, api, plan)  # six entries
    sb.reset_calls()
    while run(app):
        pass
    assert sb.call_counts(ENT)[EVENTS] == 2 and not pending(app)
    assert len(sb.deal_timeline(ENT, deal)) == 6
