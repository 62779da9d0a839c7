"""Buyer links, buyer identity, comments and date proposals (DESIGN §1, §7).

Buyer links. A link's token is 256 bits: HMAC-SHA256(SECRET_KEY, link id + a
random 256-bit salt), base64url. Only SHA-256(token) is stored, so a copy of
the database alone opens no plan; the server, holding SECRET_KEY, can show an
existing link again (the editor's "copy" and the CRM card's buyer-link field)
without keeping the token anywhere. Rotating SECRET_KEY leaves old links
working (they are found by hash) but makes them unshowable: `current_or_new_link`
then issues a fresh one. Revoked, expired and unknown tokens all answer the
same 404.

No Flask here: what is signed with SECRET_KEY or points at PUBLIC_BASE_URL
takes a `Keys` (the blueprints pass `web.keys()`, jobs and scripts
`Keys.from_config(app.config)`).

Everything here follows plans.py's rules: commands take the session and an
actor, change rows, call `plans.touch` (activity log + outbox) and leave the
commit to the caller. Every query filters by tenant.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session, selectinload

from . import clock, plans
from .domain_errors import Invalid, NotFound
from .models import (
    Branding,
    Comment,
    ContactCard,
    DateProposal,
    Milestone,
    Plan,
    ShareLink,
    Stage,
    new_id,
)
from .schemas import MilestonePatch

EDITOR_LINK_TTL = timedelta(minutes=15)
EDITOR_SESSION_TTL = timedelta(hours=8)  # users.EDITOR_TTL: the server-side session


aware = clock.aware  # the old name; hubspot.py still uses it


@dataclass(frozen=True)
class Keys:
    """What links and cookies are signed with (SECRET_KEY) and where links point."""

    secret: str
    base_url: str  # PUBLIC_BASE_URL without a trailing slash

    @classmethod
    def from_config(cls, config) -> Keys:
        return cls(config["SECRET_KEY"], config["PUBLIC_BASE_URL"].rstrip("/"))

# ---- share links ---------------------------------------------------------------


def _token_for(keys: Keys, link_id: str, salt: str) -> str:
    digest = hmac.new(keys.secret.encode(), f"mutualplan share link|{link_id}|{salt}".encode(),
                      hashlib.sha256)
    return urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_token(link: ShareLink, keys: Keys) -> str | None:
    """The link's token, or None when it was made under another SECRET_KEY."""
    token = _token_for(keys, link.id, link.salt)
    return token if hmac.compare_digest(hash_token(token), link.token_hash) else None


def link_url(link: ShareLink, keys: Keys) -> str | None:
    token = link_token(link, keys)
    return token and f"{keys.base_url}/p/{token}"


def is_active(link: ShareLink, now: datetime | None = None) -> bool:
    now = now or clock.now()
    return link.revoked_at is None and (link.expires_at is None or link.expires_at > now)


def create_link(s: Session, plan: Plan, actor: str, keys: Keys, *, label: str = "",
                expires_at: datetime | None = None, access_mode: str = "open",
                allowed_domains=()) -> tuple[ShareLink, str]:
    """A new buyer link; returns (row, url). The url is derived, never stored. Who may open
    it: `access_mode` and `allowed_domains` (webapp/access.py)."""
    from . import access  # access -> notifications -> sharing

    expires_at = clock.aware(expires_at)  # a zone-less input is UTC
    allowed_domains = access.clean_domains(allowed_domains)
    access.check_mode(access_mode, allowed_domains)
    if expires_at is not None and expires_at <= clock.now():
        raise Invalid("expires_at", "must be in the future")
    plans.check_limit("live_share_links_per_plan", _live_links(s, plan) + 1)
    link_id, salt = new_id(), secrets.token_hex(32)
    token = _token_for(keys, link_id, salt)
    link = ShareLink(id=link_id, tenant_id=plan.tenant_id, plan_id=plan.id, label=label or "",
                     created_by=actor[:200], expires_at=expires_at, salt=salt,
                     token_hash=hash_token(token), access_mode=access_mode,
                     allowed_domains=allowed_domains)
    s.add(link)
    s.flush()
    plans.touch(s, plan, actor, "share_link.created", link.id,
                 {"label": link.label, "expires_at": expires_at, "access_mode": access_mode})
    return link, f"{keys.base_url}/p/{token}"


def _live_links(s: Session, plan: Plan) -> int:
    now = clock.now()
    return s.scalar(select(func.count()).select_from(ShareLink).where(
        ShareLink.tenant_id == plan.tenant_id, ShareLink.plan_id == plan.id,
        ShareLink.revoked_at.is_(None),
        or_(ShareLink.expires_at.is_(None), ShareLink.expires_at > now)))


