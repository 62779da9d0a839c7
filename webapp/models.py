"""The CRM-neutral data model (DESIGN §1). Every tenant-owned row carries tenant_id.

Every point in time is a `UTCDateTime` column (db.py): aware UTC in, aware UTC out,
on SQLite as on PostgreSQL; defaults come from the one clock (clock.now).
"""
from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import clock
from .db import Base, UTCDateTime

SIDES = ("buyer", "seller")
OWNER_SIDES = ("buyer", "seller", "both")
STATUSES = ("not_started", "in_progress", "done")
RISKS = ("on_track", "at_risk", "off_track")
DECISION_ROLES = ("decision_maker", "approver", "champion", "influencer", "user", "other",
                  "economic_buyer", "technical", "legal", "security")
# How people read them (the editor's role list, the buyer page, analytics' coverage).
ROLE_LABELS = {"decision_maker": "Decision maker", "economic_buyer": "Economic buyer",
               "approver": "Approver", "champion": "Champion", "influencer": "Influencer",
               "technical": "Technical", "legal": "Legal", "security": "Security",
               "user": "User", "other": "Other"}


def new_id() -> str:
    return str(uuid.uuid4())


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in lists, never enough to authenticate
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # written at most once a minute (webapp/auth.py authenticate), so reads stay reads
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tenant: Mapped[Tenant] = relationship()


ROLES = ("admin", "rep")


