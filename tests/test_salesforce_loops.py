# ruff: noqa: F811  (pytest fixtures imported from test_salesforce)
"""Issue 11, the Salesforce side: orgs with and without record types, master-detail on insert
only, plans and milestones born in the org (Lightning Data Service), deletes and restores both
ways, no echo writes, the pull error policy. Through simple-salesforce over HTTPS against the
strict sandbox (no RecordTypeId column without record types, non-updateable master-detail)."""
from __future__ import annotations

import pytest
from test_salesforce import (  # noqa: F401  (fixtures)
    app_config,
    calls,
    connect,
    connected,
    handle,
    http,
    installation,
    milestone,
    new_plan,
    opportunity,
    org,
    rows,
    run,
    sandbox,
    sf_milestones,
)

from webapp import providers
from webapp.db import session
from webapp.models import Mirror

# ---- 1. record types and master-detail ---------------------------------------------------


def test_an_org_without_record_types_pushes_and_polls(app, connected, sandbox, org, opportunity):
    assert org.schema["opportunity"].field("RecordTypeId") is None  # the strict sandbox
    assert installation(app).settings["record_type_column"] is False
    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    assert connected.get(f"/plans/{plan['id']}/sync").json["state"] == "synced"
    sandbox.clock.advance(2)
    sandbox.rep_change_stage(org, opportunity, "Value Proposition")
    run(app, "pull", installation(app).id)
    status = connected.get(f"/plans/{plan['id']}/sync").json
    assert status["deal_stage"] == "Value Proposition"
    assert installation(app).settings.get("last_pull_error") in (None, "")


def test_an_org_with_record_types_reads_them(app, client, http, sandbox, org):
    sandbox.add_sales_process(org, "Short cycle", ["Prospecting", "Negotiation/Review",
                                                   "Closed Won", "Closed Lost"])
    rt = sandbox.add_record_type(org, "Short", "Short cycle")
    connect(client, http)
    run(app, "setup", installation(app).id)
    assert installation(app).settings["record_type_column"] is True
    account = sandbox.create_record(org, "Account", {"Name": "Buyer"})
    deal = sandbox.create_record(org, "Opportunity", {
        "Name": "Short deal", "AccountId": account, "StageName": "Prospecting",
        "CloseDate": "2027-03-31", "RecordTypeId": rt.id})
    with app.app_context():
        connector = providers.get("salesforce").connector_for(installation(app))
        assert connector.get_deal(deal).pipeline == "Short cycle"


def test_milestone_updates_never_send_the_master_detail(app, connected, sandbox, org, opportunity):
    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    m = milestone(plan, "Discovery call")
    assert connected.patch(f"/milestones/{m['id']}", json={"status": "in_progress"}).status_code == 200
    run(app, "relay")
    assert connected.get(f"/plans/{plan['id']}/sync").json["state"] == "synced"
    assert sf_milestones(sandbox, org)[m["id"]]["Status__c"] == "in_progress"


def test_a_half_failed_push_recovers_although_the_records_exist(app, connected, sandbox, org,
                                                                 opportunity):
    """The first push created the milestones but failed elsewhere, so we do not know their ids:
    the replay's upsert with Plan__c is refused for them and they are updated without it."""
    plan = new_plan(connected, org, opportunity)
    sandbox.inject("composite_partial")
    run(app, "relay")
    assert connected.post(f"/plans/{plan['id']}/sync/retry").status_code in (200, 202)
    run(app, "relay")
    assert connected.get(f"/plans/{plan['id']}/sync").json["state"] == "synced"
    with app.app_context():
        state = session().get(Mirror, plan["id"])
        assert all(state.remote_ids.get(m["id"]) for s in plan["stages"] for m in s["milestones"])


# ---- 6. the relay survives state transitions ----------------------------------------------


def _in_flight_with_a_newer_pending_row(app, connected, plan):
    """Row A claimed (in flight), then an edit queues row B for the same plan."""
    from webapp import outbox

    connected.patch(f"/milestones/{milestone(plan, 'Discovery call')['id']}",
                    json={"risk": "at_risk"})
    with app.app_context():
        s = session()
        for row in rows(app, status="pending"):  # due now, not after the debounce
            s.get(type(row), row.id).next_attempt_at = row.created_at
        s.commit()
        [claimed] = outbox.claim(s, "test-worker")
    connected.patch(f"/milestones/{milestone(plan, 'Discovery call')['id']}",
                    json={"status": "in_progress"})
    assert len(rows(app, status="pending")) == 1
    return claimed


