# ruff: noqa: F811 - pytest fixtures imported from test_salesforce
"""The Salesforce side of content (issue 16): each push writes the plan's content block count
on Mutual_Action_Plan__c.Content_Count__c, which the LWC shows with a link to the content page;
the link's landing (/app/plans/by-deal/…?to=content) opens the editor's content page."""
from __future__ import annotations

from test_salesforce import (  # noqa: F401 - fixtures
    app_config, connected, handle, http, new_plan, opportunity, org, run, sandbox,
)


def test_a_push_writes_the_content_count_on_the_plan_record(app, connected, sandbox, org, opportunity):
    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    [record] = sandbox.records(org, "Mutual_Action_Plan__c")
    assert record["Content_Count__c"] == 0
    for body in ({"kind": "link", "title": "Story", "url": "https://example.com/s"},
                 {"kind": "notes", "title": "Floor", "body": "18%", "internal": True}):
        assert connected.post(f"/plans/{plan['id']}/blocks", json=body).status_code == 201
    run(app, "relay")
    [record] = sandbox.records(org, "Mutual_Action_Plan__c")
    assert record["Content_Count__c"] == 2


def test_the_by_deal_landing_can_open_the_content_page(app, connected, org, opportunity):
    from conftest import signed_in
    from sqlalchemy import select

    from webapp.db import session
    from webapp.models import Installation, Tenant

    plan = new_plan(connected, org, opportunity)
    with app.app_context():
        s = session()
        tenant = s.get(Tenant, s.scalars(select(Installation)).one().tenant_id).name
    rep = app.test_client()
    signed_in(rep, tenant, role="admin", provider="salesforce")  # the org's tenant
    base = f"/app/plans/by-deal/salesforce/current/{opportunity}"
    assert rep.get(base).headers["Location"].endswith(f"/editor/plans/{plan['id']}")
    assert rep.get(base + "?to=content").headers["Location"].endswith(
        f"/editor/plans/{plan['id']}/content")
