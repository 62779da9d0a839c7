"""CRM writes caused by applying one remote milestone edit (issue 11: no echo writes).

A rep edits one milestone in the Lightning component (LDS, as the rep); the poll applies it;
the relay then pushes what really differs. Counted from the sandbox's call log and from the
milestone record itself (rewritten by us => LastModifiedById becomes the integration user).
Goal: 0 writes of the milestone record, <= 1 call for derived summary fields that changed.

    .venv/bin/python bench/echo.py
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests
from _setup import make_app

from sandboxes.salesforce import SalesforceSandbox, serve
from webapp import jobs
from webapp.db import session
from webapp.models import Installation

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"


def main() -> None:
    sb = SalesforceSandbox()
    sb.add_connected_app(CLIENT_ID, CLIENT_SECRET)
    org = sb.add_org("Bench Corp", my_domain="bench")
    rep = sb.add_user(org, "dana@bench.example.com", name="Dana Rep").id
    sb.auto_approve = True
    handle = serve(sb)
    app, url = make_app(SALESFORCE_CLIENT_ID=CLIENT_ID, SALESFORCE_CLIENT_SECRET=CLIENT_SECRET,
                        SALESFORCE_LOGIN_URL=handle.url, CRM_CA_BUNDLE=handle.ca_path,
                        PUBLIC_BASE_URL="http://localhost", OUTBOX_DEBOUNCE=0.0)
    print(f"database: {url.split('@')[-1]}; Salesforce emulator: {handle.url} (TLS)")
    client = app.test_client()
    http = requests.Session()
    http.verify, http.trust_env = handle.ca_path, False
    location = client.get("/install/salesforce").headers["Location"]
    parts = urlsplit(http.get(location, allow_redirects=False).headers["Location"])
    page = client.get(f"{parts.path}?{parts.query}").get_data(as_text=True)
    headers = {"Authorization": "Bearer " + re.search(r'id="api-key">([^<]+)<', page).group(1)}

    def run(name, *args):
        with app.app_context():
            return jobs.TASKS[name](*args)

    with app.app_context():
        for name, args in app.extensions[jobs.EXT].pop("queued", []):
            jobs.TASKS[name](*args)
        inst = session().query(Installation).one().id
    account = sb.create_record(org, "Account", {"Name": "Buyer"})
    opp = sb.create_record(org, "Opportunity", {"Name": "Deal", "AccountId": account,
                                                "StageName": "Prospecting",
                                                "CloseDate": "2027-06-30"})
    client.post("/api/v1/plans", headers=headers, json={
        "title": "Rollout", "template": "enterprise",
        "deal": {"provider": "salesforce", "account_id": org.id, "deal_id": opp}})
    run("relay")
    records = sb.records(org, "MAP_Milestone__c")
    print("One remote milestone edit (LDS, as the rep), then poll + relay:")
    for label, fields in (("risk -> at_risk (changes the summary's risk)", {"Risk__c": "at_risk"}),
                          ("description (changes no summary field)",
                           {"Description__c": "Agenda sent"})):
        target = records[-1]
        sb.clock.advance(2)
        sb.lds_update(org, target["Id"], fields, user_id=rep)
        run("pull", inst)
        sb.reset_calls()
        run("relay")
        counts = sb.call_counts(org)
        after = sb.get_record(org, "MAP_Milestone__c", target["Id"])
        echoed = int(after["LastModifiedById"] != rep)
        print(f"  {label}: milestone record rewritten {echoed} time(s); "
              f"CRM calls by the relay: {sum(counts.values())} {dict(counts)}")
        sb.clock.advance(2)
        sb.reset_calls()
        run("pull", inst)
        run("relay")
        print(f"    the next poll + relay: {sum(sb.call_counts(org).values())} call(s) "
              "(1 = the poll itself; nothing echoed back)")
    handle.shutdown()


if __name__ == "__main__":
    main()
