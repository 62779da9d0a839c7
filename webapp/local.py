"""`make run`: the app on its embedded defaults, with local CRM sandboxes.

When no HubSpot (or Salesforce) credentials are configured, the matching
emulator from sandboxes/ (at the repository root, not installed with the app)
is started in this process and the app is pointed at it, so a newcomer can click through "Install to HubSpot (sandbox)"
and "Connect Salesforce (sandbox)" and watch a deal follow its plan. With real
credentials set, the real CRM is used and no sandbox starts.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

SANDBOX_NOTES: list[str] = []


HSMETA_WEBHOOKS = Path(__file__).resolve().parent.parent / "hubspot_app/src/app/webhooks/webhooks-hsmeta.json"


def app_webhook_subscriptions(path: Path = HSMETA_WEBHOOKS) -> list[tuple[str, str | None]]:
    """The (subscriptionType, propertyName) pairs our HubSpot project subscribes to, so the
    emulator delivers what HubSpot would deliver to this app, no more (e.g. deal.restore)."""
    import json

    config = json.loads(path.read_text(encoding="utf-8"))["config"]["subscriptions"]
    return [(sub["subscriptionType"], sub.get("propertyName"))
            for sub in config.get("legacyCrmObjects", []) if sub.get("active", True)]


def _start_hubspot(base: str):
    from sandboxes import hubspot as hs

    client_id, secret, app_id = "sandbox-client-id", "sandbox-client-secret", "1000001"
    # v1_oauth=False: HubSpot removes the v1 OAuth API on 2027-02-16, so no v1 call may sneak back.
    sandbox = hs.HubSpotSandbox(seed=False, contract="warn", v1_oauth=False)
    sandbox.add_app(app_id=int(app_id), client_id=client_id, client_secret=secret)
    sandbox.add_portal(portal_id=100001, tier="enterprise", name="Acme Enterprise (sandbox)")
    sandbox.add_portal(portal_id=100002, tier="professional", name="Globex Pro (sandbox)")
    sandbox.webhook_target_url = f"{base}/webhooks/hubspot"
    sandbox.webhook_subscriptions = app_webhook_subscriptions()
    server = hs.serve(sandbox, "127.0.0.1", int(os.environ.get("HUBSPOT_SANDBOX_PORT", "8765")))
    os.environ.update(HUBSPOT_API_BASE=server.url, HUBSPOT_AUTH_BASE=server.url, HUBSPOT_CLIENT_ID=client_id,
                      HUBSPOT_CLIENT_SECRET=secret, HUBSPOT_APP_ID=app_id,
                      HUBSPOT_DEVELOPER_API_KEY=sandbox.apps[int(app_id)].developer_api_key)
    SANDBOX_NOTES.append(f"  HubSpot sandbox:    {server.url}  (portals 100001 Enterprise, 100002 Professional)")
    return server


def combined_ca_bundle(user_bundle: str, sandbox_ca: str, out_dir: str) -> str:
    """A bundle trusting both the CA(s) the user set in CRM_CA_BUNDLE and the sandbox's CA.

    Written to `out_dir`/crm-ca-bundle.pem and rewritten on every start (the user's file or
    directory of PEM files may have changed); the user's own file is never modified.
    """
    out = Path(out_dir) / "crm-ca-bundle.pem"
    user = Path(user_bundle)
    if user.is_dir():
        sources = sorted(p for p in user.iterdir() if p.suffix in (".pem", ".crt"))
    else:
        sources = [user]
    parts = [p.read_text(encoding="ascii").strip() for p in sources if p.resolve() != out.resolve()]
    parts.append(Path(sandbox_ca).read_text(encoding="ascii").strip())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts) + "\n", encoding="ascii")
    return str(out)


def _start_salesforce():
    from sandboxes import salesforce as sf

    client_id, secret = "mutualplan-local", "mutualplan-local-secret"
    ca_dir = os.environ.get("SALESFORCE_SANDBOX_CA_DIR", "instance")
    sandbox = sf.demo_sandbox(client_id, secret)
    handle = sf.serve(sandbox, "127.0.0.1", int(os.environ.get("SALESFORCE_SANDBOX_PORT", "8443")),
                      ca_dir=ca_dir)
    # A CA the user trusts already (e.g. for a HubSpot behind their own TLS) must stay trusted.
    user_bundle = os.environ.get("CRM_CA_BUNDLE")
    bundle = combined_ca_bundle(user_bundle, handle.ca_path, ca_dir) if user_bundle else handle.ca_path
    os.environ.update(SALESFORCE_LOGIN_URL=handle.url, CRM_CA_BUNDLE=bundle,
                      SALESFORCE_CLIENT_ID=client_id, SALESFORCE_CLIENT_SECRET=secret)
    SANDBOX_NOTES.append(f"  Salesforce sandbox: {handle.url}  (TLS with a local CA in instance/)")
    if user_bundle:
        SANDBOX_NOTES.append(f"  CRM_CA_BUNDLE:      {bundle}  (yours plus the sandbox CA)")
    return handle


def local_base_url(host: str, port: int) -> str:
    """The address to advertise: `localhost` for a loopback bind, because HubSpot refuses IP
    addresses in an OAuth redirect_uri (http://localhost is allowed for testing)."""
    loopback = host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "")
    return f"http://{'localhost' if loopback else host}:{port}"


def main() -> None:
    from dotenv import load_dotenv

    load_dotenv()
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "5000"))
    base = os.environ.setdefault("PUBLIC_BASE_URL", local_base_url(host, port))
    if not os.environ.get("HUBSPOT_CLIENT_ID"):
        _start_hubspot(base)
    if not os.environ.get("SALESFORCE_CLIENT_ID"):
        _start_salesforce()

    catcher = None
    if not os.environ.get("SMTP_URL"):  # every message lands in the local mailbox instead
        from .mail import Catcher

        catcher = Catcher(int(os.environ.get("SMTP_CATCHER_PORT", "0"))).start()
        os.environ["SMTP_URL"] = catcher.url
        SANDBOX_NOTES.append(f"  Mailbox:            {base}/local/mail  (SMTP catcher on {catcher.url})")

    from . import create_app, migrate
    from .cli import demo
    from .db import database

    app = create_app()
    if catcher is not None:
        app.extensions["mutualplan.mail_catcher"] = catcher
    with app.app_context():
        migrate.upgrade(database().engine)
    result = app.test_cli_runner().invoke(demo, ["--history"])
    print(result.output, end="")
    for line in SANDBOX_NOTES:
        print(line)
    print(f"  Start here:         {base}/")
    print(f"Serving on {base} (Ctrl-C stops)", flush=True)
    app.run(host=host, port=port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    sys.exit(main())
