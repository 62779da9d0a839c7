# ruff: noqa: F811  (pytest fixtures imported from the CRM test modules)
"""The pull fault soak, bounded (tests/pull_soak.py; bench/pull_soak.py runs it longer): 429
storms (HubSpot, with Retry-After), REQUEST_LIMIT_EXCEEDED (Salesforce) and 5xx during pulls
while reps edit and create records in the CRM lose no remote edit and duplicate nothing."""
from __future__ import annotations

import pull_soak
from test_hubspot import ENT, app_config, deal_id, inst, installed, new_plan, run, sb  # noqa: F401
from test_salesforce import (  # noqa: F401  (fixtures)
    connected,
    handle,
    http,
    installation,
    org,
    sandbox,
)


def test_hubspot_pulls_through_429_storms_and_5xx_lose_nothing(app, client, sb):
    installation_id, api = installed(app, client, sb, ENT)
    plans = [new_plan(api, ENT, deal_id(sb, ENT, n), twelve=False)["id"] for n in range(2)]
    run(app)
    side = pull_soak.HubSpotSide(sb, ENT, inst(app, installation_id).settings["object_types"])
    outcome = pull_soak.soak(app, side, installation_id, plans, rounds=6, edits=4)
    assert outcome.failed_pulls > 0  # the storms did break pulls (the policy took over)
    assert (outcome.lost, outcome.duplicates, outcome.unsynced) == ([], [], [])
    assert outcome.born == 3 and outcome.edits >= 30


def test_salesforce_polls_through_limit_storms_and_5xx_lose_nothing(app, connected, sandbox, org):
    plans = []
    for n in range(2):
        account = sandbox.create_record(org, "Account", {"Name": f"Buyer {n}"})
        opp = sandbox.create_record(org, "Opportunity", {
            "Name": f"Rollout {n}", "AccountId": account, "StageName": "Prospecting",
            "CloseDate": "2027-03-31"})
        r = connected.post("/plans", json={"title": f"Plan {n}", "template": "enterprise",
                                           "deal": {"provider": "salesforce", "account_id": org.id,
                                                    "deal_id": opp}})
        assert r.status_code == 201, r.json
        plans.append(r.json["id"])
    with app.app_context():
        from webapp import jobs

        jobs.TASKS["relay"]()
    side = pull_soak.SalesforceSide(sandbox, org)
    outcome = pull_soak.soak(app, side, installation(app).id, plans, rounds=6, edits=4)
    assert outcome.failed_pulls > 0
    assert (outcome.lost, outcome.duplicates, outcome.unsynced) == ([], [], [])
    assert outcome.born == 3 and outcome.edits >= 30
