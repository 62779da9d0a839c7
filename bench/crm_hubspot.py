"""HubSpot figures, against the local emulator (real SDK, real HTTP).

    .venv/bin/python bench/crm_hubspot.py          (PostgreSQL when available, see _setup.py)

1. HubSpot API calls per new 12-milestone plan and per single-milestone change, in both
   portal modes (custom objects on Enterprise, deal properties elsewhere).
2. POST /webhooks/hubspot with a signed batch of 100 events: median and p99 time to answer
   (Flask test client, so the figure is the app's own time, not the network's).
3. A buyer completes a gate milestone (REST PATCH status=done) -> the deal's stage has
   changed in the sandbox, one background worker (JOBS_MODE=thread); median of several runs.
"""
from __future__ import annotations

import os
import re
import statistics
import sys
import time
import urllib.parse

# This file is named like the SDK's package (`hubspot`): keep bench/ behind site-packages.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]

from _setup import make_app  # noqa: E402

from sandboxes.hubspot import HubSpotSandbox, serve, sign_v3  # noqa: E402
from webapp import installations, jobs  # noqa: E402
from webapp.db import session  # noqa: E402

ENT, PRO = 100001, 100002
SECRET = "sandbox-client-secret"
PUBLIC = "http://mutualplan.bench"


def config(sb, mode: str) -> dict:
    return {"HUBSPOT_CLIENT_ID": "sandbox-client-id", "HUBSPOT_CLIENT_SECRET": SECRET,
            "HUBSPOT_APP_ID": "1000001", "HUBSPOT_API_BASE": sb.server.url, "HUBSPOT_AUTH_BASE": sb.server.url,
            "PUBLIC_BASE_URL": PUBLIC, "JOBS_MODE": mode, "SECRET_KEY": "bench", "REDIS_URL": None,
            "OUTBOX_DEBOUNCE": 0}


def install(app, client, sb, portal: int) -> tuple[str, str]:
    start = client.get("/install/hubspot")
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start.headers["Location"]).query))
    code = sb.authorize(client_id=q["client_id"], redirect_uri=q["redirect_uri"], scopes=q["scope"].split(),
                        optional_scopes=q["optional_scope"].split(), portal_id=portal)
    page = client.get(f"/oauth/hubspot/callback?code={code}&state={q['state']}")
    assert page.status_code == 200, page.text
    key = re.search(r'id="api-key">([^<]+)<', page.text).group(1)
    with app.app_context():
        return installations.find(session(), "hubspot", str(portal)).id, key


def new_plan(client, key: str, portal: int, deal: str) -> dict:
    h = {"Authorization": f"Bearer {key}"}
    plan = client.post("/api/v1/plans", headers=h, json={
        "title": "Bench MAP", "template": "enterprise",
        "deal": {"provider": "hubspot", "account_id": str(portal), "deal_id": deal}}).json
    stage = plan["stages"][-1]["id"]
    client.post(f"/api/v1/plans/{plan['id']}/milestones", headers=h, json={"stage_id": stage, "title": "Go-live review"})
    return client.get(f"/api/v1/plans/{plan['id']}", headers=h).json


def milestones(plan):
    return [m for st in plan["stages"] for m in st["milestones"]]


def calls(sb, portal) -> int:
    return sum(sb.call_counts(portal).values())


def call_counts(sb, app, client) -> None:
    print("HubSpot API calls per push (outbox relay, one plan):")
    for portal, label in ((ENT, "custom objects (Enterprise)"), (PRO, "deal properties (Professional)")):
        _, key = install(app, client, sb, portal)
        deal = sb.create_deal(portal, {"dealname": f"Bench {portal}"})["id"]
        plan = new_plan(client, key, portal, deal)
        assert len(milestones(plan)) == 12
        sb.reset_calls()
        with app.app_context():
            assert jobs.relay() == 1
        first = calls(sb, portal)
        m = milestones(plan)[3]
        client.patch(f"/api/v1/milestones/{m['id']}", headers={"Authorization": f"Bearer {key}"},
                     json={"risk": "at_risk"})
        sb.reset_calls()
        with app.app_context():
            jobs.relay()
        one = calls(sb, portal)
        print(f"  {label:32s} new 12-milestone plan: {first} calls (incl. reading the deal once and the deal "
              f"update); one milestone changed: {one} calls")