def list_links(s: Session, plan: Plan) -> list[ShareLink]:
    return list(s.scalars(select(ShareLink).where(
        ShareLink.tenant_id == plan.tenant_id, ShareLink.plan_id == plan.id
    ).order_by(ShareLink.created_at.desc(), ShareLink.id)))


def get_link(s: Session, tenant_id: str, link_id: str) -> ShareLink:
    link = s.scalars(select(ShareLink).where(
        ShareLink.tenant_id == tenant_id, ShareLink.id == link_id)).one_or_none()
    if link is None:
        raise NotFound("No buyer link with this id.")
    return link


def revoke_link(s: Session, link: ShareLink, actor: str) -> None:
    if link.revoked_at is not None:
        return
    link.revoked_at = clock.now()
    plan = plans.get_plan(s, link.tenant_id, link.plan_id, full=False)
    plans.touch(s, plan, actor, "share_link.revoked", link.id, {"label": link.label})


def current_or_new_link(s: Session, plan: Plan, actor: str, keys: Keys,
                        rotate: bool = False) -> str:
    """The URL of the plan's newest active, showable link; a new one if there is none.

    With rotate=True every active link of the plan is revoked and a new one
    made (for "the link leaked"). The caller commits.
    """
    now = clock.now()
    links = [link for link in list_links(s, plan) if is_active(link, now)]
    if rotate:
        for link in links:
            revoke_link(s, link, actor)
        links = []
    for link in links:
        if link.expires_at is None:
            url = link_url(link, keys)
            if url:
                return url
    _, url = create_link(s, plan, actor, keys, label="Buyer link")
    return url


def link_document(link: ShareLink, *, url: str | None = None, verified: list | None = None) -> dict:
    return {"id": link.id, "plan_id": link.plan_id, "label": link.label,
            "created_by": link.created_by, "created_at": link.created_at,
            "expires_at": link.expires_at, "revoked_at": link.revoked_at,
            "active": is_active(link), "access_mode": link.access_mode or "open",
            "allowed_domains": list(link.allowed_domains or []), "verified": verified or [],
            **({"url": url} if url is not None else {})}


CLOSED_WITH_DEAL = "deal_lost"  # ShareLink.revoked_reason of links the lost deal closed


class PlanClosed(NotFound):
    """The link was switched off because the deal was lost (webapp/onboarding.py): the buyer
    sees a polite "this plan is closed" page, with nothing of the plan."""


def check_active(link) -> None:
    if link is None:
        raise NotFound("This link is not valid.")
    if not is_active(link):
        if link.revoked_at is not None and link.revoked_reason == CLOSED_WITH_DEAL:
            raise PlanClosed("This plan is closed.")
        raise NotFound("This link is not valid.")


def resolve(s: Session, token: str) -> ShareLink:
    """The active link of a token, or NotFound (the same for unknown, revoked, expired)."""
    if not token or len(token) > 100:
        raise NotFound("This link is not valid.")
    link = s.scalars(select(ShareLink).where(ShareLink.token_hash == hash_token(token))).one_or_none()
    check_active(link)
    return link


@dataclass(frozen=True)
class LinkRef:
    """What the buyer page needs of a link to check it and find its plan; not an ORM row."""

    id: str
    tenant_id: str
    plan_id: str
    expires_at: datetime | None
    revoked_at: datetime | None
    access_mode: str = "open"
    allowed_domains: list | None = None
    revoked_reason: str | None = None
    deal_id: str | None = None  # the plan's deal, if any (a first view goes to its CRM timeline)


# The buyer page's one query per view: the link, its plan's version and when the tenant's
# branding and the plan owner's contact card last changed (a rendered page shows them, so they
# are part of the page cache's key).
LINK_AND_VERSION = (
    select(ShareLink.id, ShareLink.tenant_id, ShareLink.plan_id, ShareLink.expires_at,
           ShareLink.revoked_at, ShareLink.access_mode, ShareLink.allowed_domains,
           ShareLink.revoked_reason, Plan.version, Plan.deal_id, Branding.updated_at,
           ContactCard.updated_at)
    .join(Plan, (Plan.id == ShareLink.plan_id) & (Plan.tenant_id == ShareLink.tenant_id))
    .outerjoin(Branding, Branding.tenant_id == ShareLink.tenant_id)
    .outerjoin(ContactCard, ContactCard.user_id == Plan.owner_user_id)
    .where(ShareLink.token_hash == bindparam("token_hash"))
)


def _listed(value) -> list:
    """A JSON column as a bare driver gives it (SQLite: text) as a list."""
    return json.loads(value) if isinstance(value, str) else list(value or [])


