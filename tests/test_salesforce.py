"""Salesforce end to end: the Connect flow through the Flask test client and the emulator's
authorize endpoint, then pushes and pulls through the real simple-salesforce over real HTTPS
(the emulator started in-process with a local CA)."""
from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import Api
from sqlalchemy import select, update

from connector.errors import NeedsReauth, RateLimited
from connector.salesforce import (
    PRODUCTION_LOGIN,
    SANDBOX_LOGIN,
    OAuthFailure,
    classify,
    login_base,
)
from sandboxes.salesforce import SalesforceSandbox, serve
from webapp import installations, jobs
from webapp import providers as sfbp
from webapp.db import session
from webapp.models import Installation, Milestone, OAuthState, OutboxEntry, Plan

CLIENT_ID, CLIENT_SECRET = "mp-test-client", "mp-test-secret"
REDIRECT = "http://localhost/oauth/salesforce/callback"


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def sandbox():
    sb = SalesforceSandbox()
    sb.add_connected_app(CLIENT_ID, CLIENT_SECRET, [REDIRECT], rotate_refresh_tokens=True)
    sb.add_org("Acme Corp", my_domain="acme")
    sb.auto_approve = True  # the first org's admin approves
    return sb


@pytest.fixture
def org(sandbox):
    return next(iter(sandbox.orgs.values()))


@pytest.fixture
def handle(sandbox):
    h = serve(sandbox)
    yield h
    h.shutdown()


@pytest.fixture
def app_config(handle):
    return {"SALESFORCE_CLIENT_ID": CLIENT_ID, "SALESFORCE_CLIENT_SECRET": CLIENT_SECRET,
            "SALESFORCE_LOGIN_URL": handle.url, "CRM_CA_BUNDLE": handle.ca_path,
            "JOBS_MODE": "manual", "PUBLIC_BASE_URL": "http://localhost",
            "SALESFORCE_RETRY_WAIT": 0.01}


@pytest.fixture
def http(handle):
    s = requests.Session()
    s.verify, s.trust_env = handle.ca_path, False
    yield s
    s.close()


@pytest.fixture
def opportunity(sandbox, org):
    account = sandbox.create_record(org, "Account", {"Name": "Buyer Inc"})
    return sandbox.create_record(org, "Opportunity", {
        "Name": "Buyer Inc rollout", "AccountId": account, "StageName": "Prospecting",
        "CloseDate": "2027-03-31", "Amount": 50000})


def start(client, **params):
    response = client.get("/install/salesforce", query_string=params)
    assert response.status_code == 302, response.data
    return response.headers["Location"]


def authorize(http, url):
    """The browser at Salesforce: auto-approved, redirected back with code and state."""
    response = http.get(url, allow_redirects=False)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def back(client, location):
    parts = urlsplit(location)
    return client.get(f"{parts.path}?{parts.query}")


def connect(client, http, **params):
    return back(client, authorize(http, start(client, **params)))


def run(app, task, *args):
    with app.app_context():
        return jobs.TASKS[task](*args)


def queued(app):
    return app.extensions[jobs.EXT].setdefault("queued", [])


def installation(app) -> Installation:
    with app.app_context():
        return session().scalars(select(Installation).where(Installation.provider == "salesforce")).one()


def tokens(app):
    with app.app_context():
        return installations.tokens_of(installation(app))


def rows(app, **filters):
    with app.app_context():
        query = select(OutboxEntry)
        for key, value in filters.items():
            query = query.where(getattr(OutboxEntry, key) == value)
        return session().scalars(query).all()


@pytest.fixture
def connected(app, client, http, org):
    """Connect through the real flow, run the bootstrap job; returns an Api with the shown key."""
    page = connect(client, http)
    assert page.status_code == 200, page.data
    key = re.search(r'id="api-key">([^<]+)<', page.get_data(as_text=True)).group(1)
    inst = installation(app)
    run(app, "setup", inst.id)
    queued(app).clear()
    return Api(client, key)


