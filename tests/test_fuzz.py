"""Property-based fuzzing of every endpoint (issue 10 §5): no 5xx, and a 4xx changes nothing.

One test per route and method (walked from `app.url_map`); each draws FUZZ_EXAMPLES
requests (default 10, derandomized so the run is reproducible) from tests/fuzzing.py.
No shrinking: a failure prints the request that caused it. bench/fuzz.py runs the
same generator longer and prints the totals.

500s that remain in files owned by others at the time of writing have a fixed input each
at the end of this file, marked xfail(strict=True) with where it breaks: when that is
fixed the test XPASSes and fails, so the marker must go.
"""
from __future__ import annotations

import os

import pytest
from conftest import TODAY
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests import fuzzing
from webapp import create_app

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))

# endpoint -> why it still fails (input, and where the traceback points); empty now.
# Whether a generated request reaches a bug depends on everything drawn before it, so
# per-endpoint xfails on generated input would flip with any change; a bug found here
# gets a fixed-input test below (malformed HubSpot timestamps, out-of-range occurredAt).
KNOWN_500: dict[str, str] = {}


@pytest.fixture
def app_config():
    return dict(fuzzing.CONFIG)


def _all_routes():
    app = create_app({"DATABASE_URL": "sqlite://", "TESTING": True, "SECRET_KEY": "x"})
    return fuzzing.routes(app)


def _params():
    for rule, method, endpoint in _all_routes():
        marks = []
        if endpoint in KNOWN_500:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_500[endpoint]))
        yield pytest.param(rule, method, id=f"{method} {rule}", marks=marks)


@pytest.fixture
def world(app, client, monkeypatch):
    monkeypatch.setattr(fuzzing, "GARBAGE_TIMESTAMPS", False)
    return fuzzing.seed(app, client)


@pytest.mark.parametrize("rule,method", list(_params()))
def test_fuzz_endpoint(app, client, world, rule, method):
    problems: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        request = data.draw(st.composite(
            lambda draw: fuzzing.request_for(draw, world, rule, method))())
        problem = fuzzing.check(app, client, request)
        if problem:
            problems.append(problem)

    run()
    assert not problems, "\n".join(problems[:5])


def test_the_fuzzer_reaches_every_route(app):
    assert len(fuzzing.routes(app)) >= 50
    assert TODAY  # the suite's frozen day is what the seeded plan starts on


# ---- the known 500s, one input each (found by the fuzzer or named in issue 10) ------------


def _signed(method, path, body, stamp):
    import time

    from connector.hubspot import SignatureVerifier

    stamp = stamp or str(int(time.time() * 1000))
    return {"X-HubSpot-Request-Timestamp": stamp, "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": SignatureVerifier(fuzzing.SECRET).sign(
                method, fuzzing.PUBLIC + path, body, stamp)}


@pytest.mark.parametrize("stamp", ["\u00b2", "9" * 400])  # the byte 0xB2, as latin-1
def test_webhook_with_a_malformed_timestamp_is_refused(client, world, stamp):
    body = b"[]"
    response = client.post("/webhooks/hubspot", data=body,
                           headers=_signed("POST", "/webhooks/hubspot", body, stamp))
    assert response.status_code == 401


@pytest.mark.parametrize("stamp", ["\u00b2", "9" * 400])
def test_card_request_with_a_malformed_timestamp_is_refused(client, world, stamp):
    path = f"/hubspot/card/deals/{fuzzing.DEAL}/plan"
    query = f"portalId={fuzzing.PORTAL}&userEmail=rep%40example.com"
    headers = _signed("GET", f"{path}?{query}", b"", stamp)
    response = client.get(path, query_string=query, headers=headers)
    assert response.status_code == 401


def test_signed_webhook_with_an_out_of_range_occurred_at_is_not_a_500(app, client, world):
    import json

    body = json.dumps([{"portalId": int(fuzzing.PORTAL), "subscriptionId": 1, "eventId": 1,
                        "occurredAt": 10**20, "subscriptionType": "deal.propertyChange",
                        "objectId": int(fuzzing.DEAL)}]).encode()
    response = client.post("/webhooks/hubspot", data=body,
                           headers=_signed("POST", "/webhooks/hubspot", body, None))
    assert response.status_code < 500
