"""One Provider record per CRM, registered once in create_app.

A Provider says everything the app needs to know about a CRM besides its routes:

    name, label        "hubspot", "HubSpot"
    connector          installation -> its CrmConnector (tokens from InstallationTokenStore)
    oauth              the app's OAuth client (connector.oauth.OAuthClient, authlib)
    begin              the connect start: query args -> data kept in the OAuth state
    exchange           the code exchange: code + state data -> tokens
    identify           after the exchange: whose account, its tokens and settings
    setup              the bootstrap job's work (default: connector.ensure_setup())
    pull_every         the pull schedule: seconds between two pulls of an account
    webhooks           True when webhooks also say "this account may have changed"
    inbox              changes the webhooks recorded, handed to the next pull as RemoteChanges
    token_store        installation id -> TokenStore (one database-backed store for all)
    person             after an exchange: who signed in (Person: account, CRM user id, email,
                       name); used for "Sign in with <CRM>" and to make the installer an admin
    login_oauth        the OAuth client for signing in (default: `oauth`); Salesforce's asks
                       for OpenID Connect's `openid profile email` instead of API access
    rate               the per-account token bucket (rate/s, capacity), shared through Redis

The shared parts run on these records: blueprints/connect.py (the one OAuth callback
sequence), jobs.py (setup, pull, and the one clock that enqueues due pulls) and sync.py
(pull applies the inbox and the connector's pages alike). A new CRM is one connector
module, one sandbox module and one `register(...)` entry in `init_app` below.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from connector import hubspot, ratelimit, salesforce
from connector.base import MemoryTokenStore, RemoteChange, TokenSet
from connector.errors import CrmError, NotFound
from connector.oauth import OAuthFailure, new_verifier

from . import clock, installations
from .models import HubSpotEvent, Installation

EXT = "mutualplan.providers"


def _ensure_setup(connector) -> dict:
    return connector.ensure_setup()


@dataclass(frozen=True)
class Person:
    """Who is behind a token: the CRM account, their CRM user id, email and name."""

    account_id: str
    user_id: str
    email: str = ""
    name: str = ""


@dataclass(frozen=True)
class Provider:
    name: str
    label: str
    connector: Callable[[Installation, Any], Any]  # (installation, token store) -> connector
    oauth: Callable[[], Any]
    begin: Callable[[dict], dict]
    exchange: Callable[[str, dict], TokenSet]
    identify: Callable[[TokenSet, dict], tuple[str, TokenSet, dict]]
    pull_every: Callable[[Installation, datetime], float]
    webhooks: bool = False
    inbox: Callable[[Session, Installation], list[RemoteChange]] | None = None
    setup: Callable[[Any], dict] = _ensure_setup
    rate: dict = field(default_factory=lambda: dict(ratelimit.DEFAULT))  # per-account token bucket
    token_store: Callable[[str], Any] = field(default=installations.InstallationTokenStore)
    person: Callable[[TokenSet, dict], Person] | None = None
    login_oauth: Callable[[], Any] | None = None

    def sign_in_client(self):
        return (self.login_oauth or self.oauth)()
    record_url: Callable[[Installation, str], str | None] = lambda row, deal_id: None  # the deal in the CRM

    def connector_for(self, row: Installation):
        return self.connector(row, self.token_store(row.id))

    def is_due(self, row: Installation, now: datetime | None = None) -> bool:
        """Should the clock pull this account now?"""
        now = now or clock.now()
        if row.status != "active":
            return False
        retry_at = clock.aware(getattr(row, "next_pull_at", None))
        if retry_at is not None:  # a failed pull set its own retry time (sync's error policy)
            return now >= retry_at
        last = clock.aware(row.last_pulled_at)
        return last is None or (now - last).total_seconds() >= self.pull_every(row, now)


def register(app: Flask, provider: Provider) -> None:
    app.extensions.setdefault(EXT, {})[provider.name] = provider


def override(app: Flask, name: str, **fields) -> Provider:
    """Swap parts of a registered provider (tests and benchmarks: an in-memory connector)."""
    provider = replace(app.extensions[EXT][name], **fields)
    register(app, provider)
    return provider


def get(name: str, app: Flask | None = None) -> Provider:
    found = (app or current_app).extensions.get(EXT, {}).get(name)
    if found is None:
        raise NotFound(f"no provider {name!r}")
    return found


def all_providers(app: Flask | None = None) -> list[Provider]:
    return list((app or current_app).extensions.get(EXT, {}).values())


def redirect_uri(name: str) -> str:
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + f"/oauth/{name}/callback"


def _limiter(name: str):
    from . import jobs

    return jobs.rate_limiter(name)


# ---- HubSpot ------------------------------------------------------------------------------

HUBSPOT_RECONCILE = 300.0  # seconds: webhooks say most; this catches lost ones and UI edits
EVENT_RETENTION = timedelta(days=7)


def hubspot_config() -> hubspot.HubSpotConfig:
    c = current_app.config
    cfg = hubspot.HubSpotConfig(
        client_id=c.get("HUBSPOT_CLIENT_ID", ""), client_secret=c.get("HUBSPOT_CLIENT_SECRET", ""),
        api_base=c.get("HUBSPOT_API_BASE") or hubspot.API_BASE,
        auth_base=c.get("HUBSPOT_AUTH_BASE") or hubspot.AUTH_BASE,
        ca_bundle=c.get("CRM_CA_BUNDLE") or None,
        app_id=str(c.get("HUBSPOT_APP_ID") or ""),
        developer_api_key=c.get("HUBSPOT_DEVELOPER_API_KEY") or "")
    if c.get("HUBSPOT_TIMEOUT"):
        cfg.timeout = c["HUBSPOT_TIMEOUT"]
    if c.get("HUBSPOT_RETRY_SLEEP"):
        cfg.sleep = c["HUBSPOT_RETRY_SLEEP"]
    return cfg


def _hubspot_connector(row: Installation, store) -> hubspot.HubSpotConnector:
    return hubspot.HubSpotConnector(hubspot_config(), row.account_id, store,
                                    settings=dict(row.settings or {}),
                                    limiter=_limiter("hubspot"))


def _hubspot_oauth() -> hubspot.HubSpotOAuth:
    return hubspot.HubSpotOAuth(hubspot_config(), redirect_uri("hubspot"))


def _hubspot_begin(args: dict) -> dict:
    return {}


def _hubspot_exchange(code: str, data: dict) -> TokenSet:
    return _hubspot_oauth().exchange(code)


def _hubspot_identify(tokens: TokenSet, data: dict) -> tuple[str, TokenSet, dict]:
    try:
        info = _hubspot_oauth().token_info(tokens.access_token)
    except CrmError as exc:
        raise OAuthFailure("metadata_lookup_failed", exc.detail) from exc
    portal_id = str(info.get("hub_id") or "")
    if not portal_id or portal_id == "None":
        raise OAuthFailure("metadata_lookup_failed", "no hub_id in the token metadata")
    tokens = TokenSet(tokens.access_token, tokens.refresh_token, tokens.expires_at, info)
    settings = {"scopes": info.get("scopes", []), "hub_domain": info.get("hub_domain")}
    return portal_id, tokens, settings


def _hubspot_person(tokens: TokenSet, data: dict) -> Person:
    """The user of a token from HubSpot's introspection (2026-03): `user_id` and `user` (their
    email). After an install, `identify` has already put that answer in the token's extra."""
    info = tokens.extra if tokens.extra.get("hub_id") else None
    if info is None:
        try:
            info = _hubspot_oauth().token_info(tokens.access_token)
        except CrmError as exc:
            raise OAuthFailure("metadata_lookup_failed", exc.detail) from exc
    portal, user_id = str(info.get("hub_id") or ""), str(info.get("user_id") or "")
    if portal in ("", "None") or user_id in ("", "None"):
        raise OAuthFailure("metadata_lookup_failed", "no hub_id or user_id in the token metadata")
    return Person(portal, user_id, str(info.get("user") or ""))


