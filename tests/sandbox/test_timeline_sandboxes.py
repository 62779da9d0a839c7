"""The sandboxes' timeline side, over real HTTP: HubSpot's event templates and timeline events
(hubspot-api-client 12, contract-checked against the Timeline spec), and Salesforce's Task
rules (simple-salesforce)."""
from __future__ import annotations

import json

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.timeline import (
    BatchInputTimelineEvent,
    TimelineEvent,
    TimelineEventTemplateCreateRequest,
    TimelineEventTemplateToken,
)
from urllib3.util.retry import Retry

from sandboxes.hubspot import HubSpotSandbox, serve
from sandboxes.salesforce import SalesforceSandbox

ENT = 100001
APP = 1000001


@pytest.fixture
def sb():
    sandbox = HubSpotSandbox()
    server = serve(sandbox)
    sandbox.server = server
    yield sandbox
    server.shutdown()


def sdk(sb, **auth) -> HubSpot:
    return HubSpot(host=sb.server.url, retry=Retry(total=0, redirect=0), **auth)


def template(client, name="Step done") -> str:
    request = TimelineEventTemplateCreateRequest(
        name=name, object_type="DEAL", header_template="{{what}}", detail_template="",
        tokens=[TimelineEventTemplateToken(name="what", label="What", type="string", options=[])])
    return client.crm.timeline.templates_api.create(APP, request).id


def test_templates_need_the_developer_key_and_events_the_timeline_scope(sb):
    with pytest.raises(Exception) as refused:
        template(sdk(sb, api_key="wrong"))
    assert refused.value.status == 401
    tid = template(sdk(sb, api_key="sandbox-developer-key"))
    listed = sdk(sb, api_key="sandbox-developer-key").crm.timeline.templates_api.get_all(APP)
    assert [t.id for t in listed.results] == [tid]
    deal = sb.records(ENT, "deals")[0]["id"]
    event = TimelineEvent(event_template_id=tid, id="e-1", object_id=deal, tokens={"what": "Signed"})
    no_scope = sdk(sb, access_token=sb.issue_tokens(ENT)["access_token"])
    with pytest.raises(Exception) as forbidden:
        no_scope.crm.timeline.events_api.create(event)
    assert forbidden.value.status == 403
    token = sb.issue_tokens(ENT, scopes=["oauth", "timeline", "crm.objects.deals.read"])["access_token"]
    made = sdk(sb, access_token=token).crm.timeline.events_api.create(event)
    assert made.id == "e-1" and sb.deal_timeline(ENT, deal)[0]["tokens"] == {"what": "Signed"}
    assert "Step done" in requests.get(sb.server.url + "/", timeout=5).text  # the deal page shows it
    sb.assert_no_contract_violations()


def test_batch_refuses_duplicates_unknown_tokens_and_missing_deals_one_by_one(sb):
    tid = template(sdk(sb, api_key="sandbox-developer-key"))
    deal = sb.records(ENT, "deals")[0]["id"]
    token = sb.issue_tokens(ENT, scopes=["oauth", "timeline"])["access_token"]
    client = sdk(sb, access_token=token)
    first = [TimelineEvent(event_template_id=tid, id="e-1", object_id=deal, tokens={"what": "a"})]
    raw = client.crm.timeline.events_api.create_batch(BatchInputTimelineEvent(inputs=first),
                                                       _preload_content=False)
    assert raw.status == 201
    again = first + [TimelineEvent(event_template_id=tid, id="e-2", object_id=deal, tokens={"nope": "b"}),
                     TimelineEvent(event_template_id=tid, id="e-3", object_id="999999", tokens={}),
                     TimelineEvent(event_template_id=tid, id="e-4", object_id=deal, tokens={"what": "d"})]
    raw = client.crm.timeline.events_api.create_batch(BatchInputTimelineEvent(inputs=again),
                                                       _preload_content=False)
    body = json.loads(raw.data)
    assert raw.status == 207 and body["numErrors"] == 3
    assert [e["category"] for e in body["errors"]] == ["CONFLICT", "VALIDATION_ERROR", "OBJECT_NOT_FOUND"]
    assert [e["id"] for e in sb.deal_timeline(ENT, deal)] == ["e-1", "e-4"]
    sb.assert_no_contract_violations()


def test_a_request_the_spec_refuses_is_a_contract_violation(sb):
    token = sb.issue_tokens(ENT, scopes=["oauth", "timeline"])["access_token"]
    r = requests.post(sb.server.url + "/integrators/timeline/v3/events/batch/create",
                      headers={"Authorization": f"Bearer {token}"}, json={"events": []}, timeout=5)
    assert r.status_code == 500 and r.json()["category"] == "SANDBOX_CONTRACT_VIOLATION"
    assert "inputs" in r.json()["message"]
    sb.contract_violations.clear()


def test_salesforce_task_follows_its_describe():
    sf = SalesforceSandbox()
    org = sf.add_org("Acme")
    account = sf.create_record(org, "Account", {"Name": "Buyer"})
    opp = sf.create_record(org, "Opportunity", {"Name": "Deal", "AccountId": account,
                                                "StageName": "Prospecting", "CloseDate": "2027-01-31"})
    task = sf.get_record(org, "Task", sf.create_record(org, "Task", {"Subject": "Call", "WhatId": opp}))
    assert (task["Status"], task["Priority"], task["IsClosed"]) == ("Not Started", "Normal", False)
    done = sf.get_record(org, "Task", sf.create_record(org, "Task", {"Status": "Completed", "WhatId": opp}))
    assert done["IsClosed"] is True
    for bad in ({"Status": "Finished"}, {"WhatId": "003000000000001AAA"}, {"Priority": None},
                {"IsClosed": True}):
        with pytest.raises(Exception):
            sf.create_record(org, "Task", {"Subject": "x", **bad})
    assert len(sf.records(org, "Task")) == 2
