"""F4: no secrets in logs. The access log names the route rule, never a buyer or editor token."""
from __future__ import annotations

import logging
import re

import pytest

from webapp import logs, sharing

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def app_config():
    return {"LOG_LEVEL": "INFO"}


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_buyer_visit_and_editor_link_never_log_their_tokens(api, client, plan, capsys):
    link = api.post(f"/plans/{plan['id']}/share-links", json={"label": "Acme"}).json
    buyer_path = _path(link["url"])
    buyer_token = buyer_path.rsplit("/", 1)[1]
    editor_path = _path(api.post(f"/plans/{plan['id']}/editor-link").json["url"])
    editor_token = editor_path.rsplit("/", 1)[1]
    capsys.readouterr()

    page = client.get(buyer_path)
    assert page.status_code == 200
    csrf = CSRF.search(page.get_data(as_text=True)).group(1)
    assert client.post(buyer_path + "/identify",
                       data={"csrf": csrf, "name": "Dana", "email": "dana@acme.example"}).status_code == 303
    assert client.get(buyer_path + "/calendar.ics").status_code == 200
    assert client.get(buyer_path + "/no/such/page").status_code == 404
    assert client.get(editor_path).status_code == 303
    assert client.get(editor_path + "x").status_code == 401  # a bad signature
    assert client.get(f"/editor/open/{editor_token}/extra").status_code == 404
    err = capsys.readouterr().err

    assert buyer_token not in err and editor_token not in err
    assert editor_token.split(".")[-1] not in err  # not even the signature part
    assert '"path": "/p/<token>"' in err
    assert '"path": "/p/<token>/identify"' in err
    assert '"path": "/editor/open/<token>"' in err
    assert '"path": "/p/[unmatched]"' in err
    assert '"path": "/editor/[unmatched]"' in err


def test_a_traceback_that_carries_a_token_is_scrubbed(app, api, client, plan, capsys, monkeypatch):
    editor_path = _path(api.post(f"/plans/{plan['id']}/editor-link").json["url"])
    token = editor_path.rsplit("/", 1)[1]

    def explode(value, *_keys):
        raise RuntimeError(f"cannot load {value} from /editor/open/{value}?code=abc123")

    monkeypatch.setattr(sharing, "load_editor_link", explode)
    capsys.readouterr()
    assert client.get(editor_path).status_code == 500
    err = capsys.readouterr().err
    assert "unhandled error" in err and "RuntimeError" in err
    assert token not in err and "abc123" not in err


@pytest.mark.parametrize("secret", [
    "/p/" + "A" * 43,
    "mp_" + "x" * 43,
    "eyJ0IjoiYWNtZSJ9.Z0Xx1A.aaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "https://app.example/oauth/hubspot/callback?code=na1-1234-5678&state=s3cr3t",
])
def test_scrub_removes_token_shaped_values(secret):
    cleaned = logs.scrub(f"failed: {secret} (retrying)")
    assert "[redacted]" in cleaned
    for part in re.split(r"[/?&=.]", secret):
        if len(part) >= 6 and part not in ("oauth", "hubspot", "callback", "https:", "example"):
            assert part not in cleaned, cleaned


def test_scrub_keeps_ordinary_messages():
    text = "push of 2b7f3c1e-0e4b-4a57-9a3c-7d1f7b8e9a10 failed: 429 Too Many Requests"
    assert logs.scrub(text) == text


def test_any_mutualplan_logger_is_scrubbed(app, capsys):
    with app.app_context():
        logging.getLogger("mutualplan.hubspot").warning("HubSpot install failed: invalid_code %s",
                                                        "code=na1-secret-code")
    err = capsys.readouterr().err
    assert "na1-secret-code" not in err and "code=[redacted]" in err
