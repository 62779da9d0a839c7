"""People and their sessions (issue 12): users by CRM identity, roles, server-side sessions.

Users. A person is a row per tenant, keyed by (provider, CRM user id): a HubSpot
user id (one per person across portals) or a Salesforce user id (per org). Roles
are `admin` (the person who installed the app, and whoever an admin promotes) and
`rep` (everyone else, created on first sight). A tenant always keeps one admin.

Sessions. The cookie holds 256 random bits; the `sessions` table holds only the
SHA-256 of it (like API keys: the value is random, so a fast hash suffices), so a
copy of the database opens nothing. A session can be revoked (sign out, sign out
everywhere, a revoked API key, a role change) and expires: sign-in sessions after
12 hours, editor sessions (scoped to one plan, opened from a CRM card or an API
editor link) after 8. `last_seen_at` is written at most once a minute.

Cookies (`session_cookie_kwargs`): always HttpOnly; `Secure` when PUBLIC_BASE_URL is
https. Pages that must work inside a CRM iframe (the editor in HubSpot's modal)
get `SameSite=None; Secure; Partitioned` over https (a third-party context needs
it); everything else is `SameSite=Lax`, which also keeps the sign-in cookie off
cross-site POSTs.

CSRF. A form carries `csrf_token()`, an HMAC (SECRET_KEY) of the session's id and a
scope; `csrf_ok(token)` checks it against the current session, so a token is
worthless in another browser and dies with its session.

The Flask-facing part (current_user, sign_in, sign_out) reads `request`; the
domain functions (upsert_user, set_role, revoke_sessions, …) take a SQLAlchemy
session and leave the commit to the caller, like plans.py.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from flask import Response, current_app, g, request
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from . import clock
from .db import database
from .db import session as db_session
from .domain_errors import Conflict, Invalid, NotFound
from .models import ROLES, ApiKey, Plan, UsedLink, User, UserSession

COOKIE = "mp_session"  # the sign-in session, path /
EDITOR_COOKIE = "mp_editor"  # editor sessions, one per plan, path /editor/plans/<id>
SIGN_IN_TTL = timedelta(hours=12)
EDITOR_TTL = timedelta(hours=8)
SEEN_EVERY = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---- users (domain) -------------------------------------------------------------------


def upsert_user(s: Session, tenant_id: str, provider: str, crm_user_id: str, *,
                email: str = "", name: str = "", role: str | None = None) -> User:
    """The tenant's user with this CRM identity, created (as `rep` unless `role`) on first
    sight; email and name are refreshed from what the CRM says now. `role` given here only
    applies to a new user or promotes (the installer becomes admin); it never demotes."""
    crm_user_id = str(crm_user_id).strip()[:64]
    if not crm_user_id:
        raise Invalid("crm_user_id", "the CRM did not say who you are")
    if role is not None and role not in ROLES:
        raise Invalid("role", f"must be one of {', '.join(ROLES)}")
    user = s.scalars(select(User).where(
        User.tenant_id == tenant_id, User.provider == provider,
        User.crm_user_id == crm_user_id)).one_or_none()
    if user is None:
        user = User(tenant_id=tenant_id, provider=provider, crm_user_id=crm_user_id,
                    role=role or "rep", email="", name="")
        s.add(user)
    elif role == "admin":
        user.role = "admin"
    if email:
        user.email = email.strip()[:254]
    if name:
        user.name = name.strip()[:200]
    s.flush()
    return user


def get_user(s: Session, tenant_id: str, user_id: str) -> User:
    user = s.scalars(select(User).where(User.tenant_id == tenant_id, User.id == user_id)).one_or_none()
    if user is None:
        raise NotFound("No user with this id.")
    return user


def list_users(s: Session, tenant_id: str) -> list[User]:
    return list(s.scalars(select(User).where(User.tenant_id == tenant_id)
                          .order_by(User.role, User.name, User.email, User.id)))


def set_role(s: Session, tenant_id: str, user_id: str, role: str) -> User:
    """An admin changes someone's role. The last admin cannot be demoted (nobody could
    promote anyone again); a demoted admin's sessions end, so the change takes effect now."""
    if role not in ROLES:
        raise Invalid("role", f"must be one of {', '.join(ROLES)}")
    user = get_user(s, tenant_id, user_id)
    if user.role == role:
        return user
    if user.role == "admin":
        admins = s.scalar(select(func.count()).select_from(User).where(
            User.tenant_id == tenant_id, User.role == "admin"))
        if admins <= 1:
            raise Conflict("This is the only admin; make someone else admin first.")
        revoke_sessions(s, tenant_id=tenant_id, user_id=user.id)
    user.role = role
    s.flush()
    return user


