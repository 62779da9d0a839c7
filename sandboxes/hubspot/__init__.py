"""A local emulator of the HubSpot APIs MutualPlan uses (tests, `make run`, benchmarks).

One in-memory `HubSpotSandbox` holds portals (accounts), apps, OAuth codes and tokens, CRM
records, custom object schemas, properties, deal pipelines, v4 associations, a per-portal call log
and a fault-injection queue. `create_app(sandbox)` turns it into a WSGI app (werkzeug only, no
Flask) that speaks the paths and JSON of api.hubapi.com for what hubspot-api-client 12 calls:

    /oauth/authorize (consent page), /oauth/v1/token, /oauth/v1/access-tokens/{t},
    /oauth/v1/refresh-tokens/{t}, /oauth/{v3,2026-03}/token[/introspect|/revoke],
    DELETE /appinstalls/v3/external-install
    /crm-object-schemas/v3/schemas[...]  (alias /crm/v3/schemas)
    /crm/v3/properties/{objectType}[/groups][/batch/create|read]
    /crm/v3/objects/{objectType}[/{id}][/batch/create|read|update|upsert|archive][/search]
    /crm/v4/associations/{from}/{to}/batch/..., /labels; /crm/v4/objects/{t}/{id}/associations/...
    /crm/v3/pipelines/deals[/{pipelineId}[/stages[/{stageId}]]]

`serve(sandbox)` runs it on a daemon thread (plain HTTP on 127.0.0.1, or TLS with `ssl_context=`).
Point the SDK at it with `HubSpot(access_token=..., host=server.url, retry=Retry(total=0))`.

Behaviour worth knowing (from shared/platform/hubspot.md unless marked *emulator choice*):
- Access tokens live 1800 s on the sandbox clock (`sandbox.advance(s)` moves it); an expired token
  answers 401 category EXPIRED_AUTHENTICATION. Refresh tokens stay valid until revoked or the app
  is uninstalled; then the token endpoint answers 400 invalid_grant / BAD_REFRESH_TOKEN.
- Custom objects need an Enterprise portal. On other tiers the consent page drops the custom
  scopes when they are optional and refuses the install when they are required; a schema create
  answers 403 (MISSING_SCOPES without the scope; *emulator choice* FORBIDDEN with the scope on a
  non-Enterprise portal). Detect deal-properties mode from "403 on schema create", not from the
  category.
- Scopes are enforced per object type: reads need `crm.objects.<t>.read`, writes `...write`;
  property/group writes need `crm.schemas.<t>.write`; schema writes `crm.schemas.custom.write`.
- 110 requests / 10 s rolling per (portal, app) -> 429 policyName TEN_SECONDLY_ROLLING; search has
  its own 5 requests / s per token (policyName SECONDLY) and is not counted in the 10 s window.
  `sandbox.rate_limit_retry_after = <seconds>` adds a Retry-After header (urllib3 then auto-retries
  GETs unless the SDK's retries are off).
- Every request and response that matches an operation in HubSpot's published OpenAPI specs
  (copied into sandboxes/specs/hubspot, or $HUBSPOT_SPECS_DIR) is validated with
  jsonschema. contract="strict": a violation answers 500 category SANDBOX_CONTRACT_VIOLATION and is
  recorded in `sandbox.contract_violations`; "warn": logged and recorded only; "off": nothing.
  Request bodies are checked as the spec is written, so send spec-required keys (e.g.
  `associations: []` on create; `after`, `sorts`, `properties`, `filterGroups`, `limit` on search;
  `properties` and `propertiesWithHistory` on batch read).
- Property values are stored and returned as strings; unknown properties, values outside an
  enumeration's options, non-numbers for number properties and stages outside the deal's pipeline
  are rejected with 400 VALIDATION_ERROR in HubSpot's "Property values were not valid" format.
  Properties without a value are omitted from responses (the spec types values as strings).
- OAuth: the v3 and 2026-03 endpoints take parameters from the form body only; introspection
  gives hub_id/user_id. `HubSpotSandbox(v1_oauth=False)` answers every /oauth/v1/ call 404, as
  after HubSpot removes v1 on 2027-02-16 (default True: v1 still works, as on HubSpot today).
- Search `sorts` are strings as the spec types them: "prop" ascending, "-prop" descending; the
  object form fails the contract check. The specs are used unmodified.
- Recycle bin: deleted/archived records are listed with `?archived=true` (list, get, batch
  read); `restore_deal` / `restore_record` un-archive (deal.restore event for deals),
  `ui_delete` / `ui_create_record` act as a user in HubSpot's UI (schema requiredProperties
  enforced, no UUID added), `upgrade_portal` changes the tier. Demo deals start at the
  pipeline's first open stage (`first_open_stage`).
- Writes to deals through the API record webhook events with changeSource INTEGRATION;
  `rep_update_deal` records CRM_UI events; `ui_edit` changes a record silently (reconcile tests).
  `drain_events()` hands them out and `send_webhooks()` delivers them signed (v1 and v3 headers).
- The kit's server keeps connections alive; contract="off" and rate_limits=False make a call
  cheaper in benchmarks. contract="strict" (the default) refuses to start without the specs
  (`SpecsMissing`), so contract tests never pass unchecked; "warn" logs once and runs without.

Modules: `sandbox` (state and record rules), `app` (WSGI app, routing, rate limits, faults,
`serve`), one handler module per API area (`oauth`, `schemas`, `objects`, `associations`),
`contract` (OpenAPI checks), `webhooks` (signatures and the signed sender); the clock, fault
queue, call log and server come from `sandboxes.kit`.

Run standalone: `python -m sandboxes.hubspot --port 8765` (see `main`).
"""