def _when(value) -> datetime | None:
    """A timestamp as the driver gives it (SQLite: text) as an aware datetime."""
    return clock.aware(datetime.fromisoformat(value) if isinstance(value, str) else value)


def resolve_version(read, token: str) -> tuple[LinkRef, tuple]:
    """`resolve`, plus what a rendered page of the link depends on (the plan's version and
    the branding's last change, as a comparable key), from one row: `read(token_hash)`
    runs LINK_AND_VERSION (db.FastRead on a bare cursor, or a Connection) and returns the
    row or None. The whole database cost of a buyer page view that reuses a rendered page."""
    if not token or len(token) > 100:
        raise NotFound("This link is not valid.")
    row = read(hash_token(token))
    if row is None:
        raise NotFound("This link is not valid.")
    link = LinkRef(row[0], row[1], row[2], _when(row[3]), _when(row[4]), row[5] or "open",
                   _listed(row[6]), row[7], row[9])
    check_active(link)
    branded, carded = _when(row[10]), _when(row[11])
    return link, (row[8], branded.astimezone(UTC).isoformat() if branded else "",
                  carded.astimezone(UTC).isoformat() if carded else "")


def resolve_with_plan(s: Session, token: str) -> tuple[ShareLink, Plan]:
    """`resolve` and the full plan (stages, milestones, stakeholders) in 4 queries."""
    if not token or len(token) > 100:
        raise NotFound("This link is not valid.")
    row = s.execute(
        select(ShareLink, Plan)
        .join(Plan, (Plan.id == ShareLink.plan_id) & (Plan.tenant_id == ShareLink.tenant_id))
        .where(ShareLink.token_hash == hash_token(token))
        .options(selectinload(Plan.stages).selectinload(Stage.milestones), selectinload(Plan.stakeholders))
    ).one_or_none()
    check_active(row[0] if row is not None else None)
    return row[0], row[1]


# ---- buyer identity ---------------------------------------------------------------


@dataclass(frozen=True)
class Buyer:
    name: str
    email: str

    @property
    def actor(self) -> str:
        return f"buyer:{self.name} <{self.email}>"[:200]


def _identity_serializer(keys: Keys) -> URLSafeSerializer:
    return URLSafeSerializer(keys.secret, salt="mutualplan-buyer-identity")


def dump_buyer(buyer: Buyer, keys: Keys) -> str:
    return _identity_serializer(keys).dumps({"n": buyer.name, "e": buyer.email})


def load_buyer(cookie: str | None, keys: Keys) -> Buyer | None:
    if not cookie:
        return None
    try:
        data = _identity_serializer(keys).loads(cookie)
        return Buyer(str(data["n"])[:100], str(data["e"])[:254])
    except (BadSignature, KeyError, TypeError):
        return None


def csrf_token(nonce: str, scope: str, keys: Keys) -> str:
    message = f"csrf|{scope}|{nonce}".encode()
    return hmac.new(keys.secret.encode(), message, hashlib.sha256).hexdigest()


def csrf_ok(nonce: str | None, scope: str, token: str | None, keys: Keys) -> bool:
    if not nonce or not token:
        return False
    return hmac.compare_digest(csrf_token(nonce, scope, keys), token)


# ---- what the buyer sees ----------------------------------------------------------


def load_plan_for_link(s: Session, link: ShareLink) -> Plan:
    return plans.get_plan(s, link.tenant_id, link.plan_id)


def visible_milestone(plan: Plan, milestone_id: str) -> Milestone:
    for stage in plan.stages:
        for m in stage.milestones:
            if m.id == milestone_id and not m.internal:
                return m
    raise NotFound("No such milestone in this plan.")


def comments_for(s: Session, plan: Plan, *, include_internal: bool) -> list[Comment]:
    query = select(Comment).where(Comment.tenant_id == plan.tenant_id, Comment.plan_id == plan.id)
    if not include_internal:
        query = query.where(Comment.internal.is_(False))
    return list(s.scalars(query.order_by(Comment.at, Comment.id)))


def proposals_for(s: Session, plan: Plan) -> list[DateProposal]:
    return list(s.scalars(select(DateProposal).where(
        DateProposal.tenant_id == plan.tenant_id, DateProposal.plan_id == plan.id
    ).order_by(DateProposal.at, DateProposal.id)))


# ---- commands ---------------------------------------------------------------------


def buyer_can_complete(m: Milestone) -> bool:
    return not m.internal and m.owner_side in ("buyer", "both")