class User(Base):
    """A person of a tenant, known by their CRM identity (webapp/users.py)."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "provider", "crm_user_id", name="uq_user_crm_identity"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(20))  # hubspot | salesforce | local
    crm_user_id: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(254), default="")
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(10), default="rep")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def display_name(self) -> str:
        return self.name or self.email or f"{self.provider} user {self.crm_user_id}"


class UserSession(Base):
    """A server-side session. The cookie holds a random 256-bit token; only its hash is here.

    A sign-in session has a user and no plan; an editor session (opened from a card or
    API editor link) is scoped to one plan, may have no user (a link minted by an API key
    for nobody in particular; `actor` then names the key), and remembers the key that
    minted it so that revoking the key ends it.
    """

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    plan_id: Mapped[str | None] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user: Mapped["User | None"] = relationship()


class UsedLink(Base):
    """An editor link already opened: links are single-use (issue 10, F8).

    Keyed by the hash of the link's token; kept until the link would have expired anyway.
    """

    __tablename__ = "used_links"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Plan(Base):
    __tablename__ = "plans"
    __table_args__ = (
        UniqueConstraint("tenant_id", "deal_provider", "deal_account_id", "deal_id", name="uq_plan_deal"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    value_summary: Mapped[str] = mapped_column(Text, default="")
    objectives: Mapped[dict] = mapped_column(JSON, default=dict)
    constraints: Mapped[dict] = mapped_column(JSON, default=dict)
    resources: Mapped[list] = mapped_column(JSON, default=list)
    template: Mapped[str | None] = mapped_column(String(40))
    start_date: Mapped[date | None] = mapped_column(Date)
    deal_provider: Mapped[str | None] = mapped_column(String(20))
    deal_account_id: Mapped[str | None] = mapped_column(String(64))
    deal_id: Mapped[str | None] = mapped_column(String(64))
    deal_name: Mapped[str | None] = mapped_column(String(200))  # as the CRM named it at creation
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # e.g. deal deleted
    # Who the plan belongs to (the rep's dashboard): the deal owner when the CRM says so,
    # else the person who created it. Null for plans made through the API or by the system.
    owner_user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True)
    created_by: Mapped[str | None] = mapped_column(String(200))
    # sales -> onboarding once the deal closes won; closed when it is lost (webapp/onboarding.py)
    phase: Mapped[str] = mapped_column(String(20), default="sales", server_default="sales")
    cs_owner: Mapped[str | None] = mapped_column(String(254))  # the customer-success owner
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    # Optimistic locking, enforced by the database: every ORM UPDATE of a versioned row
    # (plan, stage, milestone, stakeholder) is `... WHERE version = <the version read>`, so
    # of N concurrent writers holding the same version exactly one matches a row; the others
    # match none (StaleDataError, turned into VersionConflict by plans.py). The plan bumps
    # its version by itself; the children bump theirs in plans.py when their content
    # changes (version_id_generator=False), so renumbering a sibling keeps its ETag.
    __mapper_args__ = {"version_id_col": version}

    stages: Mapped[list["Stage"]] = relationship(
        back_populates="plan", order_by="Stage.position", cascade="all, delete-orphan"
    )
    milestones: Mapped[list["Milestone"]] = relationship(
        back_populates="plan", order_by="Milestone.position", cascade="all, delete-orphan"
    )
    stakeholders: Mapped[list["Stakeholder"]] = relationship(
        back_populates="plan", order_by="Stakeholder.position", cascade="all, delete-orphan"
    )


class PlanTemplate(Base):
    """A tenant's own plan template (webapp/plan_templates.py); the built-in ones are code."""

    __tablename__ = "plan_templates"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    default_go_live_days: Mapped[int] = mapped_column(Integer, default=90)
    stages: Mapped[list] = mapped_column(JSON, default=list)  # the built-in templates' shape
    default_for_pipeline: Mapped[str | None] = mapped_column(String(64))  # the default there
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class Branding(Base):
    """A tenant's branding on the buyer page (webapp/branding.py)."""

    __tablename__ = "brandings"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    company_name: Mapped[str] = mapped_column(String(120), default="")
    accent: Mapped[str | None] = mapped_column(String(7))  # #rrggbb, AA against white
    contact_name: Mapped[str] = mapped_column(String(200), default="")
    contact_title: Mapped[str] = mapped_column(String(200), default="")
    contact_email: Mapped[str] = mapped_column(String(254), default="")
    logo: Mapped[bytes | None] = mapped_column(LargeBinary)  # checked by branding.image_type
    logo_type: Mapped[str | None] = mapped_column(String(20))
    photo: Mapped[bytes | None] = mapped_column(LargeBinary)  # the contact's photo
    photo_type: Mapped[str | None] = mapped_column(String(20))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class ContactCard(Base):
    """A rep's own contact card on the buyer pages of the plans they own (webapp/branding.py);
    the tenant's card in Branding is the fallback."""

    __tablename__ = "contact_cards"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    photo: Mapped[bytes | None] = mapped_column(LargeBinary)  # checked by branding.image_type
    photo_type: Mapped[str | None] = mapped_column(String(20))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class Stage(Base):
    __tablename__ = "stages"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    position: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(20), default="sales", server_default="sales")
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    plan: Mapped[Plan] = relationship(back_populates="stages")
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}
    milestones: Mapped[list["Milestone"]] = relationship(
        back_populates="stage", order_by="Milestone.position"
    )


class Milestone(Base):
    __tablename__ = "milestones"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    stage_id: Mapped[str] = mapped_column(ForeignKey("stages.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    owner_side: Mapped[str] = mapped_column(String(10), default="seller")
    owners: Mapped[list] = mapped_column(JSON, default=list)
    due_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="not_started")
    risk: Mapped[str] = mapped_column(String(20), default="on_track")
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_by: Mapped[str | None] = mapped_column(String(200))
    # [{"milestone_id", "days", "after": "done" | "due"}] (webapp/dependencies.py)
    depends_on: Mapped[list | None] = mapped_column(JSON, default=list)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    plan: Mapped[Plan] = relationship(back_populates="milestones")
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}
    stage: Mapped[Stage] = relationship(back_populates="milestones")


class Stakeholder(Base):
    __tablename__ = "stakeholders"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    side: Mapped[str] = mapped_column(String(10))
    role: Mapped[str] = mapped_column(String(20), default="other")
    position: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    plan: Mapped[Plan] = relationship(back_populates="stakeholders")
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}


