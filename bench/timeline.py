"""CRM calls added by buyer activity on the timeline, through the real flow: the buyer page
over HTTP (Flask test client), the outbox relay, the real SDKs against both sandboxes.

For each CRM, the same buyer session is replayed with the timeline switched off and on, and
the sandbox's call log compared:

- a buyer completes a milestone (a push happens anyway: the milestone and the deal change);
- a buyer comments N times between two pushes (N = 1, 5, 30, 120): without the timeline
  nothing is pushed at all, with it the comments ride one push.

    .venv/bin/python bench/timeline.py
"""
from __future__ import annotations

import os
import re
import sys
import urllib.parse

# bench/crm_hubspot.py is named like the SDK's package: keep bench/ behind site-packages.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]

import requests  # noqa: E402
from _setup import make_app  # noqa: E402

from sandboxes.hubspot import HubSpotSandbox  # noqa: E402
from sandboxes.hubspot import serve as serve_hubspot  # noqa: E402
from sandboxes.salesforce import SalesforceSandbox  # noqa: E402
from sandboxes.salesforce import serve as serve_salesforce  # noqa: E402
from webapp import installations, jobs  # noqa: E402
from webapp.db import session  # noqa: E402

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
# The buyer page's write limits (30 per IP per 10 minutes) would stop the 120 comments.
UNLIMITED = {"BUYER_RATE_LIMITS": {"ip": (10**6, 600), "link": (10**6, 600)}}
COMMENTS = (1, 5, 30, 120)


class Buyer:
    """A buyer on the plan's page: identified once, then acting through the page's forms."""

    def __init__(self, client, api, plan_id):
        link = client.post(f"/api/v1/plans/{plan_id}/share-links", headers=api, json={}).json
        self.client, self.page = client, "/" + link["url"].split("/", 3)[3]
        token = self._csrf()
        client.post(self.page + "/identify", data={"csrf": token, "name": "Dana", "email": "dana@buyer.example"})

    def _csrf(self) -> str:
        return CSRF.search(self.client.get(self.page).get_data(as_text=True)).group(1)

    def complete(self, milestone_id: str) -> None:
        r = self.client.post(f"{self.page}/m/{milestone_id}/done", data={"csrf": self._csrf(), "done": "1"})
        assert r.status_code == 303, r.get_data(as_text=True)

    def comment(self, milestone_id: str, n: int) -> None:
        token = self._csrf()
        for i in range(n):
            r = self.client.post(f"{self.page}/m/{milestone_id}/comment", data={"csrf": token, "body": f"note {i}"})
            assert r.status_code == 303, r.get_data(as_text=True)


def relay(app) -> None:
    with app.app_context():
        while jobs.relay():
            pass


def switch(client, api, installation_id: str, on: bool) -> None:
    r = client.patch(f"/api/v1/installations/{installation_id}", headers=api, json={"timeline": on})
    assert r.status_code == 200, r.json


def buyer_milestones(plan: dict) -> list[str]:
    return [m["id"] for st in plan["stages"] for m in st["milestones"] if m["owner_side"] in ("buyer", "both")]


def measure(app, client, api, installation_id, make_plan, count_calls) -> dict:
    """Calls per scenario with the timeline off and on: {scenario: (off, on)}."""
    out: dict = {}
    for on in (False, True):
        switch(client, api, installation_id, on)
        plan = make_plan()
        relay(app)
        buyer = Buyer(client, api, plan["id"])
        relay(app)  # "opened the link" (timeline on) goes with this push, outside the figures
        ids = buyer_milestones(plan)
        buyer.complete(ids[0])
        out.setdefault("buyer completes a milestone", []).append(count_calls(lambda: relay(app)))
        for n in COMMENTS:
            buyer.comment(ids[1], n)
            out.setdefault(f"{n} comment(s) between two pushes", []).append(count_calls(lambda: relay(app)))
    return out


def report(title: str, figures: dict) -> None:
    print(title)
    for label, (off, on) in figures.items():
        print(f"  {label:36s} timeline off: {off} call(s), on: {on} call(s), extra: {on - off}")


