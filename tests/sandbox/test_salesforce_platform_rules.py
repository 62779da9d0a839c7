"""Salesforce sandbox rules from Salesforce's documentation: orgs without Opportunity record
types, non-reparentable master-detail fields, records written the way Lightning Data Service
writes them (UI API), the recycle bin, the demo's starting stages. Over real HTTPS with
simple-salesforce; the package schema is the repository's (salesforce_package/)."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sandboxes.salesforce import Clock, SalesforceSandbox, demo_sandbox

API_VERSION = "66.0"
CLIENT_ID = "mp-client"
T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def strict(**kw) -> SalesforceSandbox:
    sb = SalesforceSandbox(clock=Clock(start=T0), legacy_record_type_column=False,
                           legacy_updateable_master_detail=False, **kw)
    sb.add_connected_app(CLIENT_ID, "mp-secret")
    return sb


@pytest.fixture
def sandbox():
    sb = strict()
    org = sb.add_org("Acme", my_domain="acme")
    sb.add_user(org, "rep@acme.example.com", name="Riley Rep")
    return sb


@pytest.fixture
def rep(org):
    return next(u for u in org.users.values() if not u.is_admin)


def sf_for(sandbox, org, http, user_id=None) -> Salesforce:
    tok = sandbox.issue_tokens(org, CLIENT_ID, user_id=user_id)
    return Salesforce(session_id=tok["access_token"], instance_url=tok["instance_url"],
                      version=API_VERSION, session=http)


@pytest.fixture
def sf(sandbox, org, server, http):
    return sf_for(sandbox, org, http)


def opportunity(sandbox, org, **extra) -> str:
    return sandbox.create_record(org, "Opportunity", {
        "Name": "Big deal", "StageName": "Prospecting", "CloseDate": "2027-01-31", **extra})


# --------------------------------------------------------------------------------------------
# 4. orgs without Opportunity record types


def test_an_org_without_record_types_has_no_record_type_column(sandbox, org, sf):
    opportunity(sandbox, org)
    names = {f["name"] for f in sf.Opportunity.describe()["fields"]}
    assert "RecordTypeId" not in names and "StageName" in names
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.query("SELECT Id, RecordTypeId FROM Opportunity")
    [err] = e.value.content
    assert err["errorCode"] == "INVALID_FIELD"
    assert "No such column 'RecordTypeId' on entity 'Opportunity'" in err["message"]
    assert sf.query("SELECT Id, StageName FROM Opportunity")["totalSize"] == 1
    with pytest.raises(SalesforceMalformedRequest):
        sf.Opportunity.create({"Name": "x", "StageName": "Prospecting",
                               "CloseDate": "2027-01-31", "RecordTypeId": "012000000000000AAA"})


def test_the_column_appears_with_the_first_record_type(sandbox, org, sf):
    rt = sandbox.add_record_type(org, "Sales", "Standard")
    assert "RecordTypeId" in {f["name"] for f in sf.Opportunity.describe()["fields"]}
    oid = opportunity(sandbox, org, RecordTypeId=rt.id)
    [row] = sf.query(f"SELECT RecordTypeId FROM Opportunity WHERE Id = '{oid}'")["records"]
    assert row["RecordTypeId"] == rt.id


def test_record_types_option_and_the_legacy_switch(server, http):
    sb = strict()
    with_rt = sb.add_org("Globex", record_types=True)
    assert [r.name for r in with_rt.record_types.values()] == ["Sales"]
    assert with_rt.schema["opportunity"].field("RecordTypeId") is not None
    assert SalesforceSandbox(package_source=None).add_org("New").schema["opportunity"] \
        .field("RecordTypeId") is None  # strict is the default
    legacy = SalesforceSandbox(package_source=None, legacy_record_type_column=True)
    assert legacy.add_org("Old").schema["opportunity"].field("RecordTypeId") is not None


# --------------------------------------------------------------------------------------------
# 5. non-reparentable master-detail


def test_master_detail_is_createable_but_not_updateable(sandbox, org, sf):
    fields = {f["name"]: f for f in sf.MAP_Milestone__c.describe()["fields"]}
    plan_field = fields["Plan__c"]
    assert plan_field["createable"] is True and plan_field["updateable"] is False
    assert plan_field["cascadeDelete"] is True and plan_field["nillable"] is False

    opp = opportunity(sandbox, org)
    p1 = sf.Mutual_Action_Plan__c.create({"Opportunity__c": opp})["id"]
    p2 = sf.Mutual_Action_Plan__c.create({"Opportunity__c": opp})["id"]
    ms = sf.MAP_Milestone__c.create({"Plan__c": p1, "Name": "Kickoff", "Title__c": "Kickoff",
                                     "Milestone_UUID__c": "m-1"})["id"]
    for value in (p2, p1):  # even re-sending the same parent is refused
        with pytest.raises(SalesforceMalformedRequest) as e:
            sf.MAP_Milestone__c.update(ms, {"Plan__c": value, "Title__c": "x"})
        [err] = e.value.content
        assert err["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
        assert err["fields"] == ["Plan__c"]
    # upsert by external id: insert may set it, an update may not
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.MAP_Milestone__c.upsert("Milestone_UUID__c/m-1", {"Plan__c": p1, "Title__c": "y"})
    assert e.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert sf.MAP_Milestone__c.upsert("Milestone_UUID__c/m-1", {"Title__c": "y"}) == 200
    # sObject Collections upsert: 200, the existing record's row fails, a new one succeeds
    url = "composite/sobjects/MAP_Milestone__c/Milestone_UUID__c"
    res = sf.restful(url, method="PATCH", json={"allOrNone": False, "records": [
        {"attributes": {"type": "MAP_Milestone__c"}, "Milestone_UUID__c": "m-1",
         "Plan__c": p1, "Title__c": "z"},
        {"attributes": {"type": "MAP_Milestone__c"}, "Milestone_UUID__c": "m-2",
         "Plan__c": p1, "Name": "New", "Title__c": "new"}]})
    assert [r["success"] for r in res] == [False, True]
    assert res[0]["errors"][0]["statusCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert res[1]["created"] is True
    assert sandbox.get_record(org, "MAP_Milestone__c", ms)["Title__c"] == "y"


# --------------------------------------------------------------------------------------------
# 6. Lightning Data Service writes, the recycle bin


def test_lds_writes_come_from_the_rep_without_our_uuids(sandbox, org, rep, sf):
    opp = opportunity(sandbox, org)
    sandbox.clock.advance(5)
    plan = sandbox.lds_create(org, "Mutual_Action_Plan__c", {"Opportunity__c": opp})
    assert plan["apiName"] == "Mutual_Action_Plan__c" and plan["fields"]["Plan_UUID__c"][
        "value"] is None
    ms = sandbox.lds_create(org, "MAP_Milestone__c", {
        "Plan__c": plan["id"], "Name": "Kickoff", "Title__c": "Kickoff", "Status__c": "done"})
    [row] = sf.query(
        "SELECT Id, Milestone_UUID__c, CreatedById, LastModifiedById, Plan__c "
        f"FROM MAP_Milestone__c WHERE Id = '{ms['id']}'")["records"]
    assert row["Milestone_UUID__c"] is None and row["Plan__c"] == plan["id"]
    assert row["CreatedById"] == rep.id and row["LastModifiedById"] == rep.id
    assert sandbox.get_record(org, "Mutual_Action_Plan__c", plan["id"])["OwnerId"] == rep.id

    sandbox.clock.advance(5)
    updated = sandbox.lds_update(org, ms["id"], {"Id": ms["id"], "Status__c": "in_progress"})
    assert updated["fields"]["Status__c"]["value"] == "in_progress"
    assert updated["systemModstamp"] > ms["systemModstamp"]
    with pytest.raises(Exception, match="INVALID_FIELD_FOR_INSERT_UPDATE"):
        sandbox.lds_update(org, ms["id"], {"Id": ms["id"], "Plan__c": plan["id"]})


def test_the_ui_api_endpoints_over_https_with_a_reps_token(sandbox, org, rep, http):
    rep_sf = sf_for(sandbox, org, http, user_id=rep.id)
    opp = opportunity(sandbox, org)
    created = rep_sf.restful("ui-api/records", method="POST", json={
        "apiName": "Mutual_Action_Plan__c", "fields": {"Opportunity__c": opp}})
    assert created["id"] and created["lastModifiedById"] == rep.id
    patched = rep_sf.restful(f"ui-api/records/{created['id']}", method="PATCH",
                             json={"fields": {"Budget__c": "120k"}})
    assert patched["fields"]["Budget__c"]["value"] == "120k"
    got = rep_sf.restful(f"ui-api/records/{created['id']}")
    assert got["fields"]["Opportunity__c"]["value"] == opp
    rep_sf.restful(f"ui-api/records/{created['id']}", method="DELETE")
    q = f"SELECT Id, IsDeleted FROM Mutual_Action_Plan__c WHERE Id = '{created['id']}'"
    assert rep_sf.query(q)["totalSize"] == 0
    [row] = rep_sf.query(q, include_deleted=True)["records"]  # queryAll: the recycle bin
    assert row["IsDeleted"] is True
    counts = sandbox.call_counts(org)
    assert counts["POST /services/data/vXX.X/ui-api/records"] == 1


def test_lds_delete_goes_to_the_recycle_bin_and_undelete_brings_back_the_details(
        sandbox, org, sf):
    opp = opportunity(sandbox, org)
    plan = sandbox.lds_create(org, "Mutual_Action_Plan__c", {"Opportunity__c": opp})
    ms = sandbox.lds_create(org, "MAP_Milestone__c", {"Plan__c": plan["id"], "Name": "A"})
    sandbox.clock.advance(3)
    sandbox.lds_delete(org, plan["id"])
    assert sf.query("SELECT Id FROM MAP_Milestone__c")["totalSize"] == 0
    rows = sf.query("SELECT Id, IsDeleted FROM MAP_Milestone__c", include_deleted=True)[
        "records"]
    assert [(r["Id"], r["IsDeleted"]) for r in rows] == [(ms["id"], True)]
    sandbox.clock.advance(3)
    sandbox.undelete(org, "Mutual_Action_Plan__c", plan["id"])
    rows = sf.query("SELECT Id, IsDeleted, SystemModstamp FROM MAP_Milestone__c")["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in rows] == [(ms["id"], False)]
    with pytest.raises(Exception, match="UNDELETE_FAILED"):
        sandbox.undelete(org, "Mutual_Action_Plan__c", plan["id"])


# --------------------------------------------------------------------------------------------
# 7. the demo


def test_demo_orgs_start_at_the_first_open_stage_and_record_types_where_needed():
    sb = demo_sandbox()
    acme, uat, initech = sb.orgs.values()
    for o in (acme, uat, initech):
        stages = {r["StageName"] for r in sb.records(o, "Opportunity")}
        assert stages == {"Prospecting"} == {sb.first_open_stage(o)}
    assert not acme.record_types and not initech.record_types
    assert sorted(r.name for r in uat.record_types.values()) == ["New Business", "Renewal"]
    assert sb.first_open_stage(uat, "Renewal") == "Qualification"
