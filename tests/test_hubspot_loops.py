# ruff: noqa: F811  (pytest fixtures imported from test_hubspot)
"""Issue 11, the HubSpot side: plan and milestone records created in HubSpot's UI (custom-objects
mode) are imported and written back by record id, plan records deleted or restored there archive
or restore the plan here, and archiving a plan here archives its records there. Through
hubspot-api-client against the strict sandbox."""
from __future__ import annotations

from test_hubspot import (  # noqa: F401  (fixtures and helpers)
    ENT,
    _record_of,
    _summary,
    app_config,
    deal_id,
    inst,
    installed,
    milestone,
    milestones,
    mirror,
    new_plan,
    outbox,
    run,
    sb,
)

from webapp.db import session
from webapp.models import Plan


def _types(app, installation_id) -> dict:
    return inst(app, installation_id).settings["object_types"]


def _plans_on(app, deal: str) -> list[Plan]:
    with app.app_context():
        return session().query(Plan).filter(Plan.deal_id == deal).all()


def test_a_plan_made_in_hubspots_ui_becomes_an_ordinary_plan(app, client, sb):
    installation_id, api = installed(app, client, sb, ENT)
    types = _types(app, installation_id)
    deal = deal_id(sb, ENT, 1)
    sb.advance(2)
    made = sb.ui_create_record(ENT, types["plan"], {"mp_name": "Born in HubSpot"},
                               associations=[("deals", deal)])
    born_ms = sb.ui_create_record(ENT, types["milestone"], {"mp_title": "Security review",
                                                            "mp_status": "in_progress"},
                                  associations=[(types["plan"], made["id"])])
    run(app, "pull", installation_id)  # one pull: the plan, then its milestone joining it
    [plan] = _plans_on(app, deal)
    assert plan.title == "Born in HubSpot" and plan.archived_at is None
    envelope = api.get(f"/plans/{plan.id}").json
    [m] = milestones(envelope)
    assert (m["title"], m["status"]) == ("Security review", "in_progress")

    run(app)  # the push writes our UUIDs onto the records by record id, then the summary
    plan_records = sb.records(ENT, types["plan"])
    assert [(r["id"], r["properties"]["mp_uuid"]) for r in plan_records] == [(made["id"], plan.id)]
    [ms_record] = sb.records(ENT, types["milestone"])  # written back, not duplicated
    assert (ms_record["id"], ms_record["properties"]["mp_uuid"]) == (born_ms["id"], m["id"])
    assert ms_record["properties"]["mp_plan_uuid"] == plan.id
    summary = _summary(sb, ENT, deal)
    assert summary["mp_buyer_link"].startswith("http")  # the buyer link, written to the deal
    assert mirror(app, plan.id).deal_stage  # the stage mirror knows the deal
    assert not outbox(app, status="dead") and not outbox(app, status="pending")
    assert inst(app, installation_id).settings.get("sync_problems", []) == []

    # from now on an ordinary plan: a rep's edit in HubSpot merges, nothing is imported twice
    sb.advance(2)
    sb.ui_edit(ENT, types["milestone"], born_ms["id"], {"mp_status": "done"})
    run(app, "pull", installation_id)
    run(app)
    assert len(_plans_on(app, deal)) == 1
    [m] = milestones(api.get(f"/plans/{plan.id}").json)
    assert m["status"] == "done"
    assert len(sb.records(ENT, types["milestone"])) == 1 and len(sb.records(ENT, types["plan"])) == 1
    # the stage mirror: a gate milestone done here moves the deal forward
    before = sb.get_record(ENT, "deals", deal)["properties"]["dealstage"]
    stage_id = api.get(f"/plans/{plan.id}").json["stages"][0]["id"]
    assert api.post(f"/plans/{plan.id}/milestones", json={
        "stage_id": stage_id, "title": "Define requirements and success criteria",
        "status": "done"}).status_code == 201
    run(app)
    after = sb.get_record(ENT, "deals", deal)["properties"]["dealstage"]
    assert after != before and mirror(app, plan.id).deal_stage == after