def new_plan(api, org, deal, template="enterprise"):
    response = api.post("/plans", json={"title": "Buyer rollout", "template": template,
                                        "deal": {"provider": "salesforce", "account_id": org.id,
                                                 "deal_id": deal}})
    assert response.status_code == 201, response.json
    return response.json


def milestone(plan, title):
    return next(m for s in plan["stages"] for m in s["milestones"] if m["title"] == title)


def sf_milestones(sandbox, org):
    return {r["Milestone_UUID__c"]: r for r in sandbox.records(org, "MAP_Milestone__c")}


def calls(sandbox, org) -> int:
    return sum(sandbox.call_counts(org).values())


# ---- connect ----------------------------------------------------------------------------


def test_connect_flow_end_to_end_with_pkce(app, client, http, sandbox, org):
    location = start(client)
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(sandbox.base_url + "/services/oauth2/authorize")
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["redirect_uri"] == [REDIRECT] and query["client_id"] == [CLIENT_ID]
    page = back(client, authorize(http, location))
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Acme Corp" in html and org.id in html
    assert re.search(r'id="api-key">mp_', html)
    inst = installation(app)
    assert inst.account_id == org.id and inst.status == "active"
    assert inst.settings["instance_url"] == sandbox.base_url and inst.settings["namespace"] is None
    stored = tokens(app)
    assert stored.refresh_token and stored.extra["org_id"] == org.id
    assert queued(app) == [("setup", (inst.id,))]
    result = run(app, "setup", inst.id)
    assert result["pipelines"] == ["default"]
    stages = installation(app).settings["pipelines"]["default"]
    assert [s["id"] for s in stages] == [s.label for s in org.stages]
    assert stages[-2]["closed"] and stages[-2]["won"]
    # connecting again keeps the tenant and shows no new key
    queued(app).clear()
    again = connect(client, http)
    assert again.status_code == 200 and 'id="api-key"' not in again.get_data(as_text=True)


def test_stages_are_read_per_sales_process(app, client, http, sandbox, org):
    sandbox.add_sales_process(org, "Short cycle", ["Prospecting", "Negotiation/Review", "Closed Won",
                                                   "Closed Lost"])
    rt = sandbox.add_record_type(org, "Short", "Short cycle")
    connect(client, http)
    run(app, "setup", installation(app).id)
    settings = installation(app).settings
    assert [s["id"] for s in settings["pipelines"]["Short cycle"]] == [
        "Prospecting", "Negotiation/Review", "Closed Won", "Closed Lost"]
    assert settings["record_type_pipelines"] == {rt.id: "Short cycle"}


def test_login_hosts():
    assert login_base() == PRODUCTION_LOGIN
    assert login_base("sandbox") == SANDBOX_LOGIN
    assert login_base(my_domain="acme.my.salesforce.com") == "https://acme.my.salesforce.com"
    assert login_base(my_domain="acme--uat.sandbox.my.salesforce.com") == \
        "https://acme--uat.sandbox.my.salesforce.com"
    for bad in ("evil.com", "acme.my.salesforce.com.evil.com", "a/b.my.salesforce.com", "@x.my.salesforce.com"):
        with pytest.raises(OAuthFailure):
            login_base(my_domain=bad)
    # locally one emulator plays every host
    assert login_base(my_domain="acme.my.salesforce.com", production="https://127.0.0.1:1") == "https://127.0.0.1:1"


def test_sandbox_and_my_domain_connects(app, client, http, sandbox):
    assert start(client, sandbox="1").startswith(sandbox.base_url)
    assert start(client, my_domain="acme.my.salesforce.com").startswith(sandbox.base_url)
    refused = client.get("/install/salesforce?my_domain=evil.example.com")
    assert refused.status_code == 400 and 'id="reason">invalid_domain<' in refused.get_data(as_text=True)