def buyer_set_done(s: Session, plan: Plan, m: Milestone, done: bool, buyer: Buyer) -> bool:
    """Mark a buyer-side milestone done or not done; False when nothing changed."""
    if not buyer_can_complete(m):
        raise Invalid("milestone", "only milestones owned by your side can be marked done here")
    status = "done" if done else "not_started"
    if (m.status == "done") == done:
        return False
    plans.update_milestone(s, m, MilestonePatch(status=status), buyer.actor)
    return True


def add_comment(s: Session, plan: Plan, m: Milestone, body: str, *, side: str, name: str,
                email: str, actor: str, internal: bool = False, link_id: str | None = None) -> Comment:
    body = body.strip()
    if not body:
        raise Invalid("body", "write something first")
    if len(body) > 2000:
        raise Invalid("body", "at most 2,000 characters")
    plans.check_limit("comments_per_milestone", s.scalar(
        select(func.count()).select_from(Comment).where(Comment.milestone_id == m.id)) + 1)
    comment = Comment(tenant_id=plan.tenant_id, plan_id=plan.id, milestone_id=m.id, link_id=link_id,
                      side=side, author_name=name[:200], author_email=email[:254], body=body,
                      internal=internal)
    s.add(comment)
    s.flush()
    plans.touch(s, plan, actor, "comment.internal_note" if internal else "comment.added", m.id,
                 {"milestone": m.title, "comment_id": comment.id, "excerpt": body[:140]})
    return comment


def confirm_date(s: Session, plan: Plan, m: Milestone, buyer: Buyer, link_id: str | None) -> DateProposal:
    if m.due_date is None:
        raise Invalid("date", "this milestone has no date to confirm yet")
    row = DateProposal(tenant_id=plan.tenant_id, plan_id=plan.id, milestone_id=m.id, link_id=link_id,
                       kind="confirm", seen_date=m.due_date, proposed_date=m.due_date, reason="",
                       author_name=buyer.name, author_email=buyer.email, status="confirmed")
    s.add(row)
    s.flush()
    plans.touch(s, plan, buyer.actor, "date.confirmed", m.id,
                 {"milestone": m.title, "due_date": m.due_date})
    return row


def propose_date(s: Session, plan: Plan, m: Milestone, proposed: date, reason: str, buyer: Buyer,
                 link_id: str | None, today: date) -> DateProposal:
    reason = reason.strip()
    if not reason:
        raise Invalid("reason", "say why the date should move, so the team can plan around it")
    if len(reason) > 1000:
        raise Invalid("reason", "at most 1,000 characters")
    if not today - timedelta(days=365) <= proposed <= today + timedelta(days=3650):
        raise Invalid("date", "pick a date within the next ten years")
    if proposed == m.due_date:
        raise Invalid("date", "that is already the due date; use “Confirm this date” instead")
    row = DateProposal(tenant_id=plan.tenant_id, plan_id=plan.id, milestone_id=m.id, link_id=link_id,
                       kind="propose", seen_date=m.due_date, proposed_date=proposed, reason=reason,
                       author_name=buyer.name, author_email=buyer.email, status="pending")
    s.add(row)
    s.flush()
    plans.touch(s, plan, buyer.actor, "date.proposed", m.id,
                 {"milestone": m.title, "from": m.due_date, "to": proposed, "reason": reason,
                  "proposal_id": row.id})
    return row


def get_proposal(s: Session, tenant_id: str, proposal_id: str) -> DateProposal:
    row = s.scalars(select(DateProposal).where(
        DateProposal.tenant_id == tenant_id, DateProposal.id == proposal_id)).one_or_none()
    if row is None:
        raise NotFound("No date proposal with this id.")
    return row


def decide_proposal(s: Session, proposal: DateProposal, accept: bool, actor: str) -> None:
    """The rep accepts (the due date moves, recorded in the slip ledger) or declines."""
    if proposal.status != "pending":
        raise Invalid("proposal", "this proposal was already answered")
    m = plans.get_milestone(s, proposal.tenant_id, proposal.milestone_id)
    plan = m.plan
    proposal.status = "accepted" if accept else "declined"
    proposal.decided_by, proposal.decided_at = actor[:200], clock.now()
    if accept and m.due_date != proposal.proposed_date:
        reason = f"Proposed by {proposal.author_name}: {proposal.reason}"[:1000]
        plans.update_milestone(s, m, MilestonePatch(due_date=proposal.proposed_date, reason=reason), actor)
    plans.touch(s, plan, actor, "date.accepted" if accept else "date.declined", m.id,
                 {"milestone": m.title, "to": proposal.proposed_date, "proposal_id": proposal.id,
                  "by": proposal.author_name})


# ---- editor links -------------------------------------------------------------------


