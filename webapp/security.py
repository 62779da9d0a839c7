"""Response security headers on every page and API answer, and the trusted-proxy setting.

Headers (DESIGN §7), set by one `after_request` for the whole app. A blueprint
that sets its own (the buyer page, the editor) keeps them: this hook only fills
in what is missing, so it never weakens a stricter policy.

- `Content-Security-Policy`: nothing but our own origin; no inline scripts anywhere.
  The few server-rendered pages with an inline `<style>` block (home, the OAuth
  result pages, error pages) mark it with a per-response nonce (`csp_nonce()` in
  templates). JSON answers get `default-src 'none'`.
- `frame-ancestors 'none'` everywhere except the editor, which HubSpot opens in
  its iframe modal (and the Salesforce component embeds); blueprints/editor.py
  sets that one.
- `X-Content-Type-Options: nosniff`, `Referrer-Policy` (`no-referrer` by default;
  the OAuth result pages show an API key), `X-Frame-Options: DENY` for old
  browsers wherever frame-ancestors is 'none'.
- `Strict-Transport-Security` when the app is served over https: `PUBLIC_BASE_URL`
  starts with https, or the request itself is secure (after ProxyFix).

Control characters (issue 10, F7): a path parameter, query parameter or form field
carrying NUL or another C0 control (tab, newline and carriage return excepted) is
refused before any view runs; JSON bodies are checked by webapp/schemas.py.

Replays (issue 10, F9): a signed HubSpot card request that changes something is accepted
once. `ReplayGuard` remembers sha256(signature|timestamp) for as long as the signature could
still pass the verifier's window: in Redis (SET NX with expiry) when REDIS_URL is set, else in
the `used_signatures` table, in the request's own transaction, so a request that fails leaves
no mark and HubSpot's retry of a 5xx goes through. A second use answers 409 and runs nothing.

Trusted proxies: `TRUSTED_PROXIES` (default 0) is how many proxies stand in front
of the app. With N > 0, werkzeug's ProxyFix takes the client address, scheme and
host from the last N entries of X-Forwarded-For / -Proto / -Host; with 0 those
headers are ignored, because anyone can send them.
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import timedelta

from flask import Flask, Response, abort, current_app, g, request
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from . import clock

log = logging.getLogger("mutualplan.security")

HSTS = "max-age=31536000; includeSubDomains"
PAGE_CSP = ("default-src 'none'; style-src 'self' 'nonce-{nonce}'; script-src 'self'; "
            "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def csp_nonce() -> str:
    """A nonce for this response's inline `<style>` blocks (never for scripts)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


# C0 controls but tab, newline and carriage return, and DEL: never part of an id, a query
# parameter or a form field. PostgreSQL refuses NUL in text outright (a 500 deep in a query).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _has_control(values) -> bool:
    return any(isinstance(v, str) and _CONTROL.search(v) for v in values)


def reject_control_characters():
    """404 for a path parameter with control characters (no id has them), 400 for a query
    parameter or form field with them, before any view reads them."""
    if request.view_args and _has_control(request.view_args.values()):
        abort(404)
    if _has_control(request.args.keys()) or _has_control(request.args.values()):
        abort(400, "Query parameters must not contain control characters.")
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            request.get_data(cache=True)  # keep the raw body for signature checks after parsing
        except RequestEntityTooLarge:
            # Nothing was read: a view that takes larger bodies raises its limit and calls
            # check_form itself (the editor's import); any other view answers the 413.
            return
        check_form()


def check_form() -> None:
    if _has_control(request.form.keys()) or _has_control(request.form.values()):
        abort(400, "Form fields must not contain control characters.")


def _https(app: Flask) -> bool:
    return app.config.get("PUBLIC_BASE_URL", "").startswith("https://") or request.is_secure


def init_app(app: Flask) -> None:
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.extensions["mutualplan.replay"] = ReplayGuard(app.config.get("REDIS_URL"))
    app.before_request(reject_control_characters)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        h = response.headers
        if "Content-Security-Policy" not in h:
            html = response.mimetype == "text/html"
            h["Content-Security-Policy"] = PAGE_CSP.format(nonce=csp_nonce()) if html else API_CSP
        if "frame-ancestors 'none'" in h["Content-Security-Policy"]:
            h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        if _https(app):
            h.setdefault("Strict-Transport-Security", HSTS)
        return response


def apply_proxy_fix(app: Flask) -> None:
    """Trust X-Forwarded-For/-Proto/-Host from exactly TRUSTED_PROXIES proxies (0: none)."""
    count = int(app.config.get("TRUSTED_PROXIES") or 0)
    if count > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)


# ---- replays --------------------------------------------------------------------------------


class ReplayGuard:
    """Accept a signed request once: `claim` is True the first time a (signature, timestamp)
    is seen within `ttl` seconds. With Redis, `release` forgets a claim whose request failed;
    in the database the claim is a row in the caller's transaction, gone with its rollback."""

    PREFIX = "mp:replay:"

    def __init__(self, redis_url: str | None):
        self._redis = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=0.5)
            self._redis_errors = (redis.RedisError, OSError)

    @staticmethod
    def key(signature: str, timestamp: str) -> str:
        return hashlib.sha256(f"{signature.strip()}|{timestamp}".encode()).hexdigest()

    def claim(self, s: Session, key: str, ttl: float) -> bool:
        if self._redis is not None:
            try:
                return bool(self._redis.set(self.PREFIX + key, 1, nx=True, ex=max(1, int(ttl) + 1)))
            except self._redis_errors as exc:  # Redis down: the database still remembers
                log.warning("replay guard: Redis unavailable (%s), using the database",
                            type(exc).__name__)
        return self._claim_in_db(s, key, ttl)

    def release(self, key: str) -> None:
        if self._redis is not None:
            try:
                self._redis.delete(self.PREFIX + key)
            except self._redis_errors as exc:
                log.warning("replay guard: could not release a claim (%s)", type(exc).__name__)

    @staticmethod
    def _claim_in_db(s: Session, key: str, ttl: float) -> bool:
        from .models import UsedSignature

        now = clock.now()
        table = UsedSignature.__table__
        s.execute(delete(table).where(table.c.expires_at < now))
        # ON CONFLICT DO NOTHING: on PostgreSQL a concurrent claim of the same key waits for
        # the first transaction and then inserts nothing (or inserts, if the first rolled back).
        insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
        row = {"key": key, "expires_at": now + timedelta(seconds=ttl)}
        done = s.execute(insert(table).values(row).on_conflict_do_nothing(index_elements=["key"])
                         .returning(table.c.key)).first()
        return done is not None


def replay_guard() -> ReplayGuard:
    return current_app.extensions["mutualplan.replay"]