INBOX_KINDS = ("deal.deletion", "deal.restore")


def hubspot_inbox(s: Session, row: Installation) -> list[RemoteChange]:
    """Deal deletions and restores the webhooks recorded, in the order they happened, handed
    over once, in the pull's first transaction. HubSpot's search cannot find deleted deals; a
    restore ("deal.restore", a deal back from the recycle bin) is handed over as "this deal
    exists" (no fields), so the plan its deletion archived comes back even if the search does
    not list the deal."""
    events = s.scalars(select(HubSpotEvent).where(HubSpotEvent.installation_id == row.id,
                                                  HubSpotEvent.kind.in_(INBOX_KINDS),
                                                  HubSpotEvent.processed_at.is_(None))
                       .order_by(HubSpotEvent.occurred_at)).all()
    now = clock.now()
    for event in events:
        event.processed_at = now
    # Housekeeping here, in the pull job, not in the webhook's few milliseconds.
    s.execute(delete(HubSpotEvent).where(HubSpotEvent.installation_id == row.id,
                                         HubSpotEvent.received_at < now - EVENT_RETENTION)
              .execution_options(synchronize_session=False))
    return [RemoteChange("deal", str(e.object_id), {}, clock.aware(e.occurred_at) or now,
                         deleted=e.kind == "deal.deletion") for e in events]