class Slip(Base):
    """The slip ledger: one row per due-date change of a milestone."""

    __tablename__ = "slips"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    milestone_id: Mapped[str] = mapped_column(String(36), index=True)  # survives milestone deletion
    old_date: Mapped[date | None] = mapped_column(Date)
    new_date: Mapped[date | None] = mapped_column(Date)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class Activity(Base):
    __tablename__ = "activity"
    __table_args__ = (Index("ix_activity_plan_at", "plan_id", "at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(60))
    subject_id: Mapped[str | None] = mapped_column(String(36))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


# ---- sync (DESIGN §2, §6) -------------------------------------------------

INSTALLATION_STATUSES = ("active", "needs_reconnect", "uninstalled")
OUTBOX_STATUSES = ("pending", "in_flight", "done", "dead", "parked")


class Installation(Base):
    """One connected CRM account (a HubSpot portal, a Salesforce org) of a tenant."""

    __tablename__ = "installations"
    __table_args__ = (UniqueConstraint("provider", "account_id", name="uq_installation_account"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    account_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="active")
    status_reason: Mapped[str] = mapped_column(Text, default="")
    tokens: Mapped[str | None] = mapped_column(Text)  # Fernet-encrypted JSON, never plain
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)  # mode, instance_url, namespace, …
    pull_state: Mapped[dict] = mapped_column(JSON, default=dict)  # {"since": iso, "cursor": str|None}
    last_pulled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The pull error policy (sync.pull_installation): what the last pull failed with, how many
    # pulls in a row failed, and the earliest time the clock may pull again (None: schedule).
    last_pull_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    pull_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_pull_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class StageMapping(Base):
    """Per installation and pipeline: which milestones gate which deal stages."""

    __tablename__ = "stage_mappings"
    __table_args__ = (UniqueConstraint("installation_id", "pipeline_id", name="uq_stage_mapping"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    installation_id: Mapped[str] = mapped_column(ForeignKey("installations.id", ondelete="CASCADE"))
    pipeline_id: Mapped[str] = mapped_column(String(64))
    gates: Mapped[dict] = mapped_column(JSON, default=dict)  # milestone title (lower) -> stage id
    close_milestone: Mapped[str | None] = mapped_column(String(200))
    allow_closed: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class OutboxEntry(Base):
    """"Mirror this plan": written in the same transaction as the change itself.

    At most one *pending* row per plan (a partial unique index), so rapid edits
    coalesce into one push of the then-current state.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("uq_outbox_pending_plan", "plan_id", unique=True,
              postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'")),
        Index("ix_outbox_due", "status", "next_attempt_at"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    installation_id: Mapped[str] = mapped_column(ForeignKey("installations.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(String(36))  # not a FK: the row outlives a deleted plan
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # None: push the plan's current state. {"op": "remove", ...}: the plan was deleted here;
    # what the CRM holds of it (sync.push_entry removes it there).
    payload: Mapped[dict | None] = mapped_column(JSON)


class OAuthState(Base):
    """An OAuth `state`: single use, short-lived, bound to the browser that started the flow.

    Only a hash of the state is stored; `browser` is a hash of a random value
    kept in that browser's cookie. `data` holds what the callback needs (the
    PKCE verifier, the login host).
    """

    __tablename__ = "oauth_states"
    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    browser_hash: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Mirror(Base):
    """What we know of a plan's copy in the CRM: ids, hashes of our writes, the deal as last seen."""

    __tablename__ = "mirrors"
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    installation_id: Mapped[str] = mapped_column(ForeignKey("installations.id", ondelete="CASCADE"), index=True)
    remote_ids: Mapped[dict] = mapped_column(JSON, default=dict)
    pushed_hashes: Mapped[dict] = mapped_column(JSON, default=dict)
    pushed_deal: Mapped[dict] = mapped_column(JSON, default=dict)  # deal values we last wrote
    pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deal_pipeline: Mapped[str | None] = mapped_column(String(64))
    deal_stage: Mapped[str | None] = mapped_column(String(64))
    deal_close_date: Mapped[date | None] = mapped_column(Date)
    deal_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mismatch: Mapped[dict | None] = mapped_column(JSON)
    pushes: Mapped[int] = mapped_column(Integer, default=0)


class CrmActivity(Base):
    """A buyer action waiting for the CRM's timeline (webapp/timeline.py): written in the same
    transaction as the action, sent with the plan's next push, then marked pushed."""

    __tablename__ = "crm_activity"
    __table_args__ = (Index("ix_crm_activity_plan_pending", "plan_id", "pushed_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))  # connector.base.ACTIVITY_KINDS
    actor: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# ---- analytics rollup (webapp/rollups.py keeps these on write) ---------------


class PlanRollup(Base):
    """A plan's figures the charts read: outcome (won | lost | open, from the deal's stage in the
    cached pipelines), the CRM stage probability, the furthest milestone reached."""

    __tablename__ = "plan_rollups"
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    outcome: Mapped[str] = mapped_column(String(10), default="open")
    p_stage: Mapped[float | None] = mapped_column(Float)
    furthest_step: Mapped[int] = mapped_column(Integer, default=0)  # 0: nothing done
    furthest_title: Mapped[str | None] = mapped_column(String(200))


class MilestoneStep(Base):
    """A milestone's place in its plan's order (step 1..n), whether the plan reached it and,
    once done, the days it took since the previous completion (or the plan's creation)."""

    __tablename__ = "milestone_steps"
    __table_args__ = (Index("ix_milestone_steps_tenant_title", "tenant_id", "title"),)
    milestone_id: Mapped[str] = mapped_column(
        ForeignKey("milestones.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    stage: Mapped[str] = mapped_column(String(120))
    step: Mapped[int] = mapped_column(Integer)
    days: Mapped[float | None] = mapped_column(Float)  # done (with a completion time) only
    stage_complete: Mapped[bool] = mapped_column(Boolean, default=False)
    # On the first timed milestone of a stage whose milestones are all done: the stage's days.
    stage_days: Mapped[float | None] = mapped_column(Float)
    # The plan's, copied so that the funnel and win rates read this table alone:
    reached: Mapped[bool] = mapped_column(Boolean, default=False)  # step <= furthest step
    outcome: Mapped[str] = mapped_column(String(10), default="open")


class WinRateCache(Base):
    """A tenant's closed-plan history for the forecast: {"titles": {title: [won, lost]},
    "won", "lost"}. `rates` is null when stale; `generation` moves on every invalidation, so
    a refresh computed before one never overwrites it."""

    __tablename__ = "win_rate_cache"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    rates: Mapped[dict | None] = mapped_column(JSON)
    computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# ---- buyer page -------------------------------------------------------------

PROPOSAL_KINDS = ("confirm", "propose")
PROPOSAL_STATUSES = ("pending", "accepted", "declined", "confirmed")


class ShareLink(Base):
    """A buyer link. Only the SHA-256 hash of its token is stored (see webapp/sharing.py)."""

    __tablename__ = "share_links"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    salt: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who may open it (webapp/access.py): open | identify | domain | verified.
    access_mode: Mapped[str] = mapped_column(String(12), default="open", server_default="open")
    allowed_domains: Mapped[list] = mapped_column(JSON, default=list)
    # "deal_lost": revoked because the deal closed lost; only those come back when it reopens
    revoked_reason: Mapped[str | None] = mapped_column(String(40))
    plan: Mapped[Plan] = relationship()


class BuyerAccess(Base):
    """One e-mail verification on a share link (webapp/access.py): the one-time code (its
    HMAC only), then, once verified, the device's 30-day session (the SHA-256 of its cookie)."""

    __tablename__ = "buyer_access"
    __table_args__ = (Index("ix_buyer_access_link_email", "link_id", "email"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    link_id: Mapped[str] = mapped_column(ForeignKey("share_links.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(100), default="")
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    code_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    session_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    session_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Comment(Base):
    """A comment on a milestone, by a buyer (through a link) or a rep (possibly internal)."""

    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_plan_at", "plan_id", "at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    milestone_id: Mapped[str] = mapped_column(ForeignKey("milestones.id", ondelete="CASCADE"), index=True)
    link_id: Mapped[str | None] = mapped_column(String(36))
    side: Mapped[str] = mapped_column(String(10))  # buyer | seller
    author_name: Mapped[str] = mapped_column(String(200))
    author_email: Mapped[str] = mapped_column(String(254), default="")
    body: Mapped[str] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class BuyerView(Base):
    """Buyer page views, one row per link and viewer (email; "" before they say who they
    are): a counter with first and last seen, upserted by analytics.record_view."""

    __tablename__ = "buyer_views"
    __table_args__ = (
        UniqueConstraint("link_id", "viewer_email", name="uq_buyer_view_link_viewer"),
        Index("ix_buyer_views_plan_seen", "plan_id", "last_seen"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    link_id: Mapped[str] = mapped_column(ForeignKey("share_links.id", ondelete="CASCADE"))
    viewer_email: Mapped[str] = mapped_column(String(254), default="")
    viewer_name: Mapped[str] = mapped_column(String(200), default="")
    views: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    # last_seen before the latest view (None on the first): "opened the link" on the CRM
    # timeline once a day (webapp/timeline.py), read back by the view's own upsert.
    previous_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DateProposal(Base):
    """A buyer confirming a milestone's due date or proposing another one."""

    __tablename__ = "date_proposals"
    __table_args__ = (Index("ix_date_proposals_plan", "plan_id", "status"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    milestone_id: Mapped[str] = mapped_column(ForeignKey("milestones.id", ondelete="CASCADE"), index=True)
    link_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(10))  # confirm | propose
    seen_date: Mapped[date | None] = mapped_column(Date)  # the due date the buyer saw
    proposed_date: Mapped[date | None] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text, default="")
    author_name: Mapped[str] = mapped_column(String(200))
    author_email: Mapped[str] = mapped_column(String(254), default="")
    status: Mapped[str] = mapped_column(String(10), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


# ---- hubspot ----------------------------------------------------------------


class HubSpotEvent(Base):
    """A webhook event seen once (dedupe), and the deal deletions the next pull must apply.

    key = "portalId:subscriptionId:eventId:occurredAt" (eventId alone is not unique,
    hubspot.md §6.3). Rows are pruned after a week.
    """

    __tablename__ = "hubspot_events"
    __table_args__ = (Index("ix_hubspot_events_pending", "installation_id", "kind", "processed_at"),)
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    installation_id: Mapped[str] = mapped_column(ForeignKey("installations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(60))  # subscriptionType, e.g. deal.deletion
    object_id: Mapped[str] = mapped_column(String(64), default="")
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UsedSignature(Base):
    """A signed HubSpot card write already executed: the replay guard's database store
    (security.ReplayGuard, used when REDIS_URL is not set). Kept while the signature could
    still pass the 5-minute window; expired rows are deleted as new ones come in."""

    __tablename__ = "used_signatures"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256(signature|timestamp)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# ---- notifications (webapp/notifications.py) ----------------------------------------

NOTIFICATION_STATUSES = ("pending", "sending", "sent", "failed")


class Notification(Base):
    """One message to one recipient (an e-mail address or a Slack webhook): the outbox of
    notifications. `key` is its idempotency key: the same reminder, alert or digest is
    queued once, and the Message-ID is derived from it."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at"),
                      Index("ix_notifications_recipient", "tenant_id", "recipient", "created_at"))
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str | None] = mapped_column(String(36), index=True)  # outlives the plan
    kind: Mapped[str] = mapped_column(String(40))  # reminder | nudge | alert | digest | stalled
    channel: Mapped[str] = mapped_column(String(10), default="email")  # email | slack
    recipient: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(300), default="")
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str] = mapped_column(Text, default="")
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class ReminderLog(Base):
    """Which reminder went to whom about which milestone on which (local) day: "due soon"
    once per due date, "overdue" at most every few days, never twice a day."""

    __tablename__ = "reminder_log"
    __table_args__ = (UniqueConstraint("milestone_id", "email", "sent_on", name="uq_reminder_day"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    milestone_id: Mapped[str] = mapped_column(ForeignKey("milestones.id", ondelete="CASCADE"),
                                              index=True)
    email: Mapped[str] = mapped_column(String(254))
    kind: Mapped[str] = mapped_column(String(10))  # due | overdue
    due_date: Mapped[date] = mapped_column(Date)
    sent_on: Mapped[date] = mapped_column(Date)


class MailOptOut(Base):
    """An unsubscribe: from one plan's messages, or (plan_id null) from all of a tenant's."""

    __tablename__ = "mail_opt_outs"
    __table_args__ = (UniqueConstraint("tenant_id", "email", "plan_id", name="uq_mail_opt_out"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    plan_id: Mapped[str | None] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class NotificationSettings(Base):
    """Per plan (plan_id set) or per user (user_id set) or per tenant (neither): reminder
    rules, the rep's alert preferences, the Slack incoming webhook."""

    __tablename__ = "notification_settings"
    __table_args__ = (UniqueConstraint("tenant_id", "plan_id", "user_id", name="uq_notify_scope"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str | None] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


# ---- content blocks (webapp/content.py) --------------------------------------------

BLOCK_KINDS = ("link", "video", "deck", "notes", "file")
BLOCK_EVENTS = ("opened", "played", "downloaded")


class ContentBlock(Base):
    """One thing shared on a plan (or one of its milestones): a link, an embedded video,
    a PDF deck, meeting notes or a file. `internal` blocks are never sent to a buyer.

    A stored file is named by `file_key` in the storage (webapp/storage.py); its rows go
    with the plan (ON DELETE CASCADE) and content.py deletes the objects after the commit.
    """

    __tablename__ = "content_blocks"
    __table_args__ = (Index("ix_content_blocks_plan", "plan_id", "position"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    milestone_id: Mapped[str | None] = mapped_column(
        ForeignKey("milestones.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    title: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(Text, default="")  # a link's target; a video's pasted URL
    embed_url: Mapped[str] = mapped_column(Text, default="")  # a video's privacy-enhanced player
    body: Mapped[str] = mapped_column(Text, default="")  # notes: Markdown source
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    side: Mapped[str] = mapped_column(String(10), default="seller")  # who added it
    file_key: Mapped[str | None] = mapped_column(String(200))
    file_name: Mapped[str] = mapped_column(String(200), default="")
    file_type: Mapped[str] = mapped_column(String(100), default="")
    file_size: Mapped[int] = mapped_column(Integer, default=0)
    # a deck's first page as a PNG in the same storage; None: the page shows a placeholder
    thumb_key: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class ContentEvent(Base):
    """First-party engagement with a block: opened, played, downloaded (no third party)."""

    __tablename__ = "content_events"
    __table_args__ = (Index("ix_content_events_plan_at", "plan_id", "at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    block_id: Mapped[str] = mapped_column(
        ForeignKey("content_blocks.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(12))
    viewer: Mapped[str] = mapped_column(String(200), default="")  # the buyer's name, if known
    side: Mapped[str] = mapped_column(String(10), default="buyer")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class WebhookEndpoint(Base):
    """An admin's HTTPS endpoint for outgoing webhooks (webapp/webhooks.py). The signing
    secret is encrypted at rest like CRM tokens; `allow_private` lets it resolve to a private
    address (an admin's explicit choice)."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(String(200), default="")
    events: Mapped[list] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(Text)  # Fernet token of "whsec_…"
    allow_private: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class WebhookDelivery(Base):
    """One event for one endpoint: the outbox of outgoing webhooks and its delivery log.
    `msg_id` is the Standard Webhooks `webhook-id`, the same for every attempt and replay;
    `body` is the exact JSON signed and sent each time."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
                      Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
                      UniqueConstraint("endpoint_id", "dedupe_key", name="uq_webhook_delivery_dedupe"))
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    msg_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending|sending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    give_up_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
