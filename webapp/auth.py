"""Per-tenant API keys. Only a SHA-256 hash of a key is stored.

A key is 256 bits of randomness, so a fast hash is enough (no password
stretching needed) and lookup by hash is a single indexed query.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import wraps

from flask import g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import session
from .errors import Unauthorized
from .models import ApiKey, Tenant

KEY_PREFIX = "mp_"


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    actor: str


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
    return Principal(tenant_id=row.tenant_id, actor=f"api:{row.label or row.prefix}")


def api_key_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        g.principal = authenticate(request.headers.get("Authorization"))
        from .web import limit_tenant  # web imports the domain; auth is imported by it

        limit_tenant(g.principal.tenant_id)
        return view(*args, **kwargs)

    return wrapper
