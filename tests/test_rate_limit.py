"""F2: the API's per-tenant rate limit (API_RATE_LIMIT a minute, in Redis when it is set),
answered 429 with Retry-After as a problem document."""
from __future__ import annotations

import pytest
from conftest import make_api


@pytest.fixture
def app_config():
    return {"API_RATE_LIMIT": 3}


def test_the_api_rate_limit_is_per_tenant_and_answers_429_with_retry_after(app, client):
    acme, globex = make_api(app, client, "acme"), make_api(app, client, "globex")
    # A fixed one-minute window: 8 requests cross at most one boundary, so one is refused.
    answers = [acme.get("/plans") for _ in range(8)]
    refused = next(r for r in answers if r.status_code == 429)
    assert [r.status_code for r in answers[:3]] == [200, 200, 200]
    assert refused.mimetype == "application/problem+json"
    assert refused.json["type"].endswith("/rate-limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert globex.get("/plans").status_code == 200  # another tenant has its own budget