def test_a_milestone_made_in_hubspots_ui_joins_its_plan_and_is_written_back(app, client, sb):
    installation_id, api = installed(app, client, sb, ENT)
    plan = new_plan(api, ENT, deal_id(sb, ENT))
    run(app)
    types = _types(app, installation_id)
    plan_rec = _record_of(sb, ENT, types["plan"], plan["id"])
    sb.advance(2)
    made = sb.ui_create_record(ENT, types["milestone"], {"mp_title": "Security review",
                                                         "mp_stage_name": "Evaluate"},
                               associations=[(types["plan"], plan_rec["id"])])
    run(app, "pull", installation_id)
    after = api.get(f"/plans/{plan['id']}").json
    assert len(milestones(after)) == len(milestones(plan)) + 1
    new = milestone(after, "Security review")
    run(app)
    records = sb.records(ENT, types["milestone"])
    assert len(records) == len(milestones(plan)) + 1  # the record got our UUID: no twin
    assert _record_of(sb, ENT, types["milestone"], new["id"])["id"] == made["id"]
    run(app, "pull", installation_id)  # our write-back comes back as nothing new
    assert len(milestones(api.get(f"/plans/{plan['id']}").json)) == len(milestones(after))
    assert not outbox(app, status="dead")


def test_records_that_cannot_be_imported_are_reported(app, client, sb):
    installation_id, api = installed(app, client, sb, ENT)
    types = _types(app, installation_id)
    sb.advance(2)
    orphan = sb.ui_create_record(ENT, types["plan"], {"mp_name": "No deal"})
    lost = sb.ui_create_record(ENT, types["milestone"], {"mp_title": "Lost"},
                               associations=[(types["plan"], orphan["id"])])
    good = sb.ui_create_record(ENT, types["plan"], {"mp_name": "Good"},
                               associations=[("deals", deal_id(sb, ENT, 1))])
    odd = sb.ui_create_record(ENT, types["milestone"], {"mp_title": "x" * 250},  # too long here
                              associations=[(types["plan"], good["id"])])
    run(app, "pull", installation_id)
    [status] = api.get("/installations").json["items"]
    reasons = {p["remote_id"]: p["reason"] for p in status["sync_problems"]}
    assert "no deal" in reasons[orphan["id"]]
    assert "plan is not here" in reasons[lost["id"]]
    assert "invalid values" in reasons[odd["id"]]
    assert len(reasons) == 3
    assert [p["title"] for p in api.get("/plans").json["items"]] == ["Good"]


def test_a_plan_record_deleted_in_hubspot_archives_the_plan_and_a_restore_brings_it_back(
        app, client, sb):
    installation_id, api = installed(app, client, sb, ENT)
    deal = deal_id(sb, ENT)
    plan = new_plan(api, ENT, deal)
    run(app)
    types = _types(app, installation_id)
    record = _record_of(sb, ENT, types["plan"], plan["id"])
    sb.advance(2)
    sb.ui_delete(ENT, types["plan"], record["id"])
    run(app, "pull", installation_id)
    [row] = _plans_on(app, deal)
    assert row.archived_at is not None
    # archived here -> archived there: its milestones go to the bin and the deal's summary empties
    run(app)
    assert sb.records(ENT, types["milestone"]) == [] and _summary(sb, ENT, deal) == {}
    assert not outbox(app, status="dead") and not outbox(app, status="pending")
    sb.advance(2)
    run(app, "pull", installation_id)  # our own archives come back from the bin: nothing to do
    assert _plans_on(app, deal)[0].archived_at is not None

    sb.advance(60)
    sb.restore_record(ENT, types["plan"], record["id"])
    run(app, "pull", installation_id)
    assert _plans_on(app, deal)[0].archived_at is None
    run(app)  # pushed again in full: the restored plan record, new milestone records, the summary
    assert [r["id"] for r in sb.records(ENT, types["plan"])] == [record["id"]]
    assert len(sb.records(ENT, types["milestone"])) == len(milestones(plan))
    assert _summary(sb, ENT, deal).get("mp_progress_percent") == "0"
    assert not outbox(app, status="dead") and not outbox(app, status="pending")
    assert len(milestones(api.get(f"/plans/{plan['id']}").json)) == len(milestones(plan))


