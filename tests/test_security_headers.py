"""Security headers on every page and API answer; the trusted-proxy setting (F6)."""
from __future__ import annotations

import re

import pytest
from conftest import TODAY, TOKEN_KEY

from webapp import create_app
from webapp.db import database

NONCE = re.compile(r"'nonce-([A-Za-z0-9_-]+)'")


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def assert_common(response):
    h = response.headers
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] in ("no-referrer", "same-origin")
    csp = h["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors" in csp
    assert "Strict-Transport-Security" not in h  # plain http in tests
    return csp


def assert_not_framable(response):
    csp = assert_common(response)
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"


def test_home_page(client):
    response = client.get("/")
    assert response.status_code == 200
    assert_not_framable(response)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    nonce = NONCE.search(csp).group(1)
    assert f'<style nonce="{nonce}">' in response.get_data(as_text=True)
    assert NONCE.search(client.get("/").headers["Content-Security-Policy"]).group(1) != nonce


@pytest.mark.parametrize("path", [
    "/oauth/hubspot/callback?error=access_denied",
    "/oauth/hubspot/callback?state=nope&code=abc",
    "/oauth/salesforce/callback?state=nope&code=abc",
])
def test_oauth_result_pages(client, path):
    response = client.get(path)
    assert 400 <= response.status_code < 500 and response.mimetype == "text/html"
    assert_not_framable(response)
    nonce = NONCE.search(response.headers["Content-Security-Policy"]).group(1)
    assert f'nonce="{nonce}"' in response.get_data(as_text=True)


def test_html_error_page(client):
    response = client.get("/no/such/page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert_not_framable(response)


@pytest.mark.parametrize("path,status", [
    ("/api/v1/templates", 200), ("/api/v1/plans/nope", 404), ("/api/v1/openapi.json", 200)])
def test_api_answers(api, path, status):
    response = api.client.get(path, headers={"Authorization": f"Bearer {api.key}"})
    assert response.status_code == status
    assert_not_framable(response)
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_api_without_key_and_healthz(client):
    for response in (client.get("/api/v1/plans"), client.get("/healthz")):
        assert_not_framable(response)


def test_buyer_page_keeps_its_stricter_headers(api, client, plan):
    link = api.post(f"/plans/{plan['id']}/share-links", json={}).json
    for path in (_path(link["url"]), "/p/unknown-token"):
        response = client.get(path)
        assert_not_framable(response)
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Robots-Tag"] == "noindex, nofollow"
        assert "nonce-" not in response.headers["Content-Security-Policy"]


def test_editor_may_be_framed_by_hubspot_only(api, client, plan):
    open_path = _path(api.post(f"/plans/{plan['id']}/editor-link").json["url"])
    opened = client.get(open_path)
    page = client.get(opened.headers["Location"])
    assert page.status_code == 200
    for response in (opened, page):
        csp = assert_common(response)
        ancestors = csp.split("frame-ancestors", 1)[1].split(";")[0].split()
        assert "https://app.hubspot.com" in ancestors and "https://*.hubspot.com" in ancestors
        assert "*" not in ancestors and "'none'" not in ancestors
        assert "X-Frame-Options" not in response.headers  # it would override frame-ancestors


_made = []


@pytest.fixture(autouse=True)
def _dispose_extra_apps():
    yield
    while _made:
        database(_made.pop()).engine.dispose()


def _app(database_url, **config):
    app = create_app({"DATABASE_URL": database_url, "TESTING": True, "TODAY": lambda: TODAY,
                      "LOG_LEVEL": "WARNING", "SECRET_KEY": "test-secret", "JOBS_MODE": "manual",
                      "TOKEN_ENCRYPTION_KEYS": TOKEN_KEY, **config})
    _made.append(app)
    return app


def test_hsts_when_public_base_url_is_https(database_url):
    app = _app(database_url, PUBLIC_BASE_URL="https://plans.example.com")
    client = app.test_client()
    for path in ("/", "/healthz", "/api/v1/plans"):
        assert client.get(path).headers["Strict-Transport-Security"].startswith("max-age=")


def test_hsts_when_the_request_is_secure(app, client):
    assert "Strict-Transport-Security" in client.get("/", base_url="https://localhost").headers
    assert "Strict-Transport-Security" not in client.get("/").headers


def _ip_app(database_url, **config):
    app = _app(database_url, **config)

    @app.get("/_test/whoami")
    def whoami():
        from flask import request
        return {"ip": request.remote_addr, "scheme": request.scheme}

    return app


FORWARDED = {"X-Forwarded-For": "203.0.113.7, 198.51.100.2", "X-Forwarded-Proto": "https"}


def test_one_trusted_proxy_takes_the_client_address_from_x_forwarded_for(database_url):
    client = _ip_app(database_url, TRUSTED_PROXIES=1).test_client()
    seen = client.get("/_test/whoami", headers=FORWARDED,
                      environ_base={"REMOTE_ADDR": "10.0.0.1"}).json
    assert seen == {"ip": "198.51.100.2", "scheme": "https"}  # the last hop only: one proxy
    response = client.get("/", headers=FORWARDED, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert "Strict-Transport-Security" in response.headers


def test_without_trusted_proxies_forwarded_headers_are_ignored(database_url):
    client = _ip_app(database_url).test_client()
    seen = client.get("/_test/whoami", headers=FORWARDED,
                      environ_base={"REMOTE_ADDR": "10.0.0.1"}).json
    assert seen == {"ip": "10.0.0.1", "scheme": "http"}


def test_trusted_proxies_setting_is_parsed_strictly(monkeypatch):
    from webapp.config import Config

    monkeypatch.setenv("TRUSTED_PROXIES", "2")
    assert Config().TRUSTED_PROXIES == 2
    monkeypatch.delenv("TRUSTED_PROXIES")
    assert Config().TRUSTED_PROXIES == 0
    for bad in ("-1", "one", "\u00b2", "1000"):
        monkeypatch.setenv("TRUSTED_PROXIES", bad)
        with pytest.raises(ValueError):
            Config()
