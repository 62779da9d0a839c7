"""Installations (connected CRM accounts), their tokens, and OAuth state.

- Tokens are stored encrypted (MultiFernet over TOKEN_ENCRYPTION_KEYS; the
  first key encrypts, every key decrypts, so keys can be rotated with
  `mutualplan rotate-token-keys`). Without configured keys (development), a
  key is derived from SECRET_KEY and a warning is logged once.
- Refresh happens under a per-installation row lock with a re-read
  (`locked`), so two workers never both spend a refresh token.
- OAuth `state` is single-use, expires in 10 minutes, and is bound to the
  browser that started the flow by a random cookie value.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.base import TokenSet

from . import outbox
from .auth import create_key, ensure_tenant
from .db import database
from .models import Installation, OAuthState

log = logging.getLogger("mutualplan.installations")
STATE_TTL = timedelta(minutes=10)
BROWSER_COOKIE = "mp_oauth_browser"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ---- encryption -----------------------------------------------------------------


def cipher(app=None) -> MultiFernet:
    app = app or current_app
    cached = app.extensions.get("mutualplan.cipher")
    if cached:
        return cached
    keys = [k.strip() for k in (app.config.get("TOKEN_ENCRYPTION_KEYS") or "").split(",") if k.strip()]
    if not keys:
        log.warning("TOKEN_ENCRYPTION_KEYS is not set: deriving a development key from SECRET_KEY")
        digest = hashlib.sha256(("token-key:" + app.config["SECRET_KEY"]).encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    value = MultiFernet([Fernet(k) for k in keys])
    app.extensions["mutualplan.cipher"] = value
    return value


def encrypt_tokens(tokens: TokenSet) -> str:
    payload = {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
               "expires_at": tokens.expires_at.isoformat() if tokens.expires_at else None,
               "extra": tokens.extra}
    return cipher().encrypt(json.dumps(payload).encode()).decode()


def decrypt_tokens(blob: str | None) -> TokenSet | None:
    if not blob:
        return None
    try:
        payload = json.loads(cipher().decrypt(blob.encode()))
    except InvalidToken:
        log.error("stored tokens cannot be decrypted with the configured keys")
        return None
    expires = payload.get("expires_at")
    return TokenSet(payload["access_token"], payload.get("refresh_token"),
                    datetime.fromisoformat(expires) if expires else None, payload.get("extra") or {})


def rotate_keys(s: Session) -> int:
    """Re-encrypt every stored token with the current (first) key."""
    count = 0
    for row in s.scalars(select(Installation).where(Installation.tokens.is_not(None))):
        row.tokens = cipher().rotate(row.tokens.encode()).decode()
        count += 1
    s.commit()
    return count


# ---- installations ----------------------------------------------------------------


def find(s: Session, provider: str, account_id: str) -> Installation | None:
    return s.scalars(select(Installation).where(Installation.provider == provider,
                                                Installation.account_id == account_id)).one_or_none()


def save(s: Session, provider: str, account_id: str, tokens: TokenSet, settings: dict | None = None) -> tuple[Installation, str | None]:
    """Create or reactivate an installation; returns it and, the first time, a new API key.

    Each CRM account is its own tenant ("hubspot:<portal>", "salesforce:<org>").
    A reinstall keeps the tenant and its plans, stores the new tokens and
    puts parked outbox rows back in the queue.
    """
    row = find(s, provider, account_id)
    api_key = None
    if row is None:
        tenant = ensure_tenant(s, f"{provider}:{account_id}")
        row = Installation(tenant_id=tenant.id, provider=provider, account_id=account_id, settings={})
        s.add(row)
        s.flush()
        api_key = create_key(s, tenant, f"{provider} install")
    row.settings = {**(row.settings or {}), **(settings or {})}
    store_tokens(row, tokens)
    if row.status != "active":
        outbox.unpark_installation(s, row)
    row.updated_at = utcnow()
    return row, api_key


def store_tokens(row: Installation, tokens: TokenSet) -> None:
    row.tokens = encrypt_tokens(tokens)
    row.token_expires_at = tokens.expires_at
    row.updated_at = utcnow()


def tokens_of(row: Installation) -> TokenSet | None:
    return decrypt_tokens(row.tokens)


@contextmanager
def locked(s: Session, installation_id: str):
    """The installation row, locked and re-read, in a transaction committed on exit.

    PostgreSQL: SELECT … FOR UPDATE in a separate session, so a second worker
    waits and then sees the tokens the first one saved, and the caller's
    transaction (a push half done) is not committed by a token refresh.
    SQLite serialises writers anyway; a second connection would wait on the
    caller's own write lock, so the caller's session is used there.
    """
    query = select(Installation).where(Installation.id == installation_id).execution_options(populate_existing=True)
    postgres = s.get_bind().dialect.name == "postgresql"
    own = database().Session.session_factory() if postgres else s
    if postgres:
        query = query.with_for_update()
    try:
        row = own.scalars(query).one()
        yield row
        own.commit()
    except BaseException:
        own.rollback()
        raise
    finally:
        if postgres:
            own.close()


def mark_needs_reconnect(s: Session, row: Installation, reason: str) -> None:
    outbox.park_installation(s, row, reason)


def uninstall(s: Session, row: Installation, reason: str = "uninstalled") -> None:
    outbox.park_installation(s, row, reason)
    row.status, row.tokens = "uninstalled", None


# ---- OAuth state -----------------------------------------------------------------


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def issue_state(s: Session, provider: str, browser: str, data: dict | None = None) -> str:
    """A new state for `browser` (the random value of its cookie)."""
    state = secrets.token_urlsafe(32)
    s.add(OAuthState(state_hash=_hash(state), provider=provider, browser_hash=_hash(browser),
                     data=data or {}, expires_at=utcnow() + STATE_TTL))
    s.flush()
    return state


class StateError(Exception):
    """Why a callback's state was refused: invalid_state, invalid_browser, expired_state, used_state."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def consume_state(s: Session, provider: str, state: str | None, browser: str | None) -> dict:
    """Check and use up a state; returns its data or raises StateError."""
    if not state:
        raise StateError("invalid_state")
    query = select(OAuthState).where(OAuthState.state_hash == _hash(state), OAuthState.provider == provider)
    if s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    row = s.scalars(query).one_or_none()
    if row is None:
        raise StateError("invalid_state")
    if row.used_at is not None:
        raise StateError("used_state")
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=timezone.utc)
    if expires < utcnow():
        raise StateError("expired_state")
    if not browser or not secrets.compare_digest(row.browser_hash, _hash(browser)):
        raise StateError("invalid_browser")
    row.used_at = utcnow()
    s.flush()
    return dict(row.data or {})
