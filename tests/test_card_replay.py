"""F9: a signed HubSpot card write is accepted once; a replay within the window answers 409
and changes nothing. On both stores: the database (no REDIS_URL) and Redis (REDIS_URL)."""
from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pytest
from conftest import snapshot

from connector.hubspot import SignatureVerifier
from tests import fuzzing
from webapp import clock, security
from webapp.db import session
from webapp.models import UsedSignature

QUERY = f"portalId={fuzzing.PORTAL}&userEmail=rep%40example.com"


@pytest.fixture(params=["database", "redis"])
def app_config(request):
    if request.param == "redis":
        if not os.environ.get("REDIS_URL"):
            pytest.skip("the Redis store needs REDIS_URL")
        return {**fuzzing.CONFIG, "REDIS_URL": os.environ["REDIS_URL"]}
    return {**fuzzing.CONFIG, "REDIS_URL": None}


@pytest.fixture
def world(app, client):
    return fuzzing.seed(app, client)


def signed(method: str, path: str, body: dict | None, stamp: str | None = None) -> dict:
    raw = json.dumps(body).encode() if body is not None else b""
    stamp = stamp or str(int(time.time() * 1000))
    return {"method": method, "path": path, "query_string": QUERY, "data": raw, "headers": {
        "Content-Type": "application/json", "X-HubSpot-Request-Timestamp": stamp,
        "X-HubSpot-Signature-v3": SignatureVerifier(fuzzing.SECRET).sign(
            method, f"{fuzzing.PUBLIC}{path}?{QUERY}", raw, stamp)}}


def send(client, request: dict):
    return client.open(request["path"], method=request["method"], data=request["data"],
                       query_string=request["query_string"], headers=request["headers"])


def plan_doc(client, world) -> dict:
    return send(client, signed("GET", f"/hubspot/card/deals/{fuzzing.DEAL}/plan", None)).json["plan"]


def writes(client, world) -> dict[str, dict]:
    plan = plan_doc(client, world)
    stage = plan["stages"][0]
    ids = [m["id"] for m in stage["milestones"]]
    m = stage["milestones"][0]
    return {
        "rotate buyer link": signed("POST", f"/hubspot/card/plans/{plan['id']}/buyer-link",
                                    {"rotate": True}),
        "create plan": signed("POST", "/hubspot/card/deals/9002/plan", {"template": "quick"}),
        "patch milestone": signed("PATCH", f"/hubspot/card/milestones/{m['id']}",
                                  {"version": m["version"], "risk": "at_risk"}),
        "reorder": signed("POST", f"/hubspot/card/plans/{plan['id']}/reorder",
                          {"stage_id": stage["id"], "milestone_ids": ids[::-1]}),
        "editor link": signed("POST", f"/hubspot/card/plans/{plan['id']}/editor-link", {}),
    }


@pytest.mark.parametrize("what", ["rotate buyer link", "create plan", "patch milestone",
                                  "reorder", "editor link"])
def test_a_replayed_signed_write_answers_409_and_changes_nothing(app, client, world, what):
    request = writes(client, world)[what]
    first = send(client, request)
    assert first.status_code in (200, 201), first.json
    before = snapshot(app)

    replay = send(client, request)

    assert replay.status_code == 409
    assert replay.mimetype == "application/problem+json"
    assert replay.json["type"].endswith("/replayed-request")
    assert snapshot(app) == before


def test_the_same_write_signed_afresh_is_accepted(app, client, world):
    plan = plan_doc(client, world)
    path = f"/hubspot/card/plans/{plan['id']}/buyer-link"
    stamp = int(time.time() * 1000)
    urls = [send(client, signed("POST", path, {"rotate": True}, str(stamp + n))).json["url"]
            for n in range(2)]
    assert urls[0] != urls[1]  # two genuine rotations, two links


def test_reads_are_not_limited(client, world):
    request = signed("GET", f"/hubspot/card/deals/{fuzzing.DEAL}/plan", None)
    assert [send(client, request).status_code for _ in range(3)] == [200, 200, 200]


def test_a_refused_write_leaves_no_mark_so_a_retry_is_judged_again(app, client, world):
    """HubSpot retries a failed call; a refused request changed nothing, so it is not a replay."""
    plan = plan_doc(client, world)
    m = plan["stages"][0]["milestones"][0]
    request = signed("PATCH", f"/hubspot/card/milestones/{m['id']}",
                     {"version": m["version"] + 5, "risk": "at_risk"})
    before = snapshot(app)
    assert send(client, request).status_code == 412
    assert snapshot(app) == before
    assert send(client, request).status_code == 412  # not 409


def test_the_database_store_forgets_expired_signatures(app, world):
    base = clock.now()
    with app.app_context():
        s, guard = session(), security.ReplayGuard(None)
        assert guard.claim(s, "a" * 64, 330)
        assert not guard.claim(s, "a" * 64, 330)
        s.commit()
        app.config["CLOCK"] = lambda: base + timedelta(seconds=331)
        assert guard.claim(s, "b" * 64, 330)
        s.commit()
        assert [row.key for row in s.query(UsedSignature)] == ["b" * 64]