def webhook_latency(sb, app, client, installation_id: str, runs: int = 300) -> None:
    times = []
    event_id = 1
    for _ in range(runs):
        events = []
        for _ in range(100):
            events.append({"eventId": event_id, "subscriptionId": 1003, "portalId": ENT, "appId": 1000001,
                           "occurredAt": int(time.time() * 1000), "subscriptionType": "deal.propertyChange",
                           "attemptNumber": 0, "objectId": 1001, "propertyName": "dealstage",
                           "propertyValue": "qualifiedtobuy", "changeSource": "CRM_UI"})
            event_id += 1
        import json

        body = json.dumps(events, separators=(",", ":")).encode()
        ts = str(int(time.time() * 1000))
        headers = {"X-HubSpot-Signature-v3": sign_v3("POST", PUBLIC + "/webhooks/hubspot", body, SECRET, ts),
                   "X-HubSpot-Request-Timestamp": ts}
        started = time.perf_counter()
        response = client.post("/webhooks/hubspot", data=body, content_type="application/json", headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 204, response.data
    app.extensions["mutualplan.jobs"]["queued"] = []
    times.sort()
    def pct(q):
        return times[min(len(times) - 1, int(len(times) * q))]

    print(f"Webhook batch of 100 new events, signed (n={runs}): median {statistics.median(times):.1f} ms, "
          f"p95 {pct(0.95):.1f} ms, p99 {pct(0.99):.1f} ms")


def gate_to_stage(sb, runs: int = 7) -> None:
    app, _ = make_app(**config(sb, "thread"))
    client = app.test_client()
    portal = sb.add_portal(tier="professional").portal_id  # same database: a portal not installed yet
    _, key = install(app, client, sb, portal)
    h = {"Authorization": f"Bearer {key}"}
    for debounce in (app.config.get("OUTBOX_DEBOUNCE_DEFAULT", 1.0), 0):
        app.config["OUTBOX_DEBOUNCE"] = debounce
        _gate_runs(sb, app, client, h, runs, f"OUTBOX_DEBOUNCE={debounce:g} s", portal)


def _gate_runs(sb, app, client, h, runs, label, portal):
    key = h["Authorization"][7:]
    samples = []
    for i in range(runs):
        deal = sb.create_deal(portal, {"dealname": f"Gate {i}"})["id"]
        plan = new_plan(client, key, portal, deal)
        deadline = time.time() + 10
        while client.get(f"/api/v1/plans/{plan['id']}/sync", headers=h).json["state"] != "synced":
            if time.time() > deadline:
                raise SystemExit("the first push did not finish")
            time.sleep(0.02)
        gate = next(m for m in milestones(plan) if m["title"] == "Define requirements and success criteria")
        started = time.perf_counter()
        assert client.patch(f"/api/v1/milestones/{gate['id']}", headers=h, json={"status": "done"}).status_code == 200
        while sb.get_record(portal, "deals", deal)["properties"]["dealstage"] != "qualifiedtobuy":
            if time.perf_counter() - started > 10:
                raise SystemExit("the deal stage did not change within 10 s")
            time.sleep(0.001)
        samples.append((time.perf_counter() - started) * 1000)
    print(f"Gate milestone done (REST PATCH) -> deal stage changed in HubSpot, 1 worker thread, {label} "
          f"(median of {runs}): {statistics.median(samples):.0f} ms (min {min(samples):.0f}, max {max(samples):.0f})")


def own_database() -> None:
    """A database of our own (other benchmarks drop and recreate `mutualplan_bench`)."""
    if os.environ.get("BENCH_DATABASE_URL"):
        return
    from sqlalchemy import create_engine, text

    from _setup import ADMIN_URL

    try:
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS mutualplan_bench_hubspot WITH (FORCE)"))
            conn.execute(text("CREATE DATABASE mutualplan_bench_hubspot"))
        admin.dispose()
        os.environ["BENCH_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:5432/mutualplan_bench_hubspot"
    except Exception:  # noqa: BLE001 - _setup falls back to SQLite and says so
        pass


def main() -> None:
    own_database()
    sb = HubSpotSandbox(v1_oauth=False)
    sb.server = serve(sb)
    try:
        app, url = make_app(**config(sb, "manual"))
        print(f"(database: {url.split('@')[-1]})")
        client = app.test_client()
        call_counts(sb, app, client)
        with app.app_context():
            installation_id = installations.find(session(), "hubspot", str(ENT)).id
        webhook_latency(sb, app, client, installation_id)
        gate_to_stage(sb)
        sb.assert_no_contract_violations()
    finally:
        sb.server.shutdown()


if __name__ == "__main__":
    main()