def hubspot() -> None:
    sb = HubSpotSandbox()
    server = serve_hubspot(sb)
    sb.server = server
    app, url = make_app(HUBSPOT_CLIENT_ID="sandbox-client-id", HUBSPOT_CLIENT_SECRET="sandbox-client-secret",
                        HUBSPOT_APP_ID="1000001", HUBSPOT_DEVELOPER_API_KEY="sandbox-developer-key",
                        HUBSPOT_API_BASE=server.url, HUBSPOT_AUTH_BASE=server.url,
                        PUBLIC_BASE_URL="http://mutualplan.bench", OUTBOX_DEBOUNCE=0, **UNLIMITED)
    print(f"database: {url.split('@')[-1]}; HubSpot sandbox: {server.url}")
    client = app.test_client()
    portal = 100001
    start = client.get("/install/hubspot")
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start.headers["Location"]).query))
    code = sb.authorize(client_id=q["client_id"], redirect_uri=q["redirect_uri"], scopes=q["scope"].split(),
                        optional_scopes=q["optional_scope"].split(), portal_id=portal)
    page = client.get(f"/oauth/hubspot/callback?code={code}&state={q['state']}")
    api = {"Authorization": "Bearer " + re.search(r'id="api-key">([^<]+)<', page.text).group(1)}
    with app.app_context():
        installation_id = installations.find(session(), "hubspot", str(portal)).id
        jobs.TASKS["setup"](installation_id)
    n = iter(range(1000))

    def make_plan():
        deal = sb.create_deal(portal, {"dealname": f"Bench {next(n)}"})["id"]
        return client.post("/api/v1/plans", headers=api, json={"template": "enterprise", "deal": {
            "provider": "hubspot", "account_id": str(portal), "deal_id": deal}}).json

    def count_calls(work):
        sb.reset_calls()
        work()
        return sum(sb.call_counts(portal).values())

    relay(app)
    make_plan()
    relay(app)  # the app's event templates: made once per app (1 list + 5 creates), then cached
    report("HubSpot (custom objects portal; timeline events, one batch call per 100 actions):",
           {k: tuple(v) for k, v in measure(app, client, api, installation_id, make_plan, count_calls).items()})
    server.shutdown()


def salesforce() -> None:
    sb = SalesforceSandbox()
    sb.add_connected_app("bench-client", "bench-secret", rotate_refresh_tokens=True)
    org = sb.add_org("Bench Corp", my_domain="bench")
    sb.auto_approve = True
    handle = serve_salesforce(sb)
    app, url = make_app(SALESFORCE_CLIENT_ID="bench-client", SALESFORCE_CLIENT_SECRET="bench-secret",
                        SALESFORCE_LOGIN_URL=handle.url, CRM_CA_BUNDLE=handle.ca_path,
                        PUBLIC_BASE_URL="http://localhost", OUTBOX_DEBOUNCE=0, **UNLIMITED)
    print(f"database: {url.split('@')[-1]}; Salesforce sandbox: {handle.url}")
    client = app.test_client()
    http = requests.Session()
    http.verify, http.trust_env = handle.ca_path, False
    location = client.get("/install/salesforce").headers["Location"]
    back = urllib.parse.urlsplit(http.get(location, allow_redirects=False).headers["Location"])
    page = client.get(f"{back.path}?{back.query}").get_data(as_text=True)
    api = {"Authorization": "Bearer " + re.search(r'id="api-key">([^<]+)<', page).group(1)}
    with app.app_context():
        installation_id = installations.find(session(), "salesforce", org.id).id
        jobs.TASKS["setup"](installation_id)
    n = iter(range(1000))

    def make_plan():
        account = sb.create_record(org, "Account", {"Name": f"Buyer {next(n)}"})
        opp = sb.create_record(org, "Opportunity", {"Name": "Deal", "AccountId": account,
                                                    "StageName": "Prospecting", "CloseDate": "2027-06-30"})
        return client.post("/api/v1/plans", headers=api, json={"template": "enterprise", "deal": {
            "provider": "salesforce", "account_id": org.id, "deal_id": opp}}).json

    def count_calls(work):
        sb.reset_calls()
        work()
        return sum(sb.call_counts(org).values())

    report("Salesforce (completed Tasks: one sObject Collections create per 200, in the push's Composite):",
           {k: tuple(v) for k, v in measure(app, client, api, installation_id, make_plan, count_calls).items()})
    print(f"  Tasks written: {len(sb.records(org, 'Task'))}")
    handle.shutdown()


if __name__ == "__main__":
    hubspot()
    salesforce()