HUBSPOT = Provider(
    name="hubspot", label="HubSpot", connector=_hubspot_connector, oauth=_hubspot_oauth,
    begin=_hubspot_begin, exchange=_hubspot_exchange, identify=_hubspot_identify,
    pull_every=lambda row, now: HUBSPOT_RECONCILE, webhooks=True, inbox=hubspot_inbox,
    rate=ratelimit.HUBSPOT, person=_hubspot_person,
    record_url=lambda row, deal_id: (f"{current_app.config.get('HUBSPOT_AUTH_BASE') or hubspot.AUTH_BASE}"
                                     f"/contacts/{row.account_id}/record/0-3/{deal_id}"))


# ---- Salesforce ----------------------------------------------------------------------------

POLL_ACTIVE = 30.0  # seconds between polls while an org's plans are being edited
POLL_WARM = 120.0
POLL_IDLE = 600.0
ACTIVE_WINDOW = timedelta(minutes=30)
WARM_WINDOW = timedelta(hours=2)
DAILY_POLL_BUDGET = 3000  # API calls per org per day the poll may spend at most


def poll_interval(row: Installation, now: datetime) -> float:
    """Salesforce has no webhooks for our objects (DESIGN §5): poll every POLL_ACTIVE seconds
    while the org is active (a change pulled from it, or a push to it, in the last
    ACTIVE_WINDOW; a newly connected org counts as active, so the first component edits are
    seen within seconds, not at the idle interval), then POLL_WARM, then POLL_IDLE. One poll is
    one Composite call, so even an org active all day stays within DAILY_POLL_BUDGET."""
    seen = [t for t in (clock.aware(row.last_activity_at), clock.aware(row.created_at)) if t]
    if not seen:
        return POLL_IDLE
    quiet = now - max(seen)
    floor = 86400 / DAILY_POLL_BUDGET
    if quiet < ACTIVE_WINDOW:
        return max(POLL_ACTIVE, floor)
    if quiet < WARM_WINDOW:
        return max(POLL_WARM, floor)
    return POLL_IDLE


