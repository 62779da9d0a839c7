"""webapp/local.py, the `make run` wiring: starting the Salesforce sandbox keeps a CA bundle the
user set in CRM_CA_BUNDLE trusted (a HubSpot behind the user's own TLS keeps working)."""
from __future__ import annotations

import ssl
from pathlib import Path

import requests
import trustme

from sandboxes.kit import serve_wsgi
from webapp import local


def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def _restore_after(monkeypatch):
    """_start_salesforce sets these in os.environ; monkeypatch puts the old values back."""
    for name in ("SALESFORCE_LOGIN_URL", "SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET",
                 "CRM_CA_BUNDLE"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_salesforce_sandbox_adds_its_ca_to_the_users_bundle(tmp_path, monkeypatch):
    users_ca = trustme.CA()
    users_bundle = tmp_path / "my-ca.pem"
    users_ca.cert_pem.write_to_path(str(users_bundle))
    before = users_bundle.read_bytes()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    users_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    _restore_after(monkeypatch)
    monkeypatch.setenv("CRM_CA_BUNDLE", str(users_bundle))
    monkeypatch.setenv("SALESFORCE_SANDBOX_PORT", "0")
    monkeypatch.setenv("SALESFORCE_SANDBOX_CA_DIR", str(tmp_path / "instance"))
    monkeypatch.setattr(local, "SANDBOX_NOTES", [])

    users_server = serve_wsgi(_hello, ssl_context=context)
    salesforce = local._start_salesforce()
    try:
        bundle = local.os.environ["CRM_CA_BUNDLE"]
        assert bundle == str(tmp_path / "instance" / "crm-ca-bundle.pem")
        assert users_bundle.read_bytes() == before  # the user's file is left alone
        # Both the user's server and the Salesforce sandbox verify against the one bundle.
        assert requests.get(users_server.url, verify=bundle, timeout=5).text == "hello"
        versions = requests.get(f"{salesforce.url}/services/data", verify=bundle, timeout=5)
        assert versions.status_code == 200
        # A second start rewrites the bundle instead of growing it.
        assert local.combined_ca_bundle(str(users_bundle), salesforce.ca_path,
                                        str(tmp_path / "instance")) == bundle
        assert Path(bundle).read_text().count("BEGIN CERTIFICATE") == 2
    finally:
        salesforce.shutdown()
        users_server.shutdown()


def test_without_a_users_bundle_the_sandbox_ca_is_trusted_alone(tmp_path, monkeypatch):
    _restore_after(monkeypatch)
    monkeypatch.setenv("SALESFORCE_SANDBOX_PORT", "0")
    monkeypatch.setenv("SALESFORCE_SANDBOX_CA_DIR", str(tmp_path))
    monkeypatch.setattr(local, "SANDBOX_NOTES", [])
    salesforce = local._start_salesforce()
    try:
        assert local.os.environ["CRM_CA_BUNDLE"] == salesforce.ca_path
    finally:
        salesforce.shutdown()


def test_make_run_advertises_localhost_never_an_ip_address():
    """HubSpot refuses IP addresses in redirect_uri; http://localhost is allowed for testing."""
    assert local.local_base_url("127.0.0.1", 5000) == "http://localhost:5000"
    assert local.local_base_url("0.0.0.0", 8000) == "http://localhost:8000"
    assert local.local_base_url("plans.internal", 5000) == "http://plans.internal:5000"


def test_the_default_public_base_url_is_localhost(monkeypatch):
    from webapp.config import Config

    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    assert Config().PUBLIC_BASE_URL == "http://localhost:5000"