def reason_of(response) -> str:
    return re.search(r'id="reason">([a-z_]+)<', response.get_data(as_text=True)).group(1)


def test_access_denied(app, client, http, sandbox):
    location = start(client)
    sandbox.auto_approve = None
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    org = next(iter(sandbox.orgs.values()))
    denied = http.post(f"{sandbox.base_url}/services/oauth2/authorize",
                       data={**params, "action": "deny", "login": f"{org.id}:{org.admin.id}"},
                       allow_redirects=False)
    response = back(client, denied.headers["Location"])
    assert response.status_code == 403 and reason_of(response) == "access_denied"
    assert rows(app) == [] and installation_count(app) == 0


def installation_count(app) -> int:
    with app.app_context():
        return len(session().scalars(select(Installation)).all())


def test_invalid_state(app, client, http):
    location = authorize(http, start(client))
    forged = re.sub(r"state=[^&]+", "state=forged", location)
    response = back(client, forged)
    assert response.status_code == 400 and reason_of(response) == "invalid_state"


def test_invalid_browser(app, client, http):
    location = authorize(http, start(client))
    client.delete_cookie(installations.BROWSER_COOKIE)
    response = back(client, location)
    assert reason_of(response) == "invalid_browser"


def test_expired_state(app, client, http):
    location = authorize(http, start(client))
    with app.app_context():
        s = session()
        s.execute(update(OAuthState).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        s.commit()
    assert reason_of(back(client, location)) == "expired_state"


def test_used_state(app, client, http):
    location = authorize(http, start(client))
    assert back(client, location).status_code == 200
    assert reason_of(back(client, location)) == "used_state"


def test_invalid_code(app, client, http):
    location = authorize(http, start(client))
    response = back(client, re.sub(r"code=[^&]+", "code=aPrxNOTACODE", location))
    assert response.status_code == 400 and reason_of(response) == "invalid_code"
    assert installation_count(app) == 0


def test_pkce_verifier_must_match(app, client, http):
    location = authorize(http, start(client))
    with app.app_context():  # the verifier kept for this state is not the one the challenge came from
        s = session()
        row = s.scalars(select(OAuthState)).one()
        row.data = {**row.data, "verifier": "x" * 64}
        s.commit()
    response = back(client, location)
    assert reason_of(response) == "invalid_code" and "code verifier" in response.get_data(as_text=True)


def test_tampered_signature_is_rejected(app, client, http, sandbox):
    real = sandbox._token_response

    def tampered(*args, **kwargs):
        body = real(*args, **kwargs)
        body["id"] = body["id"].replace(body["id"].split("/")[-1], "005000000000000AAA")
        return body

    sandbox._token_response = tampered
    response = connect(client, http)
    assert response.status_code == 400 and reason_of(response) == "bad_signature"
    assert installation_count(app) == 0


def test_package_missing(app, client, http, sandbox):
    bare = sandbox.add_org("Initech", my_domain="initech", package_installed=False)
    sandbox.auto_approve = (bare.id, bare.admin.id)
    response = connect(client, http)
    assert response.status_code == 409 and reason_of(response) == "package_missing"
    assert "Install the MutualPlan package first" in response.get_data(as_text=True)
    assert installation_count(app) == 0
    sandbox.install_package(bare)
    assert connect(client, http).status_code == 200


def test_storage_error(app, client, http, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(installations, "save", broken)
    response = connect(client, http)
    assert response.status_code == 500 and reason_of(response) == "storage_error"


def test_namespaced_org(app, client, http, sandbox):
    ns_org = sandbox.add_org("Globex", my_domain="globex", namespace="mapns")
    sandbox.auto_approve = (ns_org.id, ns_org.admin.id)
    page = connect(client, http)
    assert page.status_code == 200 and "mapns" in page.get_data(as_text=True)
    key = re.search(r'id="api-key">([^<]+)<', page.get_data(as_text=True)).group(1)
    inst = installation(app)
    assert inst.settings["namespace"] == "mapns"
    run(app, "setup", inst.id)
    account = sandbox.create_record(ns_org, "Account", {"Name": "G"})
    opp = sandbox.create_record(ns_org, "Opportunity", {"Name": "G", "AccountId": account,
                                                        "StageName": "Prospecting", "CloseDate": "2027-01-31"})
    new_plan(Api(client, key), ns_org, opp)
    run(app, "relay")
    assert [r.status for r in rows(app)] == ["done"]
    assert len(sandbox.records(ns_org, "mapns__MAP_Milestone__c")) == 11
    assert sandbox.get_record(ns_org, "Opportunity", opp)["mapns__MAP_Progress__c"] == 0


def test_disconnect_revokes(app, client, connected, sandbox):
    refresh = tokens(app).refresh_token
    response = connected.client.post("/salesforce/disconnect", headers={"Authorization": f"Bearer {connected.key}"})
    assert response.status_code == 200 and response.json["revoked"] is True
    assert sandbox.refresh_tokens[refresh].revoked
    assert installation(app).status == "uninstalled"


# ---- push ---------------------------------------------------------------------------------


def test_new_plan_takes_at_most_two_calls_and_a_change_one(app, connected, sandbox, org, opportunity):
    plan = new_plan(connected, org, opportunity)
    sandbox.reset_calls()
    assert run(app, "relay") == 1
    assert [r.status for r in rows(app)] == ["done"]
    assert calls(sandbox, org) <= 2, sandbox.call_counts(org)
    assert sandbox.call_counts(org)["POST /services/data/vXX.X/composite"] == 1
    records = sf_milestones(sandbox, org)
    assert len(records) == 11
    [plan_record] = sandbox.records(org, "Mutual_Action_Plan__c")
    assert plan_record["Plan_UUID__c"] == plan["id"] and plan_record["Opportunity__c"] == opportunity
    first = milestone(plan, "Discovery call")
    assert records[first["id"]]["Title__c"] == "Discovery call"
    assert records[first["id"]]["Plan__c"] == plan_record["Id"]
    opp = sandbox.get_record(org, "Opportunity", opportunity)
    assert opp["MAP_Progress__c"] == 0 and opp["MAP_Next_Milestone__c"]
    # one milestone changed: one Composite call, only that milestone written
    sandbox.reset_calls()
    connected.patch(f"/milestones/{first['id']}", json={"risk": "at_risk"})
    run(app, "relay")
    assert calls(sandbox, org) == 1
    assert sf_milestones(sandbox, org)[first["id"]]["Risk__c"] == "at_risk"


def test_stage_mirror_moves_forward_never_back(app, connected, sandbox, org, opportunity):
    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    order = [s.label for s in org.stages]
    before = sandbox.get_record(org, "Opportunity", opportunity)["StageName"]
    gate = milestone(plan, "Define requirements and success criteria")
    sandbox.reset_calls()
    connected.patch(f"/milestones/{gate['id']}", json={"status": "done"})
    run(app, "relay")
    assert calls(sandbox, org) == 1  # milestone + stage + summary fields in one Composite
    after = sandbox.get_record(org, "Opportunity", opportunity)
    assert order.index(after["StageName"]) > order.index(before)
    assert sf_milestones(sandbox, org)[gate["id"]]["Status__c"] == "done"
    # the rep moves the deal further; a later gate behind that stage does not move it back
    sandbox.clock.advance(2)
    sandbox.rep_change_stage(org, opportunity, "Negotiation/Review")
    run(app, "pull", installation(app).id)
    nxt = milestone(plan, "Follow-up demo with executive team")
    connected.patch(f"/milestones/{nxt['id']}", json={"status": "done"})
    run(app, "relay")
    assert sandbox.get_record(org, "Opportunity", opportunity)["StageName"] == "Negotiation/Review"


def test_expired_session_mid_push_refreshes_and_replays_once(app, connected, sandbox, org, opportunity):
    new_plan(connected, org, opportunity)
    old = tokens(app)
    sandbox.inject("invalid_session")
    sandbox.reset_calls()
    run(app, "relay")
    assert [r.status for r in rows(app)] == ["done"]
    assert len(sf_milestones(sandbox, org)) == 11
    counts = sandbox.call_counts()
    assert counts["POST /services/oauth2/token"] == 1
    new = tokens(app)
    assert new.access_token != old.access_token
    assert new.refresh_token != old.refresh_token  # rotated, and saved
    assert sandbox.refresh_tokens[old.refresh_token].revoked


def test_rotated_refresh_token_under_two_concurrent_workers(app, connected, sandbox, org, opportunity):
    inst_id = installation(app).id
    old = tokens(app)
    sandbox.expire_sessions(org)
    sandbox.reset_calls()
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker():
        with app.app_context():
            try:
                connector = jobs.sync.connector_for(session().get(Installation, inst_id))
                barrier.wait()
                results.append(connector.get_deal(opportunity).stage)
                results.append(connector.get_deal(opportunity).stage)  # the token it ended with works
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                session().close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == ["Prospecting"] * 4
    assert sandbox.call_counts()["POST /services/oauth2/token"] == 1  # the rotated-out token never reused
    new = tokens(app)
    assert new.refresh_token != old.refresh_token and not sandbox.refresh_tokens[new.refresh_token].revoked
    assert installation(app).status == "active"


def test_partial_composite_failure_dead_letters_with_the_message_and_loses_nothing(
        app, connected, sandbox, org, opportunity):
    plan = new_plan(connected, org, opportunity)
    sandbox.inject("composite_partial")
    run(app, "relay")
    [entry] = rows(app)
    assert entry.status == "dead" and "Injected validation failure" in entry.last_error
    status = connected.get(f"/plans/{plan['id']}/sync").json
    assert status["state"] == "failed" and "Injected validation failure" in status["dead_letters"][0]["error"]
    assert connected.post(f"/plans/{plan['id']}/sync/retry").status_code in (200, 202)
    run(app, "relay")
    assert connected.get(f"/plans/{plan['id']}/sync").json["state"] == "synced"
    assert len(sf_milestones(sandbox, org)) == 11
    assert sandbox.get_record(org, "Opportunity", opportunity)["MAP_Next_Milestone__c"]


def test_lock_errors_and_5xx_are_retried_inside_the_call(app, connected, sandbox, org, opportunity):
    new_plan(connected, org, opportunity)
    sandbox.inject("unable_to_lock_row", path_contains="composite")
    sandbox.inject("503", path_contains="composite")
    run(app, "relay")
    assert [r.status for r in rows(app)] == ["done"]
    assert len(sf_milestones(sandbox, org)) == 11


def test_daily_limit_exhaustion_defers(app, connected, sandbox, org, opportunity):
    new_plan(connected, org, opportunity)
    sandbox.set_daily_limit(org, sandbox.api_usage(org))
    run(app, "relay")
    [entry] = rows(app)
    assert entry.status == "pending" and entry.attempts == 0
    assert "daily" in entry.last_error
    due = entry.next_attempt_at if entry.next_attempt_at.tzinfo else entry.next_attempt_at.replace(tzinfo=UTC)
    assert due > datetime.now(UTC) + timedelta(minutes=50)


def test_polls_wait_when_the_daily_allocation_is_nearly_used(app, connected, sandbox, org, opportunity):
    used = sandbox.api_usage(org)
    sandbox.set_daily_limit(org, used + 1)  # the next response says we are past 90 %
    with app.app_context():
        connector = jobs.sync.connector_for(installation(app))
        connector.get_deal(opportunity)  # urgent work still runs
        sandbox.reset_calls()
        with pytest.raises(RateLimited) as caught:
            connector.pull(datetime.now(UTC) - timedelta(minutes=1))
    assert caught.value.scope == "daily" and calls(sandbox, org) == 0


def test_classify():
    assert isinstance(classify(400, {"error": "invalid_grant", "error_description": "expired"}), NeedsReauth)
    limited = classify(403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}])
    assert isinstance(limited, RateLimited) and limited.scope == "daily" and limited.retry_after >= 3600
    assert classify(400, [{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "x"}]).__class__.__name__ == "Transient"
    assert classify(503, None).__class__.__name__ == "Transient"
    assert classify(401, [{"errorCode": "INVALID_SESSION_ID", "message": "x"}]).__class__.__name__ == "AuthExpired"
    rejected = classify(400, [{"errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Due date too early"}])
    assert rejected.__class__.__name__ == "Rejected" and "Due date too early" in rejected.detail
    assert classify(404, [{"errorCode": "NOT_FOUND", "message": "x"}]).__class__.__name__ == "NotFound"
    assert classify(None, exc=requests.Timeout()).__class__.__name__ == "Transient"