def test_a_plan_archived_with_its_deal_archives_its_records_and_comes_back_with_it(app, client, sb):
    installation_id, api = installed(app, client, sb, ENT)
    deal = deal_id(sb, ENT)
    plan = new_plan(api, ENT, deal)
    run(app)
    types = _types(app, installation_id)
    sb.advance(2)
    sb.rep_delete_deal(ENT, deal)
    sb.drain_events()
    with app.app_context():  # the webhook's deletion event, as the inbox hands it over
        from connector.base import RemoteChange
        from webapp import clock, sync
        from webapp.models import Installation

        s = session()
        sync.apply_change(s, s.get(Installation, installation_id),
                          RemoteChange("deal", deal, {}, clock.now(), deleted=True))
        s.commit()
    [row] = outbox(app, status="pending")
    assert row.payload["op"] == "remove"
    run(app)  # the deal is gone (its summary with it); the plan's records go to the bin
    assert sb.records(ENT, types["plan"]) == [] and sb.records(ENT, types["milestone"]) == []
    assert not outbox(app, status="dead")
    sb.advance(60)
    sb.restore_deal(ENT, deal)
    sb.drain_events()
    run(app, "pull", installation_id)
    assert _plans_on(app, deal)[0].archived_at is None
    run(app)
    [plan_record] = sb.records(ENT, types["plan"])
    assert plan_record["properties"]["mp_uuid"] == plan["id"]
    assert len(sb.records(ENT, types["milestone"])) == len(milestones(plan))
    assert _summary(sb, ENT, deal).get("mp_progress_percent") == "0"
    assert not outbox(app, status="dead") and not outbox(app, status="pending")


def test_pulls_through_429_storms_and_5xx_lose_no_remote_edit_and_duplicate_nothing(
        app, client, sb):
    """The pull soak, bounded (tests/pull_soak.py; bench/pull_soak.py runs it longer)."""
    import pull_soak

    installation_id, api = installed(app, client, sb, ENT)
    plans = [new_plan(api, ENT, deal_id(sb, ENT, n), twelve=False)["id"] for n in range(2)]
    run(app)
    side = pull_soak.HubSpotSide(sb, ENT, _types(app, installation_id))
    outcome = pull_soak.soak(app, side, installation_id, plans, rounds=6, edits=4)
    assert outcome.failed_pulls > 0  # the storms did break pulls (the error policy took over)
    assert (outcome.lost, outcome.duplicates, outcome.unsynced) == ([], [], [])
    assert outcome.born == 3 and outcome.edits >= 30


def test_a_pull_before_the_removal_reaches_hubspot_does_not_bring_deleted_records_back(
        app, client, sb):
    installation_id, api = installed(app, client, sb, ENT)
    plan = new_plan(api, ENT, deal_id(sb, ENT))
    run(app)
    gone = milestone(plan, "Discovery call")
    assert api.delete(f"/milestones/{gone['id']}").status_code == 204
    run(app, "pull", installation_id)  # the record, pushed within the overlap, is still live
    assert gone["id"] not in {m["id"] for m in milestones(api.get(f"/plans/{plan['id']}").json)}
    assert api.delete(f"/plans/{plan['id']}").status_code == 204
    run(app, "pull", installation_id)  # the plan record too
    assert api.get("/plans").json["items"] == []
    run(app)
    run(app, "pull", installation_id)
    assert api.get("/plans").json["items"] == [] and not outbox(app, status="dead")