@pytest.mark.parametrize("fault,times", [("503", 3), ("request_limit", 1)])
def test_a_failed_or_deferred_row_merges_into_the_newer_pending_one(
        app, connected, sandbox, org, opportunity, fault, times):
    from webapp import sync

    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    claimed = _in_flight_with_a_newer_pending_row(app, connected, plan)
    sandbox.inject(fault, times=times)
    with app.app_context():
        outcome = sync.push_entry(session(), claimed)  # raised IntegrityError before
    assert outcome in ("retry", "deferred")
    [pending] = rows(app, status="pending")
    assert pending.id != claimed and pending.last_error
    [merged] = [r for r in rows(app) if r.id == claimed]
    assert merged.status == "done" and merged.last_error == f"merged into {pending.id}"
    assert connected.get(f"/plans/{plan['id']}/sync").json["state"] == "pending"
    if fault == "503":  # due after the backoff; a relay then makes the CRM and status match
        with app.app_context():
            s = session()
            s.get(type(pending), pending.id).next_attempt_at = pending.created_at
            s.commit()
        run(app, "relay")
        assert connected.get(f"/plans/{plan['id']}/sync").json["state"] == "synced"
        m = milestone(plan, "Discovery call")
        assert sf_milestones(sandbox, org)[m["id"]]["Status__c"] == "in_progress"


# ---- 5. one pull error policy ---------------------------------------------------------------


def _installation_status(connected) -> dict:
    [row] = connected.get("/installations").json["items"]
    return row


@pytest.mark.parametrize("fault,times,at_least", [("503", 3, 15), ("request_limit", 1, 3600)])
def test_a_failed_pull_is_visible_rescheduled_and_retried(app, connected, sandbox, org,
                                                          opportunity, fault, times, at_least):
    from datetime import timedelta

    from webapp import clock

    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    sandbox.clock.advance(2)
    sandbox.rep_change_stage(org, opportunity, "Value Proposition")
    sandbox.inject(fault, times=times)
    inst_id = installation(app).id
    assert run(app, "pull", inst_id) == 0  # no exception escapes the job
    status = _installation_status(connected)
    assert status["last_pull_error"].startswith(("Transient", "RateLimited"))
    row = installation(app)
    wait = (clock.aware(row.next_pull_at) - clock.now()).total_seconds()
    assert wait >= at_least - 2
    with app.app_context():
        provider = providers.get("salesforce")
    assert not provider.is_due(row, clock.now())
    assert provider.is_due(row, clock.now() + timedelta(seconds=wait + 1))
    assert run(app, "pull", inst_id) >= 1  # the retry applies what the failed pull missed
    status = _installation_status(connected)
    assert status["last_pull_error"] == "" and status["next_pull_at"] is None
    assert connected.get(f"/plans/{plan['id']}/sync").json["deal_stage"] == "Value Proposition"


# ---- 2. plans and milestones born in Salesforce ------------------------------------------------

PLAN_UUID = "6f1c2a52-8d4e-4f0a-9a51-2b9d0c7e1a10"


def _lds_plan(sandbox, org, opportunity, with_uuid=True, rep=None):
    """What the component does (mutualPlan.js handleCreatePlan): the plan, then milestones."""
    fields = {"Opportunity__c": opportunity}
    if with_uuid:
        fields["Plan_UUID__c"] = PLAN_UUID
    plan = sandbox.lds_create(org, "Mutual_Action_Plan__c", fields, user_id=rep)["id"]
    for i, (title, stage) in enumerate([("Discovery call", "Discovery"),
                                        ("Security review", "Validation")]):
        ms = {"Plan__c": plan, "Name": title, "Title__c": title, "Stage__c": stage,
              "Owner_Side__c": "seller", "Due_Date__c": "2027-01-15", "Status__c": "not_started",
              "Risk__c": "on_track", "Internal_Only__c": False, "Position__c": i}
        if with_uuid:
            ms["Milestone_UUID__c"] = f"6f1c2a52-8d4e-4f0a-9a51-2b9d0c7e1a1{i + 1}"
        sandbox.lds_create(org, "MAP_Milestone__c", ms, user_id=rep)
    return plan


def _record(sandbox, org, sobject, record_id):
    return sandbox.get_record(org, sobject, record_id)


