"""Salesforce figures, through the real flow: Connect (OAuth + PKCE) against the emulator over
HTTPS, the REST API for edits, jobs in "thread" mode (one worker), simple-salesforce for calls.

- API calls per new 11-milestone plan and per single-milestone change (sandbox call log);
- poll cost per org per day at the default adaptive intervals;
- time from a buyer completing a gate milestone (PATCH status done) to StageName changing
  in the sandbox, one worker, median of several runs.

    .venv/bin/python bench/crm_salesforce.py
"""
from __future__ import annotations

import itertools
import re
import statistics
import time
from urllib.parse import urlsplit

import requests
from _setup import make_app

from sqlalchemy import select

from sandboxes.salesforce import SalesforceSandbox, serve
from webapp import providers as sfbp
from webapp.db import session
from webapp.models import OutboxEntry

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
RUNS = 9


def wait_for(predicate, timeout=10.0, step=0.002):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if predicate():
            return True
        time.sleep(step)
    raise TimeoutError("condition not reached")


def main() -> None:
    sb = SalesforceSandbox()
    sb.add_connected_app(CLIENT_ID, CLIENT_SECRET, rotate_refresh_tokens=True)
    org = sb.add_org("Bench Corp", my_domain="bench")
    sb.auto_approve = True
    handle = serve(sb)
    app, url = make_app(JOBS_MODE="thread", SALESFORCE_CLIENT_ID=CLIENT_ID,
                        SALESFORCE_CLIENT_SECRET=CLIENT_SECRET, SALESFORCE_LOGIN_URL=handle.url,
                        CRM_CA_BUNDLE=handle.ca_path, PUBLIC_BASE_URL="http://localhost")
    print(f"database: {url.split('@')[-1]}; Salesforce emulator: {handle.url} (TLS)")
    client = app.test_client()
    http = requests.Session()
    http.verify, http.trust_env = handle.ca_path, False

    # -- connect ------------------------------------------------------------------------
    location = client.get("/install/salesforce").headers["Location"]
    back = http.get(location, allow_redirects=False).headers["Location"]
    parts = urlsplit(back)
    page = client.get(f"{parts.path}?{parts.query}").get_data(as_text=True)
    key = re.search(r'id="api-key">([^<]+)<', page).group(1)
    headers = {"Authorization": f"Bearer {key}"}
    time.sleep(0.5)  # the bootstrap job (stages, first pull) runs on the job thread

    def outbox_idle():
        with app.app_context():
            return not session().scalars(select(OutboxEntry).where(
                OutboxEntry.status.in_(("pending", "in_flight")))).first()

    def new_opportunity(i):
        account = sb.create_record(org, "Account", {"Name": f"Buyer {i}"})
        return sb.create_record(org, "Opportunity", {"Name": f"Deal {i}", "AccountId": account,
                                                     "StageName": "Prospecting", "CloseDate": "2027-06-30"})

    def new_plan(opp):
        response = client.post("/api/v1/plans", headers=headers, json={
            "title": "Rollout", "template": "enterprise",
            "deal": {"provider": "salesforce", "account_id": org.id, "deal_id": opp}})
        assert response.status_code == 201, response.json
        return response.json

    def milestone(plan, title):
        return next(m for s in plan["stages"] for m in s["milestones"] if m["title"] == title)

    def calls():
        return sum(sb.call_counts(org).values())

    # -- API calls per push ---------------------------------------------------------------
    opp = new_opportunity(0)
    wait_for(outbox_idle)
    sb.reset_calls()
    plan = new_plan(opp)
    wait_for(lambda: len([r for r in sb.records(org, "MAP_Milestone__c")]) == 11)
    wait_for(outbox_idle)
    new_plan_calls = calls()
    breakdown = dict(sb.call_counts(org))
    sb.reset_calls()
    m = milestone(plan, "Discovery call")
    client.patch(f"/api/v1/milestones/{m['id']}", headers=headers, json={"risk": "at_risk"})
    wait_for(outbox_idle)
    time.sleep(0.05)
    one_change_calls = calls()
    sb.reset_calls()
    gate = milestone(plan, "Define requirements and success criteria")
    client.patch(f"/api/v1/milestones/{gate['id']}", headers=headers, json={"status": "done"})
    wait_for(lambda: sb.get_record(org, "Opportunity", opp)["StageName"] != "Prospecting")
    wait_for(outbox_idle)
    gate_calls = calls()
    print("API calls (composite = 1 call):")
    print(f"  new plan, 11 milestones + opportunity summary: {new_plan_calls}  {breakdown}")
    print(f"  one milestone changed:                         {one_change_calls}")
    print(f"  gate milestone done (milestone + StageName + summary): {gate_calls}")

    # -- poll cost ---------------------------------------------------------------------------
    per_day = sfbp.calls_per_day
    print("Poll cost per org (1 Composite call per poll: plans + milestones + opportunities):")
    print(f"  idle   (no activity for {sfbp.WARM_WINDOW}): every {sfbp.POLL_IDLE:.0f} s = "
          f"{per_day(sfbp.POLL_IDLE)} calls/day")
    print(f"  warm   (activity in the last {sfbp.WARM_WINDOW}): every {sfbp.POLL_WARM:.0f} s = "
          f"{per_day(sfbp.POLL_WARM)} calls/day if it lasted all day")
    print(f"  active (activity in the last {sfbp.ACTIVE_WINDOW}): every {sfbp.POLL_ACTIVE:.0f} s = "
          f"{per_day(sfbp.POLL_ACTIVE)} calls/day if it lasted all day")
    typical = (8 * 3600 / sfbp.POLL_ACTIVE + 2 * 3600 / sfbp.POLL_WARM + 14 * 3600 / sfbp.POLL_IDLE)
    print(f"  a working day (8 h active, 2 h warm, 14 h idle): {typical:.0f} calls/day "
          f"({typical / 15000:.1%} of a Developer Edition's 15,000; {typical / 100000:.2%} of 100,000)")

    # -- gate -> StageName latency -------------------------------------------------------------
    numbers = itertools.count(1)

    def latency(label):
        samples = []
        for i in range(RUNS):
            opp = new_opportunity(next(numbers))
            plan = new_plan(opp)
            wait_for(outbox_idle)
            gate = milestone(plan, "Define requirements and success criteria")
            started = time.perf_counter()
            response = client.patch(f"/api/v1/milestones/{gate['id']}", headers=headers,
                                    json={"status": "done"})
            assert response.status_code == 200, response.json
            wait_for(lambda opp=opp: sb.get_record(org, "Opportunity", opp)["StageName"] != "Prospecting")
            samples.append(time.perf_counter() - started)
        samples.sort()
        print(f"  {label}: median {statistics.median(samples) * 1000:.0f} ms "
              f"(min {samples[0] * 1000:.0f}, max {samples[-1] * 1000:.0f}; {RUNS} runs)")

    print("Buyer completes a gate milestone (REST PATCH status=done) -> StageName changed in "
          "Salesforce, 1 worker, jobs in thread mode:")
    latency(f"default outbox debounce ({app.config.get('OUTBOX_DEBOUNCE', 1.0)} s)")
    app.config["OUTBOX_DEBOUNCE"] = 0
    latency("OUTBOX_DEBOUNCE=0 (the push itself)")
    handle.shutdown()


if __name__ == "__main__":
    main()