from __future__ import annotations

import argparse
import logging
import os

from ..kit import SandboxClock, wait_forever
from .app import SandboxServer, create_app, serve
from .app import _Handlers as _Handlers  # tests replace one handler on it
from .contract import ContractChecker, ContractViolation, SpecsMissing, default_specs_dir
from .sandbox import DEFAULT_DEAL_STAGES, FAULTS, App, HubSpotSandbox, Portal
from .webhooks import Delivery, FetchResponse, hubspot_decode_uri, sign_v1, sign_v3

__all__ = [
    "DEFAULT_DEAL_STAGES",
    "FAULTS",
    "App",
    "ContractChecker",
    "ContractViolation",
    "Delivery",
    "FetchResponse",
    "HubSpotSandbox",
    "Portal",
    "SandboxClock",
    "SandboxServer",
    "SpecsMissing",
    "create_app",
    "default_specs_dir",
    "hubspot_decode_uri",
    "main",
    "serve",
    "sign_v1",
    "sign_v3",
]


def main(argv: list[str] | None = None) -> None:
    """`python -m sandboxes.hubspot [--host H] [--port P] [--contract strict|warn|off]`.

    Seeds an app whose client id / secret / app id come from HUBSPOT_CLIENT_ID,
    HUBSPOT_CLIENT_SECRET and HUBSPOT_APP_ID (defaults sandbox-client-id, sandbox-client-secret,
    1000001), an Enterprise portal 100001 and a Professional portal 100002, each with the default
    pipeline and two demo deals. Deal events (rep moves on the home page, API writes) are POSTed
    to HUBSPOT_SANDBOX_WEBHOOK_URL when it is set; the port defaults to HUBSPOT_SANDBOX_PORT or
    8765.
    """
    ap = argparse.ArgumentParser(description="Local HubSpot emulator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("HUBSPOT_SANDBOX_PORT", "8765")))
    ap.add_argument("--contract", default="warn", choices=["strict", "warn", "off"])
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sb = HubSpotSandbox(seed=False, contract=args.contract)
    sb.add_app(
        app_id=int(os.environ.get("HUBSPOT_APP_ID") or 1000001),
        client_id=os.environ.get("HUBSPOT_CLIENT_ID") or "sandbox-client-id",
        client_secret=os.environ.get("HUBSPOT_CLIENT_SECRET") or "sandbox-client-secret",
    )
    sb.add_portal(portal_id=100001, tier="enterprise", name="Acme Enterprise (sandbox)")
    sb.add_portal(portal_id=100002, tier="professional", name="Globex Pro (sandbox)")
    sb.webhook_target_url = os.environ.get("HUBSPOT_SANDBOX_WEBHOOK_URL") or None
    server = serve(sb, args.host, args.port)
    print(f"HubSpot sandbox on {server.url} (HUBSPOT_API_BASE and HUBSPOT_AUTH_BASE)", flush=True)
    wait_forever(server)
