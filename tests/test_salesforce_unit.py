"""The Salesforce connector's one call path, fast: error classification, retries and token
refresh over simple-salesforce's requests transport, answered by `responses` (no server)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
import responses

from connector.base import MemoryTokenStore, TokenSet
from connector.errors import NeedsReauth, RateLimited, Transient
from connector.salesforce import SalesforceConnector, oauth_client

LOGIN, INSTANCE = "https://login.example.test", "https://acme.my.example.test"
CLIENT_ID, SECRET = "client", "secret"
QUERY = re.compile(re.escape(INSTANCE) + r"/services/data/v[\d.]+/query/.*")
TOKEN_URL = LOGIN + "/services/oauth2/token"
DEAL = "006000000000001AAA"
RECORD = {"records": [{"Id": DEAL, "StageName": "Prospecting", "CloseDate": "2027-03-31",
                       "RecordTypeId": None, "SystemModstamp": "2026-11-26T10:00:00.000+0000"}],
          "done": True, "totalSize": 1}


def token_response(access: str) -> dict:
    identity = "https://login.example.test/id/00D000000000001/005000000000001"
    issued = "1700000000000"
    mac = hmac.new(SECRET.encode(), (identity + issued).encode(), hashlib.sha256).digest()
    return {"access_token": access, "instance_url": INSTANCE, "id": identity, "issued_at": issued,
            "signature": base64.b64encode(mac).decode(), "token_type": "Bearer", "scope": "api"}


@pytest.fixture
def store():
    return MemoryTokenStore(TokenSet("old-token", "refresh-1", None, {
        "instance_url": INSTANCE, "login_url": LOGIN, "org_id": "00D000000000001"}))


@pytest.fixture
def connector(store):
    # As learnt at setup (describe): an org without record types, so no describe call here.
    return SalesforceConnector(store, oauth_client(CLIENT_ID, SECRET, "http://localhost/cb"),
                               settings={"record_type_column": False}, wait_initial=0.0)


def errors(code: str, message: str = "x") -> list:
    return [{"errorCode": code, "message": message}]


@responses.activate
def test_expired_session_refreshes_once_and_replays(connector, store):
    responses.get(QUERY, status=401, json=errors("INVALID_SESSION_ID", "Session expired"))
    responses.get(QUERY, status=200, json=RECORD)
    responses.post(TOKEN_URL, json=token_response("new-token"))
    deal = connector.get_deal(DEAL)
    assert deal.stage == "Prospecting" and connector.refreshes == 1 and store.saves == 1
    calls = [c.request for c in responses.calls]
    assert [r.method for r in calls] == ["GET", "POST", "GET"]
    assert calls[0].headers["Authorization"] == "Bearer old-token"
    assert calls[2].headers["Authorization"] == "Bearer new-token"
    assert "grant_type=refresh_token" in calls[1].body
    assert "refresh_token=refresh-1" in calls[1].body
    assert store.tokens.refresh_token == "refresh-1"  # kept: none was rotated in


@responses.activate
def test_a_second_401_after_the_replay_is_not_refreshed_again(connector, store):
    responses.get(QUERY, status=401, json=errors("INVALID_SESSION_ID"))
    responses.post(TOKEN_URL, json=token_response("new-token"))
    with pytest.raises(Exception) as caught:
        connector.get_deal(DEAL)
    assert caught.type.__name__ == "AuthExpired" and store.saves == 1
    assert [c.request.method for c in responses.calls] == ["GET", "POST", "GET"]


@responses.activate
def test_invalid_grant_on_refresh_needs_reauth(connector, store):
    responses.get(QUERY, status=401, json=errors("INVALID_SESSION_ID"))
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant",
                                                "error_description": "expired token"})
    with pytest.raises(NeedsReauth):
        connector.get_deal(DEAL)
    assert store.saves == 0 and store.tokens.access_token == "old-token"


@responses.activate
def test_a_refresh_whose_signature_does_not_match_is_refused(connector, store):
    responses.get(QUERY, status=401, json=errors("INVALID_SESSION_ID"))
    responses.post(TOKEN_URL, json={**token_response("new-token"), "signature": "forged"})
    with pytest.raises(Exception, match="bad_signature"):
        connector.get_deal(DEAL)
    assert store.saves == 0


@responses.activate
def test_daily_limit_is_rate_limited_for_an_hour_and_not_retried(connector):
    responses.get(QUERY, status=403, json=errors("REQUEST_LIMIT_EXCEEDED", "Limit exceeded."))
    with pytest.raises(RateLimited) as caught:
        connector.get_deal(DEAL)
    assert caught.value.scope == "daily" and caught.value.retry_after == 3600.0
    assert len(responses.calls) == 1


@responses.activate
def test_503_is_transient_and_retried_inside_the_call(connector):
    responses.get(QUERY, status=503, body="Service Unavailable")
    responses.get(QUERY, status=503, body="Service Unavailable")
    responses.get(QUERY, status=200, json=RECORD)
    assert connector.get_deal(DEAL).id == DEAL and len(responses.calls) == 3


@responses.activate
def test_503_until_the_attempts_are_spent_raises_transient(connector):
    responses.get(QUERY, status=503, body="Service Unavailable")
    with pytest.raises(Transient):
        connector.get_deal(DEAL)
    assert len(responses.calls) == connector.max_attempts


@responses.activate
def test_lock_errors_are_transient_and_validation_errors_are_not_retried(connector):
    responses.get(QUERY, status=400, json=errors("UNABLE_TO_LOCK_ROW"))
    responses.get(QUERY, status=200, json=RECORD)
    assert connector.get_deal(DEAL).id == DEAL and len(responses.calls) == 2
    responses.get(QUERY, status=400, json=errors("MALFORMED_QUERY"))
    with pytest.raises(Exception) as caught:
        connector.get_deal(DEAL)
    assert caught.type.__name__ == "Rejected" and len(responses.calls) == 3


@responses.activate
def test_timeouts_are_transient(connector):
    import requests

    responses.get(QUERY, body=requests.ConnectTimeout("slow"))
    with pytest.raises(Transient):
        connector.get_deal(DEAL)
