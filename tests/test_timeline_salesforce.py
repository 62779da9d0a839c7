"""Buyer activity on the Salesforce Opportunity, end to end: buyer actions over HTTP, the
outbox relay, simple-salesforce against the sandbox over HTTPS. The actions become completed
Tasks, written inside the push's own Composite request: no extra round trip."""
from __future__ import annotations

from conftest import CSRF, make_link, path_of
from sqlalchemy import select
from test_salesforce import (  # noqa: F401 - fixtures
    app_config,
    calls,
    connected,
    handle,
    http,
    milestone,
    new_plan,
    opportunity,
    org,
    run,
    sandbox,
)

from webapp import view_counter
from webapp.db import session
from webapp.models import CrmActivity

COMPOSITE = "POST /services/data/vXX.X/composite"


def flush_views(app) -> None:
    with app.app_context():
        view_counter.flush()


def test_buyer_actions_become_completed_tasks_in_the_same_composite(app, client, connected, sandbox, org, opportunity):  # noqa: E501, F811
    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    page = path_of(make_link(connected, plan["id"])["url"])
    token = CSRF.search(client.get(page).get_data(as_text=True)).group(1)
    flush_views(app)  # views are buffered; the flush records "link opened"
    assert client.post(page + "/identify", data={"csrf": token, "name": "Dana Buyer",
                                                 "email": "dana@acme.example"}).status_code == 303
    token = CSRF.search(client.get(page).get_data(as_text=True)).group(1)
    flush_views(app)
    done = milestone(plan, "Identify problems to solve")
    r = client.post(f"{page}/m/{done['id']}/done", data={"csrf": token, "done": "1"})
    assert r.status_code == 303
    r = client.post(f"{page}/m/{done['id']}/comment", data={"csrf": token, "body": "Signed off by IT"})
    assert r.status_code == 303
    assert sandbox.records(org, "Task") == []  # nothing from the buyer's requests
    sandbox.reset_calls()
    assert run(app, "relay") == 1
    # the milestone change, the deal summary and the four tasks: one Composite request
    assert calls(sandbox, org) == 1 and sandbox.call_counts(org)[COMPOSITE] == 1, sandbox.call_counts(org)
    tasks = sorted(sandbox.records(org, "Task"), key=lambda t: t["Subject"])
    assert len(tasks) == 4
    assert {t["Status"] for t in tasks} == {"Completed"} and all(t["IsClosed"] for t in tasks)
    assert {t["WhatId"] for t in tasks} == {opportunity}
    comment = next(t for t in tasks if "Comment on" in t["Subject"])
    assert comment["Subject"].startswith("Dana Buyer <dana@acme.example>: Comment on Identify problems")
    assert comment["Description"] == "Signed off by IT" and comment["ActivityDate"]
    assert any(t["Subject"].endswith("Milestone completed: Identify problems to solve") for t in tasks)
    with app.app_context():
        assert session().scalars(select(CrmActivity).where(CrmActivity.pushed_at.is_(None))).all() == []
    sandbox.reset_calls()
    run(app, "relay")
    assert len(sandbox.records(org, "Task")) == 4  # sent once


def test_a_failed_sibling_replays_the_composite_without_doubling_tasks(app, client, connected, sandbox, org, opportunity):  # noqa: E501, F811
    plan = new_plan(connected, org, opportunity)
    run(app, "relay")
    page = path_of(make_link(connected, plan["id"])["url"])
    client.get(page)  # "link opened" (anonymous), recorded when the view buffer is flushed
    flush_views(app)
    m = milestone(plan, "Discovery call")
    connected.patch(f"/milestones/{m['id']}", json={"status": "done"})
    # the plan upsert (first write) hits a lock: the Composite is replayed, the Task created by
    # the first attempt is not sent again
    sandbox.inject("unable_to_lock_row", times=1, path_contains="/composite")
    assert sandbox.records(org, "Task") == []
    sandbox.reset_calls()
    assert run(app, "relay") == 1
    assert sandbox.call_counts(org)[COMPOSITE] == 2, sandbox.call_counts(org)
    [task] = sandbox.records(org, "Task")
    assert task["Subject"] == "A buyer: Buyer link opened"
    with app.app_context():
        assert session().scalars(select(CrmActivity).where(CrmActivity.pushed_at.is_(None))).all() == []