@pytest.mark.parametrize("with_uuid", [True, False])
def test_a_plan_made_in_the_component_becomes_an_ordinary_plan(app, connected, sandbox, org,
                                                               opportunity, with_uuid):
    rep = sandbox.add_user(org, "dana@acme.example.com", name="Dana Rep").id
    sandbox.clock.advance(2)
    record_id = _lds_plan(sandbox, org, opportunity, with_uuid, rep)
    run(app, "pull", installation(app).id)
    [plan] = connected.get("/plans").json["items"]
    if with_uuid:
        assert plan["id"] == PLAN_UUID
    full = connected.get(f"/plans/{plan['id']}").json
    titles = [m["title"] for s in full["stages"] for m in s["milestones"]]
    assert titles == ["Discovery call", "Security review"]
    activity = connected.get(f"/plans/{plan['id']}/activity").json["items"]
    assert {a["actor"] for a in activity} >= {"salesforce:Dana Rep"}
    run(app, "relay")
    record = _record(sandbox, org, "Mutual_Action_Plan__c", record_id)
    assert record["Plan_UUID__c"] == plan["id"]  # written back when absent
    assert record["Buyer_Link__c"].startswith("http://localhost/p/")
    opp = _record(sandbox, org, "Opportunity", opportunity)
    assert opp["MAP_Buyer_Link__c"] == record["Buyer_Link__c"]
    milestones = [r for r in sandbox.records(org, "MAP_Milestone__c")]
    assert len(milestones) == 2 and all(r["Milestone_UUID__c"] for r in milestones)
    assert connected.get(f"/plans/{plan['id']}/sync").json["state"] == "synced"
    # the stage mirror works for it: the gate moves the opportunity
    gate = milestones[0]
    sandbox.clock.advance(2)
    sandbox.lds_update(org, gate["Id"], {"Status__c": "done"}, user_id=rep)
    run(app, "pull", installation(app).id)
    run(app, "relay")
    full = connected.get(f"/plans/{plan['id']}").json
    assert full["stages"][0]["milestones"][0]["status"] == "done"
    # a milestone added in Salesforce joins the plan
    sandbox.clock.advance(2)
    sandbox.lds_create(org, "MAP_Milestone__c", {
        "Plan__c": record_id, "Name": "Pilot", "Title__c": "Pilot", "Stage__c": "Validation",
        "Status__c": "in_progress", "Position__c": 5}, user_id=rep)
    run(app, "pull", installation(app).id)
    full = connected.get(f"/plans/{plan['id']}").json
    assert "Pilot" in [m["title"] for s in full["stages"] for m in s["milestones"]]
    run(app, "relay")
    assert all(r["Milestone_UUID__c"] for r in sandbox.records(org, "MAP_Milestone__c"))
    assert len(sandbox.records(org, "MAP_Milestone__c")) == 3
    assert len(sandbox.records(org, "Mutual_Action_Plan__c")) == 1


def test_records_that_cannot_be_imported_are_reported(app, connected, sandbox, org, opportunity):
    sandbox.clock.advance(2)
    orphan = sandbox.lds_create(org, "Mutual_Action_Plan__c", {})["id"]
    plan = _lds_plan(sandbox, org, opportunity)
    sandbox.lds_create(org, "MAP_Milestone__c", {
        "Plan__c": orphan, "Name": "Lost", "Title__c": "Lost"})
    sandbox.lds_create(org, "MAP_Milestone__c", {
        "Plan__c": plan, "Name": "Odd", "Title__c": "x" * 250})  # longer than our titles
    run(app, "pull", installation(app).id)
    [status] = connected.get("/installations").json["items"]
    reasons = {p["remote_id"]: p["reason"] for p in status["sync_problems"]}
    assert "no deal" in reasons[orphan]
    assert len(reasons) == 3 and any("invalid values" in r for r in reasons.values())
    assert len(connected.get("/plans").json["items"]) == 1


# ---- 3. deletion and restore both ways ------------------------------------------------------


def test_deleting_a_plan_here_removes_it_in_salesforce(app, connected, sandbox, org, opportunity):
    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    assert len(sandbox.records(org, "MAP_Milestone__c")) == 11
    assert sandbox.get_record(org, "Opportunity", opportunity)["MAP_Progress__c"] is not None
    assert connected.delete(f"/plans/{plan['id']}").status_code == 204
    [row] = rows(app, status="pending")
    assert row.payload["op"] == "remove"
    run(app, "relay")
    assert sandbox.records(org, "MAP_Milestone__c") == []
    assert sandbox.records(org, "Mutual_Action_Plan__c") == []
    opp = sandbox.get_record(org, "Opportunity", opportunity)
    assert opp["MAP_Progress__c"] is None and opp["MAP_Buyer_Link__c"] is None
    assert rows(app, status="pending") == [] and not rows(app, status="dead")
    # the next poll sees the deletions and changes nothing here
    sandbox.clock.advance(2)
    run(app, "pull", installation(app).id)
    assert connected.get("/plans").json["items"] == []


