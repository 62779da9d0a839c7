"""Who may open a buyer link: its access mode, and e-mail verification (issue 13, item 5).

A share link has one of four modes:

- ``open``: anyone with the link reads the plan; they say who they are before acting.
- ``identify``: the plan shows only after the visitor gives a name and an e-mail address.
- ``domain``: the same, and the address must be at one of the link's allowed domains. The
  address is typed, not proven: this keeps a forwarded link from opening by accident; use
  ``verified`` against someone determined.
- ``verified``: a six-digit code is e-mailed to the address (through the notifications
  outbox); entering it starts a 30-day session on that device for that link. The allowed
  domains, when set, limit who can ask for a code.

Codes: only an HMAC of each code is stored; a code lives 10 minutes and allows 5 attempts;
at most 3 codes per link and address per 10 minutes. Sessions: the cookie holds a random
256-bit token, the database its SHA-256, so a copy of the database opens nothing; a rep
sees who verified and when they were last seen.

No Flask here; the blueprint (blueprints/buyer.py) owns cookies and pages, and commits.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import clock, notifications, plans
from .domain_errors import Invalid
from .models import Activity, BuyerAccess, ShareLink, Tenant, new_id

MODES = ("open", "identify", "domain", "verified")
MODE_LABELS = {"open": "Anyone with the link", "identify": "Name and e-mail asked",
               "domain": "E-mail at an allowed domain", "verified": "Verified e-mail (one-time code)"}
CODE_TTL = timedelta(minutes=10)
CODE_ATTEMPTS = 5
CODES_PER_WINDOW = 3  # per link and address per CODE_TTL
SESSION_TTL = timedelta(days=30)
SEEN_EVERY = timedelta(hours=1)  # last_seen_at is written at most this often
MAX_DOMAINS = 20
_DOMAIN = re.compile(r"^(?=.{3,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


# ---- the link's settings -------------------------------------------------------------------


def clean_domains(values) -> list[str]:
    """Lower-case, de-duplicated domain names ("acme.com"; a leading "@" is dropped)."""
    if isinstance(values, str):
        values = re.split(r"[\s,;]+", values)
    out: list[str] = []
    for raw in values or []:
        if not isinstance(raw, str):
            raise Invalid("allowed_domains", "a list of domain names such as acme.com")
        domain = raw.strip().lower().removeprefix("@").rstrip(".")
        if not domain:
            continue
        if not _DOMAIN.match(domain):
            raise Invalid("allowed_domains", f"“{domain[:60]}” is not a domain name such as acme.com")
        if domain not in out:
            out.append(domain)
    if len(out) > MAX_DOMAINS:
        raise Invalid("allowed_domains", f"at most {MAX_DOMAINS} domains")
    return out


def check_mode(mode: str, domains: list[str]) -> None:
    if mode not in MODES:
        raise Invalid("access_mode", "one of " + ", ".join(MODES))
    if mode == "domain" and not domains:
        raise Invalid("allowed_domains", "list at least one domain, such as acme.com")


def set_access(s: Session, link: ShareLink, mode: str, domains, actor: str) -> None:
    """Change who may open the link (the caller commits). Tightening it does not end
    sessions already verified; revoke the link for that."""
    domains = clean_domains(domains)
    check_mode(mode, domains)
    if (link.access_mode, list(link.allowed_domains or [])) == (mode, domains):
        return
    link.access_mode, link.allowed_domains = mode, domains
    plan = plans.get_plan(s, link.tenant_id, link.plan_id, full=False)
    plans.touch(s, plan, actor, "share_link.access", link.id, {"mode": mode, "domains": domains})


def email_allowed(domains: list[str] | None, email: str) -> bool:
    if not domains:
        return True
    host = email.rpartition("@")[2].lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)


# ---- codes -----------------------------------------------------------------------------------


def _code_hash(secret: str, access_id: str, code: str) -> str:
    return hmac.new(secret.encode(), f"buyer access code|{access_id}|{code}".encode(),
                    hashlib.sha256).hexdigest()


def recent_codes(s: Session, link: ShareLink, email: str) -> int:
    return s.scalar(select(func.count()).select_from(BuyerAccess).where(
        BuyerAccess.link_id == link.id, BuyerAccess.email == email,
        BuyerAccess.created_at > clock.now() - CODE_TTL))


def send_code(s: Session, link: ShareLink, name: str, email: str, secret: str) -> BuyerAccess:
    """Make a code for this address and queue its e-mail in the caller's transaction."""
    email = email.strip().lower()
    if link.access_mode != "verified":
        raise Invalid("email", "this link does not use e-mail codes")
    if not email_allowed(link.allowed_domains, email):
        raise Invalid("email", "this plan is shared with addresses at "
                      + ", ".join(link.allowed_domains) + " only")
    if recent_codes(s, link, email) >= CODES_PER_WINDOW:
        raise Invalid("email", "we sent several codes to this address just now; use the newest "
                      "one, or wait 10 minutes and ask again")
    code = f"{secrets.randbelow(10 ** 6):06d}"
    row = BuyerAccess(id=new_id(), tenant_id=link.tenant_id, plan_id=link.plan_id, link_id=link.id,
                      email=email, name=name[:100], attempts=0, created_at=clock.now(),
                      code_expires_at=clock.now() + CODE_TTL)
    row.code_hash = _code_hash(secret, row.id, code)
    s.add(row)
    s.flush()
    tenant = s.get(Tenant, link.tenant_id)
    notifications.queue(s, key=f"access:{row.id}", tenant_id=link.tenant_id, plan_id=link.plan_id,
                        kind="access_code", recipient=email, template="access_code",
                        context={"brand": {"name": tenant.name if tenant else "MutualPlan"},
                                 "name": name, "code": code,
                                 "minutes": int(CODE_TTL.total_seconds() // 60)})
    return row


def pending(s: Session, link: ShareLink, access_id: str) -> BuyerAccess | None:
    if not access_id or len(access_id) > 36:
        return None
    return s.scalars(select(BuyerAccess).where(
        BuyerAccess.link_id == link.id, BuyerAccess.id == access_id,
        BuyerAccess.verified_at.is_(None))).one_or_none()


def verify(s: Session, row: BuyerAccess, code: str, secret: str) -> str:
    """Check a code; returns the new session's cookie value. Every attempt counts, also a
    wrong one: the caller commits after Invalid too (only the counter changes then)."""
    if row.attempts >= CODE_ATTEMPTS:
        raise Invalid("code", "too many wrong codes; ask for a new one")
    if row.code_expires_at <= clock.now():
        raise Invalid("code", "this code has expired; ask for a new one")
    row.attempts += 1
    code = re.sub(r"\s", "", code or "")
    if not hmac.compare_digest(_code_hash(secret, row.id, code), row.code_hash):
        left = CODE_ATTEMPTS - row.attempts
        raise Invalid("code", "that code is not right; "
                      + (f"{left} attempt{'s' if left != 1 else ''} left" if left
                         else "ask for a new one"))
    token = secrets.token_urlsafe(32)
    now = clock.now()
    row.verified_at, row.last_seen_at = now, now
    row.session_hash = hashlib.sha256(token.encode()).hexdigest()
    row.session_expires_at = now + SESSION_TTL
    # Recorded, not a plan change: no new plan version (the buyer page cache stays).
    s.add(Activity(tenant_id=row.tenant_id, plan_id=row.plan_id, actor=f"buyer:{row.name} <{row.email}>"[:200],
                   action="share_link.verified", subject_id=row.link_id, detail={"email": row.email}))
    return token


# ---- sessions ---------------------------------------------------------------------------------


def session_for(s: Session, link_id: str, cookie: str | None) -> BuyerAccess | None:
    """The live session of this device on this link, or None."""
    if not cookie or len(cookie) > 100:
        return None
    row = s.scalars(select(BuyerAccess).where(
        BuyerAccess.session_hash == hashlib.sha256(cookie.encode()).hexdigest())).one_or_none()
    now = clock.now()
    if row is None or row.link_id != link_id or row.ended_at is not None \
            or row.session_expires_at is None or row.session_expires_at <= now:
        return None
    if row.last_seen_at is None or now - row.last_seen_at >= SEEN_EVERY:
        row.last_seen_at = now
    return row


def end_session(row: BuyerAccess) -> None:
    row.ended_at = clock.now()


def verified_people(s: Session, link_ids: list[str]) -> dict[str, list[dict]]:
    """Per link: who verified (newest first; one entry per address, with its latest visit)."""
    if not link_ids:
        return {}
    rows = s.scalars(select(BuyerAccess).where(
        BuyerAccess.link_id.in_(link_ids), BuyerAccess.verified_at.is_not(None))
        .order_by(BuyerAccess.verified_at.desc()))
    out: dict[str, dict[str, dict]] = {}
    for row in rows:
        people = out.setdefault(row.link_id, {})
        seen = people.get(row.email)
        if seen is None:
            people[row.email] = {"email": row.email, "name": row.name, "verified_at": row.verified_at,
                                 "last_seen_at": row.last_seen_at}
        elif row.last_seen_at and (seen["last_seen_at"] is None or row.last_seen_at > seen["last_seen_at"]):
            seen["last_seen_at"] = row.last_seen_at
    return {link_id: list(people.values()) for link_id, people in out.items()}


def mask(email: str) -> str:
    """d***@acme.example: enough to recognise, not to harvest."""
    local, _, host = email.partition("@")
    return f"{local[:1]}***@{host}"


__all__ = [
    "MODES",
    "check_mode",
    "clean_domains",
    "email_allowed",
    "send_code",
    "session_for",
    "set_access",
    "verified_people",
    "verify",
]