# ---- pull ---------------------------------------------------------------------------------


def test_rep_edits_and_deletions_in_salesforce_are_applied_on_pull(app, connected, sandbox, org, opportunity):
    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    records = sf_milestones(sandbox, org)
    edited, deleted = milestone(plan, "Discovery call"), milestone(plan, "Client references")
    sandbox.clock.advance(2)  # Salesforce stamps have second precision
    sandbox.rep_update(org, "MAP_Milestone__c", records[edited["id"]]["Id"],
                       {"Status__c": "in_progress", "Title__c": "Discovery call (done on site)"})
    sandbox.rep_delete(org, "MAP_Milestone__c", records[deleted["id"]]["Id"])
    sandbox.rep_change_stage(org, opportunity, "Value Proposition", close_date="2027-06-30")
    sandbox.reset_calls()
    inst_id = installation(app).id
    with app.app_context():
        assert jobs.pull(inst_id) >= 3
    assert calls(sandbox, org) == 1  # both queries in one Composite
    with app.app_context():
        s = session()
        m = s.get(Milestone, edited["id"])
        assert m.status == "in_progress" and m.title == "Discovery call (done on site)"
        assert s.get(Milestone, deleted["id"]) is None
    status = connected.get(f"/plans/{plan['id']}/sync").json
    assert status["deal_stage"] == "Value Proposition"
    # our own writes coming back are not edits; the poll after an active one is soon
    assert installation(app).last_activity_at is not None
    row = installation(app)
    assert sfbp.poll_interval(row, datetime.now(UTC)) == sfbp.POLL_ACTIVE
    assert not sfbp.SALESFORCE.is_due(row, datetime.now(UTC))
    assert sfbp.SALESFORCE.is_due(row, datetime.now(UTC) + timedelta(seconds=sfbp.POLL_ACTIVE))
    # a deleted opportunity archives its plan
    sandbox.clock.advance(2)
    sandbox.rep_delete(org, "Opportunity", opportunity)
    run(app, "pull", inst_id)
    with app.app_context():
        assert session().get(Plan, plan["id"]).archived_at is not None