def calls_per_day(interval: float) -> int:
    """API calls a day for one org polled every `interval` seconds (one Composite per poll)."""
    return int(86400 // interval)


def _salesforce_oauth() -> salesforce.SalesforceOAuth:
    c = current_app.config
    return salesforce.oauth_client(c.get("SALESFORCE_CLIENT_ID", ""),
                                   c.get("SALESFORCE_CLIENT_SECRET", ""), redirect_uri("salesforce"), ca_bundle=c.get("CRM_CA_BUNDLE"),
                                   timeout=float(c.get("SALESFORCE_TIMEOUT", 30.0)))


def _salesforce_login_oauth() -> salesforce.SalesforceOAuth:
    """Sign-in asks for OpenID Connect only (no API access, no refresh token)."""
    return replace(_salesforce_oauth(), scope=salesforce.LOGIN_SCOPES)


def _salesforce_person(tokens: TokenSet, data: dict) -> Person:
    """The org and user from the identity URL of the token response; name and email from
    the UserInfo endpoint when the token has the `openid` scope (sign-in). An install's
    token (api refresh_token) gets the ids only: the installer's name arrives when they
    sign in."""
    extra = tokens.extra
    if "openid" not in str(extra.get("scope", "")).split():
        return Person(extra["org_id"], extra["user_id"])
    try:
        info = _salesforce_oauth().userinfo(tokens.access_token, base=extra["instance_url"])
    except CrmError as exc:
        raise OAuthFailure("metadata_lookup_failed", exc.detail) from exc
    if str(info.get("user_id")) != extra["user_id"]:
        raise OAuthFailure("metadata_lookup_failed", "UserInfo names another user")
    return Person(extra["org_id"], extra["user_id"], str(info.get("email") or ""),
                  str(info.get("name") or ""))


def _salesforce(store, settings: dict | None = None) -> salesforce.SalesforceConnector:
    return salesforce.SalesforceConnector(
        store, _salesforce_oauth(), settings=settings or {}, limiter=_limiter("salesforce"),
        wait_initial=float(current_app.config.get("SALESFORCE_RETRY_WAIT", 0.2)))


def _salesforce_connector(row: Installation, store) -> salesforce.SalesforceConnector:
    return _salesforce(store, row.settings)


def _salesforce_begin(args: dict) -> dict:
    """Which login host (production, sandbox or a My Domain), and the PKCE verifier."""
    c = current_app.config
    if not (c.get("SALESFORCE_CLIENT_ID") and c.get("SALESFORCE_CLIENT_SECRET")):
        raise OAuthFailure("not_configured")
    kind = "sandbox" if args.get("sandbox") in ("1", "true", "yes") else "production"
    my_domain = args.get("my_domain") or None
    production = (c.get("SALESFORCE_LOGIN_URL") or salesforce.PRODUCTION_LOGIN).rstrip("/")
    sandbox = c.get("SALESFORCE_SANDBOX_LOGIN_URL") or (
        salesforce.SANDBOX_LOGIN if production == salesforce.PRODUCTION_LOGIN else production)
    login_url = salesforce.login_base(kind, my_domain, production=production, sandbox=sandbox)
    return {"verifier": new_verifier(), "where": {"base": login_url}, "login_url": login_url,
            "kind": "my_domain" if my_domain else kind}


def _salesforce_exchange(code: str, data: dict) -> TokenSet:
    token = _salesforce_oauth().exchange(code, data["verifier"], base=data["login_url"])
    return salesforce.token_set(token, data["login_url"])


def _salesforce_identify(tokens: TokenSet, data: dict) -> tuple[str, TokenSet, dict]:
    """The org and whether the package is installed in it (else the token is revoked)."""
    login_url, client = data["login_url"], _salesforce_oauth()
    probe = _salesforce(MemoryTokenStore(tokens))
    try:
        found = probe.check_package()
    except NotFound as exc:
        client.revoke(tokens.refresh_token or tokens.access_token,
                      base=tokens.extra["instance_url"])
        raise OAuthFailure("package_missing", exc.detail) from exc
    tokens = probe.store.load()  # refreshed meanwhile, in the rare case the first token died
    settings = {"instance_url": tokens.extra["instance_url"], "org_id": tokens.extra["org_id"],
                "user_id": tokens.extra["user_id"], "login_url": login_url,
                "login_kind": data.get("kind", "production"), **found}
    return tokens.extra["org_id"], tokens, settings


SALESFORCE = Provider(
    name="salesforce", label="Salesforce", connector=_salesforce_connector,
    oauth=_salesforce_oauth, begin=_salesforce_begin, exchange=_salesforce_exchange,
    identify=_salesforce_identify,
    pull_every=poll_interval, rate=ratelimit.SALESFORCE, person=_salesforce_person,
    login_oauth=_salesforce_login_oauth,
    record_url=lambda row, deal_id: (f"{(row.settings or {}).get('instance_url', '').rstrip('/')}"
                                     f"/lightning/r/Opportunity/{deal_id}/view"
                                     if (row.settings or {}).get("instance_url") else None))


def disconnect(s: Session, row: Installation) -> bool:
    """Revoke the installation's token at the CRM, where the CRM has a revoke endpoint
    (Salesforce; HubSpot's app is removed from the portal by uninstalling it there), forget
    the tokens and mark it uninstalled. True when the CRM confirmed the revocation."""
    tokens = installations.tokens_of(row)
    revoked = False
    if tokens is not None:
        revoked = get(row.provider).oauth().revoke(
            tokens.refresh_token or tokens.access_token,
            base=tokens.extra.get("instance_url") or salesforce.PRODUCTION_LOGIN)
    installations.uninstall(s, row, "disconnected by an admin")
    return revoked


def init_app(app: Flask) -> None:
    """The registrations: one line per CRM."""
    register(app, HUBSPOT)
    register(app, SALESFORCE)
