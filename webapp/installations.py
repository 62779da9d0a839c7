"""Installations (connected CRM accounts), their tokens, and OAuth state.

- Tokens are stored encrypted (MultiFernet over TOKEN_ENCRYPTION_KEYS; the
  first key encrypts, every key decrypts, so keys can be rotated with
  `mutualplan rotate-token-keys`). Without configured keys (development), a
  key is derived from SECRET_KEY and a warning is logged once.
- Refresh happens under a per-installation lock with a re-read
  (`InstallationTokenStore`), in a session of its own, so two workers never
  both spend a refresh token and the caller's transaction is never committed.
- OAuth `state` is single-use, expires in 10 minutes, and is bound to the
  browser that started the flow by a random cookie value.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
from datetime import datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from connector.base import TokenSet, still_current
from connector.errors import NeedsReauth

from . import clock, outbox
from .auth import create_key, ensure_tenant
from .db import database
from .models import Installation, OAuthState

log = logging.getLogger("mutualplan.installations")
STATE_TTL = timedelta(minutes=10)
BROWSER_COOKIE = "mp_oauth_browser"


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
    """Re-encrypt every stored token with the current (first) key; returns the installations
    done. Outgoing webhooks' signing secrets (webapp/webhooks.py) are re-encrypted too."""
    from .models import WebhookEndpoint

    count = 0
    for row in s.scalars(select(Installation).where(Installation.tokens.is_not(None))):
        row.tokens = cipher().rotate(row.tokens.encode()).decode()
        count += 1
    for endpoint in s.scalars(select(WebhookEndpoint)):
        endpoint.secret = cipher().rotate(endpoint.secret.encode()).decode()
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
    row.updated_at = clock.now()
    return row, api_key


def store_tokens(row: Installation, tokens: TokenSet) -> None:
    row.tokens = encrypt_tokens(tokens)
    row.token_expires_at = tokens.expires_at
    row.updated_at = clock.now()


def tokens_of(row: Installation) -> TokenSet | None:
    return decrypt_tokens(row.tokens)


# ---- tokens: the one TokenStore on the database ------------------------------------------

_refresh_locks: dict[str, threading.Lock] = {}
_refresh_guard = threading.Lock()


def _process_lock(installation_id: str) -> threading.Lock:
    with _refresh_guard:
        return _refresh_locks.setdefault(installation_id, threading.Lock())


def _holds_sqlite_write_lock(s: Session) -> bool:
    """Has this (SQLite) session written in its open transaction? SQLite has one writer: a
    second connection's write would wait for it, and it waits for us (a deadlock)."""
    if s.get_transaction() is None:
        return False
    dbapi = s.connection().connection.dbapi_connection
    return bool(getattr(dbapi, "in_transaction", False))


class InstallationTokenStore:
    """connector.base.TokenStore on the installations row (tokens encrypted).

    A refresh never touches the caller's session: it runs under a process-local lock plus,
    on PostgreSQL, SELECT … FOR UPDATE of the row in a session of its own, re-reads the
    tokens, calls the refresher and commits the new tokens in that session, so a second
    worker waits and then uses them, and the caller's half-done transaction is neither
    committed nor rolled back. On SQLite (embedded, one process) the process-local lock is
    the lock; when the caller's session already holds SQLite's only write lock, the new
    tokens are saved by a separate session the moment the caller's transaction ends
    (commit or rollback) and are served from memory until then, so nothing deadlocks.
    """

    _pending: dict[str, TokenSet] = {}  # SQLite only: refreshed, saved when the caller ends

    def __init__(self, installation_id: str, app=None):
        self.installation_id = installation_id
        self.app = app or current_app._get_current_object()

    def load(self) -> TokenSet | None:
        pending = self._pending.get(self.installation_id)
        if pending is not None:
            return pending
        with self._own_session() as own:
            row = own.get(Installation, self.installation_id)
            return tokens_of(row) if row is not None and row.status != "uninstalled" else None

    def _own_session(self) -> Session:
        return database(self.app).Session.session_factory()

    def refresh(self, stale, refresher):
        caller = database(self.app).Session()
        with _process_lock(self.installation_id), self._own_session() as own:
            query = select(Installation).where(Installation.id == self.installation_id)
            postgres = own.get_bind().dialect.name == "postgresql"
            row = own.scalars(query.with_for_update() if postgres else query).one_or_none()
            current = self._pending.get(self.installation_id) or (
                tokens_of(row) if row is not None and row.status != "uninstalled" else None)
            if current is None:
                failure = NeedsReauth("no tokens stored for this installation: reconnect it")
            elif not still_current(current, stale):
                return current  # another worker refreshed while we waited for the lock
            else:
                try:
                    fresh = refresher(current)
                except NeedsReauth as exc:
                    failure = exc
                else:
                    if not postgres and _holds_sqlite_write_lock(caller):
                        own.rollback()
                        self._save_after(caller, fresh)
                    else:
                        store_tokens(row, fresh)
                        own.commit()
                    return fresh
            own.rollback()
        self._needs_reconnect(caller, failure)
        raise failure

    def _save_after(self, caller: Session, fresh: TokenSet) -> None:
        self._pending[self.installation_id] = fresh

        def save(_session):
            tokens = self._pending.pop(self.installation_id, None)
            if tokens is None:
                return
            with self._own_session() as own:
                row = own.get(Installation, self.installation_id)
                if row is not None:
                    store_tokens(row, tokens)
                    own.commit()

        event.listen(caller, "after_commit", save, once=True)
        event.listen(caller, "after_rollback", save, once=True)
        event.listen(caller, "after_soft_rollback", lambda s, _t: save(s), once=True)

    def _needs_reconnect(self, caller: Session, failure: NeedsReauth) -> None:
        log.warning("installation %s needs reconnecting: %s", self.installation_id, failure.detail)
        if not _holds_sqlite_write_lock(caller) or caller.get_bind().dialect.name == "postgresql":
            with self._own_session() as own:
                row = own.get(Installation, self.installation_id)
                if row is not None and row.status != "uninstalled":
                    mark_needs_reconnect(own, row, failure.detail)
                    own.commit()
        # else: the caller rolls back and parks the installation itself (sync does, on NeedsReauth)


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
                     data=data or {}, expires_at=clock.now() + STATE_TTL))
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
    if clock.aware(row.expires_at) < clock.now():
        raise StateError("expired_state")
    if not browser or not secrets.compare_digest(row.browser_hash, _hash(browser)):
        raise StateError("invalid_browser")
    row.used_at = clock.now()
    s.flush()
    return dict(row.data or {})