def test_echoes_of_our_writes_change_nothing(app, connected, sandbox, org, opportunity):
    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    before = connected.get(f"/plans/{plan['id']}").json
    run(app, "pull", installation(app).id)
    assert rows(app, status="pending") == []
    assert connected.get(f"/plans/{plan['id']}").json == before


def test_adaptive_interval():
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    row = Installation(status="active", last_pulled_at=now - timedelta(seconds=100), last_activity_at=None)
    assert sfbp.poll_interval(row, now) == sfbp.POLL_IDLE and not sfbp.SALESFORCE.is_due(row, now)
    row.last_activity_at = now - timedelta(minutes=5)
    assert sfbp.poll_interval(row, now) == sfbp.POLL_ACTIVE and sfbp.SALESFORCE.is_due(row, now)
    row.last_activity_at = now - timedelta(hours=1)
    assert sfbp.poll_interval(row, now) == sfbp.POLL_WARM
    assert sfbp.calls_per_day(sfbp.POLL_IDLE) == 144 and sfbp.calls_per_day(sfbp.POLL_ACTIVE) == 2880
    assert sfbp.calls_per_day(sfbp.POLL_ACTIVE) <= sfbp.DAILY_POLL_BUDGET
    # a newly connected org is polled at the active interval (the first pull ran at setup)
    row = Installation(status="active", created_at=now - timedelta(minutes=1),
                       last_pulled_at=now - timedelta(seconds=sfbp.POLL_ACTIVE))
    assert sfbp.poll_interval(row, now) == sfbp.POLL_ACTIVE and sfbp.SALESFORCE.is_due(row, now)


