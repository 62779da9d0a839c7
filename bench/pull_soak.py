"""The pull fault soak (issue 11): fault storms during pulls while reps edit and create records
in the CRM; prints lost remote edits and duplicates (goal 0 and 0).

HubSpot (Enterprise portal, custom objects): 429s with Retry-After (1 s: waited inline; 30 s:
the pull reschedules itself) and 500/503s. Salesforce: 403 REQUEST_LIMIT_EXCEEDED (its limit
answer; it sends no Retry-After) and 500/503s. Each round: reps edit milestone records (status,
risk) and every other round create one; a storm of 1-6 faults is queued; a pull runs through it;
more edits land before the relay pushes (through what is left of the storm). Then the faults
stop and pulls and relays catch up. Same scenario as the bounded tests (tests/pull_soak.py),
longer and with several seeds. Waits are not slept (the figures are counts, not times).

    .venv/bin/python bench/pull_soak.py [rounds] [seeds]
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import requests
from _setup import make_app

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pull_soak  # noqa: E402

from sandboxes.hubspot import HubSpotSandbox  # noqa: E402
from sandboxes.hubspot import serve as serve_hubspot  # noqa: E402
from sandboxes.salesforce import SalesforceSandbox  # noqa: E402
from sandboxes.salesforce import serve as serve_salesforce  # noqa: E402
from webapp import installations, jobs  # noqa: E402
from webapp.db import session  # noqa: E402

PORTAL = 100001
SF_ID, SF_SECRET = "bench-client", "bench-secret"
PLANS = 3


def _run_queued(app) -> None:
    with app.app_context():
        for name, args in app.extensions[jobs.EXT].pop("queued", []):
            jobs.TASKS[name](*args)


def _key(page: str) -> dict:
    return {"Authorization": "Bearer " + re.search(r'id="api-key">([^<]+)<', page).group(1)}


def install_hubspot(app, client, sb) -> tuple[str, dict]:
    location = client.get("/install/hubspot").headers["Location"]
    q = dict(parse_qsl(urlsplit(location).query))
    form = {k: q.get(k, "") for k in ("client_id", "redirect_uri", "scope", "optional_scope", "state")}
    back = requests.post(sb.server.url + "/oauth/authorize", data={**form, "portal_id": PORTAL,
                                                                   "action": "connect"},
                         allow_redirects=False, timeout=10).headers["Location"]
    parts = urlsplit(back)
    page = client.get(f"{parts.path}?{parts.query}").get_data(as_text=True)
    _run_queued(app)
    with app.app_context():
        return installations.find(session(), "hubspot", str(PORTAL)).id, _key(page)


def install_salesforce(app, client, handle) -> tuple[str, dict]:
    http = requests.Session()
    http.verify, http.trust_env = handle.ca_path, False
    location = client.get("/install/salesforce").headers["Location"]
    parts = urlsplit(http.get(location, allow_redirects=False).headers["Location"])
    page = client.get(f"{parts.path}?{parts.query}").get_data(as_text=True)
    _run_queued(app)
    with app.app_context():
        from sqlalchemy import select

        from webapp.models import Installation
        row = session().scalars(select(Installation).where(Installation.provider == "salesforce")).one()
        return row.id, _key(page)


def plans_on(client, headers, provider: str, account: str, deals: list[str]) -> list[str]:
    out = []
    for i, deal in enumerate(deals):
        r = client.post("/api/v1/plans", headers=headers, json={
            "title": f"Rollout {i}", "template": "enterprise",
            "deal": {"provider": provider, "account_id": account, "deal_id": deal}})
        assert r.status_code == 201, r.get_json()
        out.append(r.get_json()["id"])
    return out


def report(name: str, outcomes: list) -> None:
    total = lambda attr: sum(len(getattr(o, attr)) if isinstance(getattr(o, attr), list)
                             else getattr(o, attr) for o in outcomes)
    print(f"{name}: {total('storms')} fault storms, {total('failed_pulls')} pulls broken by them, "
          f"{total('edits')} remote edits, {total('born')} records created in the CRM")
    print(f"  lost remote edits: {total('lost')} (goal 0); duplicates: {total('duplicates')} "
          f"(goal 0); milestones on no CRM record: {total('unsynced')}")
    for o in outcomes:
        for item in (o.lost + o.duplicates)[:5]:
            print("   ", item)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    hs = HubSpotSandbox(contract="off")
    hs.server = serve_hubspot(hs)
    sf = SalesforceSandbox()
    sf.add_connected_app(SF_ID, SF_SECRET)
    org = sf.add_org("Bench Corp", my_domain="bench")
    sf.auto_approve = True
    handle = serve_salesforce(sf)
    app, url = make_app(
        HUBSPOT_CLIENT_ID="sandbox-client-id", HUBSPOT_CLIENT_SECRET="sandbox-client-secret",
        HUBSPOT_APP_ID="1000001", HUBSPOT_API_BASE=hs.server.url, HUBSPOT_AUTH_BASE=hs.server.url,
        HUBSPOT_RETRY_SLEEP=lambda seconds: None, SALESFORCE_CLIENT_ID=SF_ID,
        SALESFORCE_CLIENT_SECRET=SF_SECRET, SALESFORCE_LOGIN_URL=handle.url,
        CRM_CA_BUNDLE=handle.ca_path, SALESFORCE_RETRY_WAIT=0.0, PUBLIC_BASE_URL="http://localhost",
        OUTBOX_DEBOUNCE=0.0)
    print(f"database: {url.split('@')[-1]}; {rounds} rounds x {seeds} seeds per CRM")
    client = app.test_client()
    hs_id, hs_key = install_hubspot(app, client, hs)
    sf_id, sf_key = install_salesforce(app, client, handle)
    with app.app_context():
        from webapp.models import Installation
        types = session().get(Installation, hs_id).settings["object_types"]
    hs_outcomes, sf_outcomes = [], []
    for seed in range(seeds):
        deals = [hs.create_deal(PORTAL, {"dealname": f"Soak {seed}-{i}"})["id"] for i in range(PLANS)]
        plans = plans_on(client, hs_key, "hubspot", str(PORTAL), deals)
        _run_queued(app)
        with app.app_context():
            jobs.relay()
        hs_outcomes.append(pull_soak.soak(app, pull_soak.HubSpotSide(hs, PORTAL, types), hs_id, plans,
                                          rounds=rounds, edits=6, seed=seed))
        opps = []
        for i in range(PLANS):
            account = sf.create_record(org, "Account", {"Name": f"Buyer {seed}-{i}"})
            opps.append(sf.create_record(org, "Opportunity", {
                "Name": f"Soak {seed}-{i}", "AccountId": account, "StageName": "Prospecting",
                "CloseDate": "2027-06-30"}))
        plans = plans_on(client, sf_key, "salesforce", org.id, opps)
        with app.app_context():
            jobs.relay()
        sf_outcomes.append(pull_soak.soak(app, pull_soak.SalesforceSide(sf, org), sf_id, plans,
                                          rounds=rounds, edits=6, seed=seed))
    report("HubSpot (429 with Retry-After 1 s / 30 s, 500, 503)", hs_outcomes)
    report("Salesforce (REQUEST_LIMIT_EXCEEDED, 500, 503)", sf_outcomes)
    handle.shutdown()
    hs.server.shutdown()


if __name__ == "__main__":
    main()