def test_a_plan_deleted_in_salesforce_is_archived_and_restored_with_undelete(
        app, connected, sandbox, org, opportunity):
    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    [record] = sandbox.records(org, "Mutual_Action_Plan__c")
    sandbox.clock.advance(2)
    sandbox.lds_delete(org, record["Id"])
    run(app, "pull", installation(app).id)
    with app.app_context():
        from webapp.models import Plan

        assert session().get(Plan, plan["id"]).archived_at is not None
    full = connected.get(f"/plans/{plan['id']}").json
    assert sum(len(s["milestones"]) for s in full["stages"]) == 11  # kept while archived
    sandbox.clock.advance(2)
    sandbox.rep_undelete(org, "Mutual_Action_Plan__c", record["Id"])
    run(app, "pull", installation(app).id)
    with app.app_context():
        from webapp.models import Plan

        assert session().get(Plan, plan["id"]).archived_at is None
    run(app, "relay")
    assert connected.get(f"/plans/{plan['id']}/sync").json["state"] == "synced"
    assert len(sandbox.records(org, "MAP_Milestone__c")) == 11


def test_polls_through_limit_storms_and_5xx_lose_no_remote_edit_and_duplicate_nothing(
        app, connected, sandbox, org):
    """The pull soak, bounded (tests/pull_soak.py; bench/pull_soak.py runs it longer).
    Salesforce answers limits with 403 REQUEST_LIMIT_EXCEEDED and no Retry-After."""
    import pull_soak

    plans = []
    for n in range(2):
        account = sandbox.create_record(org, "Account", {"Name": f"Buyer {n}"})
        opp = sandbox.create_record(org, "Opportunity", {
            "Name": f"Rollout {n}", "AccountId": account, "StageName": "Prospecting",
            "CloseDate": "2027-03-31"})
        plans.append(new_plan(connected, org, opp)["id"])
    run(app, "relay")
    side = pull_soak.SalesforceSide(sandbox, org)
    outcome = pull_soak.soak(app, side, installation(app).id, plans, rounds=6, edits=4)
    assert outcome.failed_pulls > 0
    assert (outcome.lost, outcome.duplicates, outcome.unsynced) == ([], [], [])
    assert outcome.born == 3 and outcome.edits >= 30


def test_archiving_a_plan_removes_its_records_and_a_restore_writes_them_again(
        app, connected, sandbox, org, opportunity):
    """Archive here -> remote, as for a delete: a plan archived because its Opportunity was
    deleted (or its plan record) has its records deleted and the Opportunity's MAP_* fields
    cleared (a deleted Opportunity has none left: its 404 is fine); restored, it is written
    again in full."""
    from webapp.models import Plan

    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    [record] = sandbox.records(org, "Mutual_Action_Plan__c")
    sandbox.clock.advance(2)
    sandbox.lds_delete(org, record["Id"])
    run(app, "pull", installation(app).id)
    [row] = rows(app, status="pending")
    assert row.payload["op"] == "remove"
    run(app, "relay")
    opp = sandbox.get_record(org, "Opportunity", opportunity)
    assert opp["MAP_Progress__c"] is None and opp["MAP_Buyer_Link__c"] is None
    assert sandbox.records(org, "MAP_Milestone__c") == [] and not rows(app, status="dead")
    sandbox.clock.advance(2)
    sandbox.rep_undelete(org, "Mutual_Action_Plan__c", record["Id"])
    run(app, "pull", installation(app).id)
    run(app, "relay")
    assert len(sandbox.records(org, "MAP_Milestone__c")) == 11
    assert sandbox.get_record(org, "Opportunity", opportunity)["MAP_Progress__c"] is not None
    assert not rows(app, status="dead") and not rows(app, status="pending")

    # the Opportunity deleted: the plan is archived and its records go (the clear is a 404)
    sandbox.clock.advance(2)
    sandbox.rep_delete(org, "Opportunity", opportunity)
    run(app, "pull", installation(app).id)
    with app.app_context():
        assert session().get(Plan, plan["id"]).archived_at is not None
    run(app, "relay")
    assert sandbox.records(org, "Mutual_Action_Plan__c") == []
    assert sandbox.records(org, "MAP_Milestone__c") == []
    assert not rows(app, status="dead") and not rows(app, status="pending")
    sandbox.clock.advance(2)
    sandbox.rep_undelete(org, "Opportunity", opportunity)
    run(app, "pull", installation(app).id)
    with app.app_context():
        assert session().get(Plan, plan["id"]).archived_at is None
    run(app, "relay")
    [again] = sandbox.records(org, "Mutual_Action_Plan__c")
    assert again["Plan_UUID__c"] == plan["id"] and len(sandbox.records(org, "MAP_Milestone__c")) == 11
    assert sandbox.get_record(org, "Opportunity", opportunity)["MAP_Progress__c"] is not None
    assert not rows(app, status="dead") and not rows(app, status="pending")
