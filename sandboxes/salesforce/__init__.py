"""Local emulator of the Salesforce APIs MutualPlan uses (OAuth web-server flow + REST).

No Flask, no database: werkzeug Request/Response for the WSGI app, the keep-alive HTTP/1.1
server of ``sandboxes.kit`` (werkzeug's dev server closes every connection, i.e. one TLS
handshake per call), the standard library for the rest, ``trustme`` for TLS.  Modules:
``sandbox`` (state and record rules), ``schema`` (sObject types, the package's objects),
``app`` (WSGI entry, ``serve``), one module per API area: ``oauth``, ``rest``, ``query``
(SOQL), ``composite``.

Used by the tests (in-process, on a thread, ``serve(sandbox, port=0)``), by ``make run`` as the
local Salesforce (``python -m sandboxes.salesforce --port 8443 --ca-dir instance``,
seeded by ``demo_sandbox()``), and by the benchmarks (~2-3 ms per call over TLS).

Quick start::

    from sandboxes.salesforce import SalesforceSandbox, serve
    sb = SalesforceSandbox()
    sb.add_connected_app("cid", "secret", ["https://localhost:5000/oauth/salesforce/callback"])
    org = sb.add_org("Acme", my_domain="acme", package_installed=True)
    handle = serve(sb)        # handle.url = https://127.0.0.1:PORT; handle.ca_path = CA bundle
    tok = sb.issue_tokens(org, "cid") # or the real web-server flow against handle.url
    ...
    handle.shutdown()

Custom objects: by default (``package_source="auto"``) the package's objects and fields are read
from ``salesforce_package/force-app/main/default`` (this repo), so the emulator always matches
the package; ``package_source=None`` uses the built-in ``DEFAULT_PACKAGE_OBJECTS``.  They exist
in an org only while the package is installed (``add_org(package_installed=...)``,
``install_package(org, namespace=...)``, ``uninstall_package``); otherwise describe answers 404
``NOT_FOUND`` and SOQL 400 ``INVALID_TYPE``.  AutoNumber Name fields are generated and
read-only; restricted picklists are enforced; master-detail deletes cascade.

Addressing (what the connector must know)
-----------------------------------------
* **TLS only by default.** simple-salesforce hardcodes ``https://``.  ``serve()`` makes a local CA
  with trustme; trust it with ``requests.Session().verify = handle.ca_path`` **and**
  ``session.trust_env = False`` (otherwise ``REQUESTS_CA_BUNDLE`` silently wins).  In the app this
  is ``CRM_CA_BUNDLE``.
* **One server plays every Salesforce host.** ``login.salesforce.com``, ``test.salesforce.com``
  (sandbox orgs) and every My Domain (``acme.my.salesforce.com``,
  ``acme--uat.sandbox.my.salesforce.com``) are all ``handle.url``.  Make the login base URL
  configurable (``SALESFORCE_LOGIN_URL=handle.url``); for sandbox orgs real code would use
  ``https://test.salesforce.com`` and for "log in with My Domain" the customer's My Domain -
  here all of them are ``handle.url``.  The token response's ``instance_url`` is the URL the token
  request arrived at (or ``Org.instance_url`` when set), the org's nominal My Domain host is
  ``Org.my_domain_host``; REST calls must always go to ``instance_url`` from the token response.
  simple-salesforce drops the path of ``instance_url``, so orgs are told apart by the token, not
  by host or path.  The ``id`` URL is ``<login base>/id/<orgId>/<userId>`` (18-char ids).
* **API versions:** ``/services/data`` lists v31.0 .. ``latest_api_version`` (default 66.0 =
  Spring '26; 67.0 Summer '26, 68.0 Winter '27 can be enabled).  Older (21-30) answer 410,
  newer 404.
  Pin simple-salesforce with ``version="66.0"`` (its default 59.0 also works here).

Fidelity notes (deliberate, so bugs show up locally)
----------------------------------------------------
* The token response has no ``expires_in``; sessions expire after ``Org.session_timeout``
  seconds of *inactivity* measured on the sandbox clock -> 401 ``INVALID_SESSION_ID``.
* Refresh responses carry no ``refresh_token`` unless the connected app has
  ``rotate_refresh_tokens=True``; then the old refresh token is dead immediately.
* Date/time fields have **second precision** (like Salesforce: ``...:08.000+0000``).  A poll on
  ``SystemModstamp > :hwm`` can miss an edit made in the same second as the previous poll; use
  ``>=`` and de-duplicate.  Advance the clock (``sandbox.clock.advance(1)``) in tests.
* SOQL date/datetime literals must not be quoted (``SystemModstamp > 2026-01-01T00:00:00Z``);
  quoting answers 400 ``INVALID_FIELD`` like Salesforce.  String ``=`` is case-insensitive.
* Unknown fields answer 400 ``INVALID_FIELD``; namespaced orgs need fully-qualified names
  (``mapns__Mutual_Action_Plan__c``, ``mapns__Status__c``) unless the request carries
  ``Sforce-Call-Options: defaultNamespace=mapns`` (honoured on rows and query, not composite).
* Composite and sObject Collections answer 200 even when parts fail.
* A "timeout" fault sleeps and *then processes the request*: the write happens although the
  client gave up (use idempotent upserts).
* ``invalid_session`` fault answers 401 and really kills the access token presented.
* Orgs have no Opportunity record types by default (``add_org(record_types=True)`` adds one)
  and then no ``RecordTypeId`` column (describe, SOQL, writes), as real orgs. Non-reparentable
  master-detail fields are createable, not updateable. Both are strict by default;
  ``SalesforceSandbox(legacy_record_type_column=True, legacy_updateable_master_detail=True)``
  brings back the old lenient behaviour (see the docstring of ``SalesforceSandbox``).
* Lightning Data Service: ``/ui-api/records`` POST/GET/PATCH/DELETE and the helpers
  ``lds_create`` / ``lds_update`` / ``lds_delete`` write as the rep, with nothing added (no
  external ids). Deletes go to the recycle bin (``queryAll`` shows ``IsDeleted = true``);
  ``undelete`` restores a record and the details its delete cascaded to.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from datetime import date, timedelta

from ..kit import ServerHandle, wait_forever
from .app import SandboxApp, create_app, serve
from .sandbox import (
    DEFAULT_STAGES,
    FAULT_KINDS,
    ApiError,
    CallRecord,
    Clock,
    ConnectedApp,
    Org,
    RecordType,
    SalesforceSandbox,
    SalesProcess,
    Stage,
    User,
    id18,
    normalize_id,
)
from .schema import DEFAULT_PACKAGE_OBJECTS, REPO_PACKAGE_SOURCE, load_package_schema

__all__ = [
    "DEFAULT_PACKAGE_OBJECTS",
    "DEFAULT_STAGES",
    "FAULT_KINDS",
    "REPO_PACKAGE_SOURCE",
    "ApiError",
    "CallRecord",
    "Clock",
    "ConnectedApp",
    "Org",
    "RecordType",
    "SalesProcess",
    "SalesforceSandbox",
    "SandboxApp",
    "ServerHandle",
    "Stage",
    "User",
    "create_app",
    "demo_sandbox",
    "id18",
    "load_package_schema",
    "main",
    "normalize_id",
    "serve",
]

def demo_sandbox(client_id: str = "mutualplan-local",
                 client_secret: str = "mutualplan-local-secret",
                 redirect_uris: Iterable[str] = ()) -> SalesforceSandbox:
    """A sandbox with three orgs for ``make run``: package installed, namespaced sandbox org,
    and one without the package; a few accounts and opportunities each.

    Record types: Acme and Initech have none, like a new org (one sales process needs none).
    Globex UAT has two sales processes ("Standard", "Renewal") and so two Opportunity record
    types ("New Business", "Renewal"), the only way an org can have several sales processes;
    the demo thus has both shapes. Every opportunity starts at the first open stage of its
    sales process, so the first stage-gate milestone visibly moves it.
    """
    sb = SalesforceSandbox()
    sb.add_connected_app(client_id, client_secret, redirect_uris)
    acme = sb.add_org("Acme Corp", my_domain="acme", package_installed=True)
    sb.add_user(acme, "rep@acme.example.com", name="Riley Rep")
    uat = sb.add_org("Globex UAT", my_domain="globex", is_sandbox=True, namespace="mapns")
    sb.add_sales_process(uat, "Renewal", ["Qualification", "Negotiation/Review", "Closed Won",
                                          "Closed Lost"])
    new_business = sb.add_record_type(uat, "New Business", "Standard")
    sb.add_record_type(uat, "Renewal", "Renewal")
    sb.add_org("Initech", my_domain="initech", package_installed=False)
    for org in sb.orgs.values():
        acc = sb.create_record(org, "Account", {"Name": f"{org.name} Customer"})
        extra = {"RecordTypeId": new_business.id} if org is uat else {}
        stage = sb.first_open_stage(org, "Standard")
        for n in range(3):
            sb.create_record(org, "Opportunity", {
                "Name": f"{org.name} deal {n + 1}", "AccountId": acc, "StageName": stage,
                "CloseDate": (date.today() + timedelta(days=30 * (n + 1))).isoformat(),
                "Amount": 10000.0 * (n + 1), **extra})
    return sb


def main(argv: list | None = None) -> None:
    """``python -m sandboxes.salesforce [--port 8443] [--ca-dir instance/]``."""
    ap = argparse.ArgumentParser(description="Local Salesforce emulator (MutualPlan)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("SALESFORCE_SANDBOX_PORT",
                                                                   "8443")))
    ap.add_argument("--client-id", default=os.environ.get("SALESFORCE_CLIENT_ID",
                                                          "mutualplan-local"))
    ap.add_argument("--client-secret", default=os.environ.get("SALESFORCE_CLIENT_SECRET",
                                                              "mutualplan-local-secret"))
    ap.add_argument("--redirect-uri", action="append", default=[],
                    help="allowed callback (repeatable; none = accept any)")
    ap.add_argument("--ca-dir", default=os.environ.get("SALESFORCE_SANDBOX_CA_DIR", "instance"))
    ap.add_argument("--no-tls", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    sb = demo_sandbox(a.client_id, a.client_secret, a.redirect_uri)
    h = serve(sb, a.host, a.port, tls=not a.no_tls, ca_dir=a.ca_dir, quiet=not a.verbose)
    print(f"Salesforce sandbox on {h.url}", flush=True)
    print(f"  SALESFORCE_LOGIN_URL={h.url}")
    if h.ca_path:
        print(f"  CRM_CA_BUNDLE={h.ca_path}")
    for org in sb.orgs.values():
        print(f"  org {org.id} {org.name!r} users={[u.username for u in org.users.values()]} "
              f"package={'yes' if org.package_installed else 'no'} ns={org.namespace}",
              flush=True)
    wait_forever(h)