def _editor_serializer(keys: Keys) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(keys.secret, salt="mutualplan-editor-link")


def editor_link(tenant_id: str, plan_id: str, actor: str, keys: Keys, *,
                user_id: str | None = None, key_id: str | None = None,
                page: str | None = None) -> tuple[str, datetime]:
    """A signed, short-lived, single-use URL that opens the rep editor on one plan.

    Valid for 15 minutes and for one opening (blueprints/editor.py records the
    token's hash in `used_links`); opening it starts an 8-hour server-side editor
    session (webapp/users.py) limited to that tenant and plan. `user_id` is the
    person it was minted for (the HubSpot user who clicked in the card), so edits
    carry their name; `key_id` the API key that minted it, whose revocation ends
    the session.
    """
    data = {"t": tenant_id, "p": plan_id, "a": actor[:200], "j": secrets.token_hex(8)}
    if user_id:
        data["u"] = user_id
    if key_id:
        data["k"] = key_id
    if page == "content":  # lands on the plan's content page instead of the plan itself
        data["to"] = page
    token = _editor_serializer(keys).dumps(data)
    expires_at = clock.now().replace(microsecond=0) + EDITOR_LINK_TTL
    return f"{keys.base_url}/editor/open/{token}", expires_at


def load_editor_link(token: str, keys: Keys) -> dict | None:
    try:
        data = _editor_serializer(keys).loads(token, max_age=int(EDITOR_LINK_TTL.total_seconds()))
    except BadSignature:
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in "tpa"):
        return None
    if any(k in data and not isinstance(data[k], str) for k in "uk"):
        return None
    return data


def plan_stage_milestones(plan: Plan, include_internal: bool) -> list[tuple[Stage, list[Milestone]]]:
    return [(st, [m for m in ms if include_internal or not m.internal])
            for st, ms in plans.sorted_stages(plan)]


__all__ = [
    "Buyer", "Keys", "add_comment", "confirm_date", "create_link", "current_or_new_link",
    "decide_proposal", "editor_link", "list_links", "propose_date", "resolve", "revoke_link",
]


# ---- the demo ---------------------------------------------------------------------------


def seed_demo_story(s: Session, plan: Plan, day: date) -> None:
    """Make the demo plan look lived-in: progress, an overdue step, buyer comments, a proposal."""
    from .schemas import Owner

    s.flush()
    ms = {m.title: m for m in plans.ordered_milestones(plan)}
    dana = Buyer("Dana Whitfield", "dana@acme.example")
    sam = Buyer("Sam Ortega", "sam@acme.example")
    riley = [Owner(name="Riley Chen", email="riley@mutualplan.example")]
    owners = {
        "Discovery call": riley + [Owner(name="Dana Whitfield")],
        "Identify problems to solve": [Owner(name="Sam Ortega", email="sam@acme.example")],
        "Define requirements and success criteria": [Owner(name="Sam Ortega"), Owner(name="Riley Chen")],
        "Customized product demo": riley,
        "Follow-up demo with executive team": [Owner(name="Dana Whitfield"), Owner(name="Riley Chen")],
        "Legal and compliance review": [Owner(name="Acme Legal")],
    }
    for title, people in owners.items():
        if title in ms:
            plans.update_milestone(s, ms[title], MilestonePatch(owners=people), "demo-seed")
    for title in ("Discovery call", "Identify problems to solve", "Define requirements and success criteria"):
        if title in ms:
            plans.update_milestone(s, ms[title], MilestonePatch(status="done"), "demo-seed")
    if "Customized product demo" in ms:
        plans.update_milestone(s, ms["Customized product demo"], MilestonePatch(status="in_progress"), "demo-seed")
    if "Follow-up demo with executive team" in ms:
        m = ms["Follow-up demo with executive team"]
        plans.update_milestone(s, m, MilestonePatch(risk="at_risk"), "demo-seed")
        add_comment(s, plan, m, "Our CFO can only join in the second week of December.", side="buyer",
                    name=dana.name, email=dana.email, actor=dana.actor)
        propose_date(s, plan, m, m.due_date + timedelta(days=9), "CFO availability", dana, None, day)
    if "Identify problems to solve" in ms:
        add_comment(s, plan, ms["Identify problems to solve"], "Shared the list in the kickoff doc.",
                    side="buyer", name=sam.name, email=sam.email, actor=sam.actor)
    if "Commercial agreement" in ms:  # an internal note: the buyer never sees it
        add_comment(s, plan, ms["Commercial agreement"], "Max 12% discount without VP sign-off.",
                    side="seller", name="Riley Chen", email="", actor="demo-seed", internal=True)