# ---- sessions (domain) ------------------------------------------------------------------


def start_session(s: Session, *, tenant_id: str, actor: str, user: User | None = None,
                  plan_id: str | None = None, api_key_id: str | None = None,
                  ttl: timedelta | None = None) -> tuple[UserSession, str]:
    """A new session row; returns (row, token). Only the token's hash is stored."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    ttl = ttl or (EDITOR_TTL if plan_id else SIGN_IN_TTL)
    row = UserSession(token_hash=hash_token(token), tenant_id=tenant_id,
                      user_id=user.id if user else None, actor=actor[:200], plan_id=plan_id,
                      api_key_id=api_key_id, created_at=now, last_seen_at=now,
                      expires_at=now + ttl)
    s.add(row)
    s.flush()
    return row, token


def find_session(s: Session, token: str | None) -> UserSession | None:
    """The live session of a cookie value, or None (unknown, revoked, expired, or minted by
    an API key revoked since). One query: the key's state comes in the same row."""
    if not token or len(token) > 100:
        return None
    found = s.execute(
        select(UserSession, ApiKey.revoked_at)
        .outerjoin(ApiKey, ApiKey.id == UserSession.api_key_id)
        .where(UserSession.token_hash == hash_token(token))).one_or_none()
    if found is None:
        return None
    row, key_revoked_at = found
    if row.revoked_at is not None or row.expires_at <= clock.now() or key_revoked_at is not None:
        return None
    return row


class LinkAlreadyUsed(Exception):
    """An editor link opened a second time (links are single-use)."""


def open_editor_link(s: Session, link_token: str, data: dict) -> tuple[UserSession, str]:
    """Spend a verified editor link (sharing.load_editor_link's `data`) on a new editor
    session for its plan; returns (session row, cookie token). The caller commits; a
    second opening of the same link fails at that commit (the `used_links` primary key),
    so two browsers racing with one link cannot both win.

    Raises LinkAlreadyUsed when the link was opened before, NotFound when the API key
    that minted it has been revoked or the person is gone."""
    link_hash = hash_token(link_token)
    if s.get(UsedLink, link_hash) is not None:
        raise LinkAlreadyUsed()
    key_id = data.get("k")
    if key_id is not None:
        key = s.get(ApiKey, key_id)
        if key is None or key.revoked_at is not None or key.tenant_id != data["t"]:
            raise NotFound("The API key that made this link has been revoked.")
    user = None
    if data.get("u"):
        user = s.scalars(select(User).where(User.tenant_id == data["t"],
                                            User.id == data["u"])).one_or_none()
        if user is None:
            raise NotFound("The person this link was made for is no longer on the team.")
    now = clock.now()
    s.add(UsedLink(token_hash=link_hash, used_at=now,
                   expires_at=now + timedelta(minutes=15)))
    return start_session(s, tenant_id=data["t"], actor=actor_of(user) if user else data["a"],
                         user=user, plan_id=data["p"], api_key_id=key_id)


def claim_plan(s: Session, plan: Plan, user: User | None, actor: str) -> None:
    """Record who made a plan (and owns it, until the CRM says who owns the deal). Not a
    change of the plan's content: no new version, no activity, no push."""
    values = {"created_by": actor[:200], "owner_user_id": user.id if user else None}
    s.flush()
    s.execute(update(Plan).where(Plan.id == plan.id, Plan.tenant_id == plan.tenant_id)
              .values(**values).execution_options(synchronize_session=False))
    for name, value in values.items():
        set_committed_value(plan, name, value)


def may_edit(s: Session, user: User | None, plan_id: str) -> bool:
    """A signed-in user edits the plans they own; an admin every plan of the tenant.
    Another tenant's plan is never theirs (the query filters by the user's tenant)."""
    if user is None:
        return False
    owner = s.execute(select(Plan.owner_user_id).where(
        Plan.tenant_id == user.tenant_id, Plan.id == plan_id)).one_or_none()
    return owner is not None and (user.role == "admin" or owner[0] == user.id)


def editor_session(s: Session, token: str | None, plan_id: str) -> UserSession | None:
    """The live editor session of a cookie value for this plan, or None."""
    row = find_session(s, token)
    return row if row is not None and row.plan_id == plan_id else None


