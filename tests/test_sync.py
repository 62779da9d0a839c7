"""The sync engine end to end through the in-memory connector: outbox, relay,
retries, parking, coalescing, crash recovery, pull and the status API."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from connector.errors import NeedsReauth, NotFound, RateLimited, Rejected, Transient
from connector.memory import MemoryCrm
from webapp import jobs, outbox, providers
from webapp.db import session
from webapp.models import Installation, Milestone, Mirror, OutboxEntry, Tenant


@pytest.fixture
def crm():
    crm = MemoryCrm()
    crm.add_deal("d1")
    crm.add_deal("d2")
    return crm


@pytest.fixture
def installation(app, api, crm):
    providers.override(app, "hubspot", connector=lambda inst, _store: crm.connector(inst.account_id))
    with app.app_context():
        s = session()
        tenant = s.scalars(select(Tenant).where(Tenant.name == "acme")).one()
        row = Installation(tenant_id=tenant.id, provider="hubspot", account_id="acct-1", settings={})
        s.add(row)
        s.commit()
        return row.id


def run(app, task="relay", *args):
    with app.app_context():
        return jobs.TASKS[task](*args)


def rows(app, **filters):
    with app.app_context():
        query = select(OutboxEntry)
        for key, value in filters.items():
            query = query.where(getattr(OutboxEntry, key) == value)
        return session().scalars(query).all()


def new_plan(api, deal="d1", template="enterprise"):
    response = api.post("/plans", json={"title": "Acme", "template": template,
                                        "deal": {"provider": "hubspot", "account_id": "acct-1", "deal_id": deal}})
    assert response.status_code == 201, response.json
    return response.json


def milestone(plan, title):
    return next(m for s in plan["stages"] for m in s["milestones"] if m["title"] == title)


def test_a_change_and_its_outbox_row_commit_together(app, api, installation, crm):
    plan = new_plan(api)
    assert [r.status for r in rows(app)] == ["pending"]
    assert run(app) == 1
    assert len(crm.milestones) == 11 and plan["id"] in crm.plans
    assert crm.deals["d1"]["properties"]["progress_percent"] == "0"
    assert [r.status for r in rows(app)] == ["done"]


def test_a_rejected_request_writes_no_outbox_row(app, api, installation):
    plan = new_plan(api)
    run(app)
    before = len(rows(app))
    m = milestone(plan, "Discovery call")
    assert api.patch(f"/milestones/{m['id']}", json={"status": "done", "stage_id": "nope"}).status_code == 422
    assert len(rows(app)) == before


def test_plans_without_an_installation_are_not_queued(app, api):
    api.post("/plans", json={"title": "Solo", "template": "quick"})
    assert rows(app) == []


def test_gate_completion_moves_the_deal_forward_once(app, api, installation, crm):
    plan = new_plan(api)
    run(app)
    m = milestone(plan, "Define requirements and success criteria")
    api.patch(f"/milestones/{m['id']}", json={"status": "done"})
    run(app)
    assert crm.deals["d1"]["stage"] == "qualifiedtobuy"
    assert crm.deal_history["d1"] == ["qualifiedtobuy"]
    # a change elsewhere re-pushes that milestone only, and does not touch the stage again
    other = milestone(plan, "Client references")
    writes = dict(crm.writes)
    api.patch(f"/milestones/{other['id']}", json={"risk": "at_risk"})
    run(app)
    assert crm.deal_history["d1"] == ["qualifiedtobuy"]
    assert crm.writes[other["id"]] == writes[other["id"]] + 1
    assert crm.writes[m["id"]] == writes[m["id"]]


def test_close_milestone_drives_close_date(app, api, installation, crm):
    plan = new_plan(api)
    run(app)
    closer = milestone(plan, "Commercial agreement")
    assert str(crm.deals["d1"]["close_date"]) == closer["due_date"]
    api.patch(f"/milestones/{closer['id']}", json={"due_date": "2027-05-01", "reason": "legal"})
    run(app)
    assert str(crm.deals["d1"]["close_date"]) == "2027-05-01"


def test_rep_moving_the_deal_is_taken_in_as_a_mismatch(app, api, installation, crm):
    plan = new_plan(api)
    run(app)
    crm.rep_moves_deal("d1", "decisionmakerboughtin")
    assert run(app, "pull", installation) >= 1
    status = api.get(f"/plans/{plan['id']}/sync").json
    assert status["mismatch"]["kind"] == "ahead"
    assert status["deal_stage"] == "decisionmakerboughtin"
    m = milestone(plan, "Define requirements and success criteria")
    api.patch(f"/milestones/{m['id']}", json={"status": "done"})
    run(app)
    assert crm.deals["d1"]["stage"] == "decisionmakerboughtin"  # never moved back


def test_coalescing_50_edits_into_at_most_2_pushes(app, api, installation, crm):
    plan = new_plan(api)
    run(app)
    pushes = crm.calls["push_plan"]
    m = milestone(plan, "Discovery call")
    for i in range(50):
        api.patch(f"/milestones/{m['id']}", json={"description": f"edit {i}"})
    assert len(rows(app, status="pending")) == 1
    run(app)
    assert crm.calls["push_plan"] - pushes <= 2
    assert crm.milestones[m["id"]]["description"] == "edit 49"


def test_rate_limit_defers_without_counting_a_failure(app, api, installation, crm):
    new_plan(api)
    crm.script("push_plan", RateLimited("slow down", retry_after=30))
    run(app)
    [entry] = rows(app)
    assert entry.status == "pending" and entry.attempts == 0
    assert entry.next_attempt_at.replace(tzinfo=timezone.utc) > datetime.now(timezone.utc) + timedelta(seconds=20)
    assert run(app) == 0  # not due yet


def test_transient_errors_retry_with_backoff_then_succeed(app, api, installation, crm):
    new_plan(api)
    crm.script("push_plan", Transient("502 bad gateway"))
    run(app)
    [entry] = rows(app)
    assert entry.status == "pending" and entry.attempts == 1 and "502" in entry.last_error
    with app.app_context():
        session().execute(update(OutboxEntry).values(next_attempt_at=datetime.now(timezone.utc)))
        session().commit()
    run(app)
    assert rows(app)[0].status == "done" and len(crm.milestones) == 11


def test_rejection_is_dead_lettered_and_visible_then_retryable(app, api, installation, crm):
    plan = new_plan(api)
    crm.script("push_plan", Rejected("Property 'map_risk' does not exist"))
    run(app)
    status = api.get(f"/plans/{plan['id']}/sync").json
    assert status["state"] == "failed"
    assert "map_risk" in status["dead_letters"][0]["error"]
    assert api.post(f"/plans/{plan['id']}/sync/retry").json == {"requeued": 1}
    run(app)
    assert api.get(f"/plans/{plan['id']}/sync").json["state"] == "synced"


def test_deleted_deal_dead_letters(app, api, installation, crm):
    new_plan(api, deal="d1")
    crm.script("get_deal", NotFound("deal gone"))
    run(app)
    assert rows(app)[0].status == "dead"


def test_needs_reauth_parks_the_installation_until_reconnect(app, api, installation, crm):
    plan = new_plan(api)
    crm.script("push_plan", NeedsReauth("invalid_grant"))
    run(app)
    assert [r.status for r in rows(app)] == ["parked"]
    api.patch(f"/plans/{plan['id']}", json={"title": "Renamed"})
    assert sorted(r.status for r in rows(app)) == ["parked"]  # still parked, coalesced
    assert api.get(f"/plans/{plan['id']}/sync").json["state"] == "needs_reconnect"
    assert run(app) == 0
    with app.app_context():
        s = session()
        outbox.unpark_installation(s, s.get(Installation, installation))
        s.commit()
    run(app)
    assert crm.plans[plan["id"]]["title"] == "Renamed"
    assert api.get(f"/plans/{plan['id']}/sync").json["state"] == "synced"


def test_a_crash_between_claim_and_done_loses_nothing(app, api, installation, crm):
    new_plan(api)
    with app.app_context():
        assert len(outbox.claim(session(), "doomed-worker")) == 1  # ... and the worker dies here
        session().commit()
    assert run(app) == 0  # the row is someone's: not claimed twice
    with app.app_context():
        session().execute(update(OutboxEntry).values(claimed_at=datetime.now(timezone.utc) - timedelta(hours=1)))
        session().commit()
    assert run(app, "sweep") == {"requeued": 1}
    run(app)
    assert len(crm.milestones) == 11
    assert crm.calls["push_plan"] == 1


def test_local_deletion_archives_the_remote_record(app, api, installation, crm):
    plan = new_plan(api)
    run(app)
    m = milestone(plan, "Client references")
    api.delete(f"/milestones/{m['id']}")
    run(app)
    assert m["id"] not in crm.milestones and len(crm.milestones) == 10


def test_pull_applies_rep_edits_and_ignores_echoes(app, api, installation, crm):
    plan = new_plan(api)
    run(app)
    assert run(app, "pull", installation) == 0  # nothing changed remotely
    m = milestone(plan, "Client references")
    crm.rep_edits_milestone(m["id"], status="done", risk="at_risk")
    assert run(app, "pull", installation) == 1
    mine = api.get(f"/milestones/{m['id']}").json
    assert mine["status"] == "done" and mine["risk"] == "at_risk"
    log = api.get(f"/plans/{plan['id']}/activity").json["items"]
    assert log[0]["actor"] == "crm:hubspot"
    run(app)  # our push of the same state
    assert run(app, "pull", installation) == 0  # seen before (overlap), and an echo anyway


def test_pull_keeps_a_newer_local_edit(app, api, installation, crm):
    plan = new_plan(api)
    run(app)
    m = milestone(plan, "Client references")
    crm.rep_edits_milestone(m["id"], risk="off_track")
    api.patch(f"/milestones/{m['id']}", json={"risk": "at_risk"})  # newer than the CRM edit
    run(app, "pull", installation)
    assert api.get(f"/milestones/{m['id']}").json["risk"] == "at_risk"


def test_pull_applies_remote_deletion(app, api, installation, crm):
    plan = new_plan(api)
    run(app)
    m = milestone(plan, "Client references")
    crm.rep_deletes_milestone(m["id"])
    run(app, "pull", installation)
    assert api.get(f"/milestones/{m['id']}").status_code == 404


def test_deal_deletion_archives_the_plan(app, api, installation, crm):
    from connector.base import RemoteChange

    plan = new_plan(api)
    run(app)
    crm.changes.append(RemoteChange("deal", "d1", {}, datetime.now(timezone.utc), deleted=True))
    run(app, "pull", installation)
    log = api.get(f"/plans/{plan['id']}/activity").json["items"]
    assert log[0]["action"] == "plan.archived"


def test_pull_checkpoints_and_never_passes_its_start(app, api, installation, crm):
    plan = new_plan(api)
    run(app)
    for title in ("Client references", "Project kickoff", "Onboarding"):
        crm.rep_edits_milestone(milestone(plan, title)["id"], risk="at_risk")
    crm.script("pull", None, Transient("timeout"))  # second page fails
    started = datetime.now(timezone.utc)
    run(app, "pull", installation)  # the failure is recorded, not raised (sync's pull policy)
    with app.app_context():
        inst = session().get(Installation, installation)
        assert inst.pull_state["cursor"] == "2"  # the first page is checkpointed
        assert inst.last_pull_error == "Transient: timeout" and inst.next_pull_at is not None
    assert run(app, "pull", installation) == 1  # resumes with the third change
    with app.app_context():
        inst = session().get(Installation, installation)
        assert datetime.fromisoformat(inst.pull_state["since"]) <= started


def test_sync_status_and_stage_mapping_api(app, api, other_api, installation, crm):
    plan = new_plan(api)
    assert api.get(f"/plans/{plan['id']}/sync").json["state"] == "pending"
    run(app)
    status = api.get(f"/plans/{plan['id']}/sync").json
    assert status["state"] == "synced" and status["last_pushed_at"] and status["pending"] == 0
    [inst] = api.get("/installations").json["items"]
    assert inst["provider"] == "hubspot"
    url = f"/installations/{inst['id']}/stage-mappings/default"
    default = api.get(url).json
    assert default["is_default"] and default["gates"]["commercial agreement"] == "contractsent"
    assert [s["id"] for s in default["stages"]][0] == "appointmentscheduled"
    bad = api.put(url, json={"gates": {"Discovery call": "nope"}})
    assert bad.status_code == 422
    put = api.put(url, json={"gates": {"Discovery call": "qualifiedtobuy"}, "close_milestone": "Onboarding"})
    assert put.status_code == 200 and put.json["is_default"] is False
    m = milestone(plan, "Discovery call")
    api.patch(f"/milestones/{m['id']}", json={"status": "done"})
    run(app)
    assert crm.deals["d1"]["stage"] == "qualifiedtobuy"
    assert other_api.get(url).status_code == 404
    assert other_api.get(f"/plans/{plan['id']}/sync").status_code == 404


def test_inline_jobs_run_after_commit(app, api, installation, crm):
    app.extensions[jobs.EXT]["mode"] = "inline"
    new_plan(api)
    assert len(crm.milestones) == 11


def test_mirror_rows_carry_the_tenant(app, api, installation, crm):
    plan = new_plan(api)
    run(app)
    with app.app_context():
        state = session().get(Mirror, plan["id"])
        assert state.tenant_id == rows(app)[0].tenant_id
        assert session().scalars(select(Milestone)).first().tenant_id == state.tenant_id