def test_invalid_grant_parks_the_installation(app, client, http, connected, sandbox, org, opportunity):
    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    refresh = tokens(app).refresh_token
    sandbox.refresh_tokens[refresh].revoked = True  # e.g. the admin revoked the app in Setup
    sandbox.expire_sessions(org)
    connected.patch(f"/milestones/{milestone(plan, 'Discovery call')['id']}", json={"status": "done"})
    run(app, "relay")
    inst = installation(app)
    assert inst.status == "needs_reconnect" and "reconnect" in inst.status_reason
    assert [r.status for r in rows(app, status="parked")] == ["parked"]
    assert connected.get(f"/plans/{plan['id']}/sync").json["state"] == "needs_reconnect"
    # reconnecting puts the parked row back in the queue and it goes through
    queued(app).clear()
    assert connect(client, http).status_code == 200
    run(app, "relay")
    assert installation(app).status == "active" and rows(app, status="parked") == []
    assert sf_milestones(sandbox, org)[milestone(plan, "Discovery call")["id"]]["Status__c"] == "done"


def test_pull_pages_through_both_queries_and_recognises_echoes(app, connected, sandbox, org, opportunity):
    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    sandbox.query_batch_size = 4
    sandbox.reset_calls()
    with app.app_context():
        inst = installation(app)
        connector = jobs.sync.connector_for(inst)
        since = inst.created_at if inst.created_at.tzinfo else inst.created_at.replace(tzinfo=UTC)
        changes, cursor, pages = [], None, 0
        while True:
            page = connector.pull(since, cursor)
            changes += page.changes
            pages += 1
            cursor = page.cursor
            if cursor is None:
                break
        from webapp.models import Mirror
        pushed = session().get(Mirror, plan["id"]).pushed_hashes
    assert pages == 3 and calls(sandbox, org) == 3  # 1 Composite (4 + 1 records), then 4, then 3
    milestones = [c for c in changes if c.kind == "milestone"]
    deals = [c for c in changes if c.kind == "deal"]
    assert len(milestones) == 11 and len({c.key for c in milestones}) == 11
    assert [d.key for d in deals] == [opportunity] and deals[0].fields["pipeline"] == "default"
    # our own writes come back with the hash we recorded when pushing them
    assert all(c.content_hash == pushed[c.key]["hash"] for c in milestones)


def test_a_timed_out_push_is_replayed_idempotently(app, connected, sandbox, org, opportunity):
    app.config["SALESFORCE_TIMEOUT"] = 0.5
    new_plan(connected, org, opportunity)
    sandbox.inject("timeout", path_contains="composite", delay=1.0)  # processed after we gave up
    run(app, "relay")
    assert [r.status for r in rows(app)] == ["done"]
    assert len(sandbox.records(org, "MAP_Milestone__c")) == 11  # upserts: no duplicates
    assert len(sandbox.records(org, "Mutual_Action_Plan__c")) == 1
