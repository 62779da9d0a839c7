"""Issue 10 §5, found by reading the code: NUL and out-of-range values in signed HubSpot
requests (card bodies, webhook events) and in a buyer's proposed date are refused before
they reach the database (PostgreSQL refuses NUL in text outright: a 500)."""
from __future__ import annotations

import json

import pytest
from conftest import CSRF, path_of, snapshot
from test_card_replay import plan_doc, send, signed

from tests import fuzzing
from webapp.db import database


@pytest.fixture
def app_config():
    return {**fuzzing.CONFIG, "REDIS_URL": None}


@pytest.fixture
def world(app, client):
    return fuzzing.seed(app, client)


def test_a_nul_in_a_reorder_id_is_a_422_naming_the_field(app, client, world):
    plan = plan_doc(client, world)
    stage = plan["stages"][0]
    ids = [m["id"] for m in stage["milestones"]]
    before = snapshot(app)
    response = send(client, signed("POST", f"/hubspot/card/plans/{plan['id']}/reorder",
                                   {"stage_id": stage["id"], "milestone_ids": [ids[0] + "\x00"]}))
    assert response.status_code == 422, response.json
    assert response.json["errors"][0]["field"] == "milestone_ids.0"
    assert snapshot(app) == before


def test_a_nul_in_a_card_plan_title_is_a_422_naming_the_field(app, client, world):
    before = snapshot(app)
    response = send(client, signed("POST", "/hubspot/card/deals/9002/plan",
                                   {"template": "quick", "title": "Pilot\x00"}))
    assert response.status_code == 422, response.json
    assert response.json["errors"][0]["field"] == "title"
    assert snapshot(app) == before


def _webhook(client, events):
    body = json.dumps(events).encode()
    request = signed("POST", "/webhooks/hubspot", None)
    request.update(data=body, query_string="")
    from connector.hubspot import SignatureVerifier

    stamp = request["headers"]["X-HubSpot-Request-Timestamp"]
    request["headers"]["X-HubSpot-Signature-v3"] = SignatureVerifier(fuzzing.SECRET).sign(
        "POST", fuzzing.PUBLIC + "/webhooks/hubspot", body, stamp)
    return send(client, request)


def _stored_events(app) -> list[tuple]:
    with database(app).engine.connect() as conn:
        from webapp.models import HubSpotEvent

        return [tuple(r) for r in conn.execute(HubSpotEvent.__table__.select()).all()]


@pytest.mark.parametrize("field,value", [("objectId", "9001\x00"),
                                         ("subscriptionType", "deal.propertyChange\x00"),
                                         ("eventId", "7\x00"), ("portalId", fuzzing.PORTAL + "\x00")])
def test_webhook_events_with_control_characters_are_not_stored(app, client, world, field, value):
    good = {"portalId": int(fuzzing.PORTAL), "subscriptionId": 1, "eventId": 1,
            "occurredAt": 1_790_000_000_000, "subscriptionType": "deal.propertyChange",
            "objectId": int(fuzzing.DEAL)}
    response = _webhook(client, [good, {**good, "eventId": 2, field: value}])
    assert response.status_code == 204
    rows = _stored_events(app)
    assert len(rows) == 1 and not any("\x00" in str(v) for row in rows for v in row)


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "2101-01-01"])
def test_a_buyer_cannot_propose_a_date_outside_the_bounds(app, api, client, plan, day):
    link = api.post(f"/plans/{plan['id']}/share-links", json={}).json
    page_path = path_of(link["url"])
    csrf = CSRF.search(client.get(page_path).get_data(as_text=True)).group(1)
    client.post(page_path + "/identify", data={"csrf": csrf, "name": "Dana",
                                               "email": "dana@example.com"})
    csrf = CSRF.search(client.get(page_path).get_data(as_text=True)).group(1)
    m = plan["stages"][0]["milestones"][0]
    before = snapshot(app)
    response = client.post(f"{page_path}/m/{m['id']}/date",
                           data={"csrf": csrf, "action": "propose", "date": day, "reason": "x"})
    assert response.status_code in (303, 422)
    assert snapshot(app) == before