def revoke_sessions(s: Session, *, tenant_id: str, user_id: str | None = None,
                    plan_id: str | None = None, api_key_id: str | None = None,
                    session_id: str | None = None) -> int:
    """End every live session of the tenant matching all the given filters; returns how many.
    At least one filter is required (ending a whole tenant's sessions is not a thing)."""
    filters = {"user_id": user_id, "plan_id": plan_id, "api_key_id": api_key_id, "id": session_id}
    given = [getattr(UserSession, k) == v for k, v in filters.items() if v is not None]
    if not given:
        raise ValueError("revoke_sessions needs a user, plan, API key or session")
    result = s.execute(update(UserSession).where(
        UserSession.tenant_id == tenant_id, UserSession.revoked_at.is_(None), *given
    ).values(revoked_at=clock.now()).execution_options(synchronize_session="fetch"))
    return result.rowcount or 0


def touch_session(row: UserSession, now: datetime | None = None) -> None:
    """Record activity, at most once a minute (a write per request would be waste).

    Written in its own short transaction, so that a GET needs no commit and a refused
    write (rolled back) still counts as being seen."""
    now = now or clock.now()
    if now - row.last_seen_at < SEEN_EVERY:
        return
    with database().engine.begin() as conn:
        conn.execute(update(UserSession).where(UserSession.id == row.id).values(last_seen_at=now))
        if row.user_id is not None:
            conn.execute(update(User).where(User.id == row.user_id).values(last_seen_at=now))
    set_committed_value(row, "last_seen_at", now)  # this request's copy, without a flush


# ---- the request side -------------------------------------------------------------------


def _https() -> bool:
    return current_app.config.get("PUBLIC_BASE_URL", "").startswith("https://")


def session_cookie_kwargs(*, embedded: bool = False, path: str = "/",
                          max_age: timedelta = SIGN_IN_TTL) -> dict:
    """Cookie attributes: HttpOnly always; Secure over https; SameSite=None (+Partitioned)
    only for pages that live in a CRM iframe, and only over https (browsers refuse
    SameSite=None without Secure); Lax otherwise."""
    kwargs = {"httponly": True, "path": path, "max_age": int(max_age.total_seconds())}
    if _https():
        kwargs["secure"] = True
        kwargs["samesite"] = "None" if embedded else "Lax"
        if embedded:
            kwargs["partitioned"] = True
    else:
        kwargs["samesite"] = "Lax"
    return kwargs


def current_session() -> UserSession | None:
    """The live sign-in session of this request (cached per request), or None."""
    if "mp_session" not in g:
        row = find_session(db_session(), request.cookies.get(COOKIE))
        if row is not None and (row.plan_id is not None or row.user_id is None):
            row = None  # an editor session's token is never a sign-in
        g.mp_session = row
    return g.mp_session


def current_user() -> User | None:
    """The signed-in user, or None when anonymous. Marks the session as seen."""
    row = current_session()
    if row is None:
        return None
    touch_session(row)
    return row.user


def sign_in(user: User, response: Response, *, embedded: bool = False) -> Response:
    """Start a sign-in session for `user` and set its cookie on `response`. Commits.

    The previous session of this browser, if any, is revoked (no session fixation)."""
    s = db_session()
    old = find_session(s, request.cookies.get(COOKIE))
    if old is not None:
        old.revoked_at = clock.now()
    user.last_seen_at = clock.now()
    _row, token = start_session(s, tenant_id=user.tenant_id, actor=actor_of(user), user=user)
    s.commit()
    g.pop("mp_session", None)
    response.set_cookie(COOKIE, token, **session_cookie_kwargs(embedded=embedded))
    return response


def sign_out(response: Response) -> Response:
    """Revoke this browser's sign-in session and clear its cookie. Commits."""
    s = db_session()
    row = find_session(s, request.cookies.get(COOKIE))
    if row is not None:
        row.revoked_at = clock.now()
        s.commit()
    g.pop("mp_session", None)
    kwargs = session_cookie_kwargs()
    response.delete_cookie(COOKIE, path="/", secure=kwargs.get("secure", False),
                           httponly=True, samesite=kwargs["samesite"])
    return response


def actor_of(user: User) -> str:
    """What the activity log and the buyer see: the person's name (not an API key label)."""
    return user.display_name[:200]


# ---- CSRF bound to the session ------------------------------------------------------------


def csrf_for(session_id: str, scope: str = "") -> str:
    message = f"session csrf|{scope}|{session_id}".encode()
    return hmac.new(current_app.config["SECRET_KEY"].encode(), message, hashlib.sha256).hexdigest()


def csrf_token(scope: str = "") -> str:
    """The CSRF token of the current sign-in session ('' when anonymous), for forms."""
    row = current_session()
    return csrf_for(row.id, scope) if row is not None else ""


def csrf_ok(token: str | None, scope: str = "") -> bool:
    row = current_session()
    if row is None or not token:
        return False
    return hmac.compare_digest(csrf_for(row.id, scope), token)


def init_app(app) -> None:
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["current_user"] = current_user
