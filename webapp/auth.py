"""Per-tenant API keys. Only a SHA-256 hash of a key is stored.

A key is 256 bits of randomness, so a fast hash is enough (no password
stretching needed) and lookup by hash is a single indexed query.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps

from flask import current_app, g, redirect, request, url_for
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import clock
from .db import session
from .errors import ProblemError, Unauthorized
from .models import ApiKey, Tenant

KEY_PREFIX = "mp_"


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    actor: str
    key_id: str | None = None  # the API key that authenticated (editor sessions remember it)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def ensure_tenant(s: Session, name: str) -> Tenant:
    tenant = s.scalars(select(Tenant).where(Tenant.name == name)).one_or_none()
    if tenant is None:
        tenant = Tenant(name=name)
        s.add(tenant)
        s.flush()
    return tenant


def create_key(s: Session, tenant: Tenant, label: str = "") -> str:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    s.add(ApiKey(tenant_id=tenant.id, prefix=key[:10], key_hash=hash_key(key), label=label))
    s.flush()
    return key


def authenticate(header: str | None) -> Principal:
    if not header or not header.startswith("Bearer "):
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    key = header[len("Bearer "):].strip()
    row = session().scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).one_or_none()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("This API key is not valid.")
    g.api_key_last_used = row.last_used_at  # for _mark_used once the request has succeeded
    return Principal(tenant_id=row.tenant_id, actor=f"api:{row.label or row.prefix}", key_id=row.id)


LAST_USED_EVERY = timedelta(minutes=1)  # coarser than this is enough for "last used"


def _mark_used(key_id: str, last_used) -> None:
    """Record the key's use, at most once a minute, after a request that succeeded (its work is
    committed already): a failed request changes nothing, not even this."""
    now = clock.now()
    if last_used is not None and now - clock.aware(last_used) < LAST_USED_EVERY:
        return
    s = session()
    s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
    s.commit()


def api_key_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        g.principal = authenticate(request.headers.get("Authorization"))
        from .web import limit_tenant  # web imports the domain; auth is imported by it

        limit_tenant(g.principal.tenant_id)
        response = current_app.make_response(view(*args, **kwargs))
        if response.status_code < 400:
            _mark_used(g.principal.key_id, g.api_key_last_used)
        return response

    return wrapper


# ---- people: sign-in sessions (webapp/users.py) ------------------------------------------


class Forbidden(ProblemError):
    status, slug, title = 403, "forbidden", "Not allowed"


def safe_next(target: str | None, default: str = "/app") -> str:
    """A local path to go back to after sign-in; anything else (another site, `//evil`,
    a backslash trick) is replaced by `default`, so /login is no open redirect."""
    if (not target or not target.startswith("/") or target.startswith(("//", "/\\"))
            or any(c in target for c in "\\\r\n\t") or len(target) > 500):
        return default
    return target


def _is_api() -> bool:
    return request.path.startswith("/api/") or not request.accept_mimetypes.accept_html


def login_required(view):
    """Anonymous people go to /login?next=<this page>; API clients get a 401 problem.
    Sets g.user."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        from .users import current_user

        user = current_user()
        if user is None:
            if _is_api():
                raise Unauthorized("Sign in first.")
            target = request.full_path if request.query_string else request.path
            return redirect(url_for("account.login", next=safe_next(target)))
        g.user = user
        return view(*args, **kwargs)

    return wrapper


def admin_required(view):
    """Like login_required, and then only admins: others get a friendly 403 page (or a 403
    problem from the API)."""
    @wraps(view)
    def check(*args, **kwargs):
        if g.user.role != "admin":
            raise Forbidden("Only an admin of your team can open this page. Ask an admin to "
                            "change your role if you need it.")
        return view(*args, **kwargs)

    return login_required(check)


def revoke_key(s: Session, tenant_id: str, key_id: str) -> ApiKey:
    """Revoke an API key of the tenant, and end the editor sessions its links opened
    (issue 10, F8). Sessions also check their key on every request, so a key revoked
    any other way ends them too. The caller commits."""
    from .clock import now
    from .domain_errors import NotFound
    from .users import revoke_sessions

    row = s.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id,
                                         ApiKey.id == key_id)).one_or_none()
    if row is None:
        raise NotFound("No API key with this id.")
    if row.revoked_at is None:
        row.revoked_at = now()
    revoke_sessions(s, tenant_id=tenant_id, api_key_id=row.id)
    return row
