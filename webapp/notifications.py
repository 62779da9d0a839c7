"""Notifications: buyer reminders, rep alerts, digests and stalled-plan alerts (issue 13).

Every message is a `notifications` row written in the transaction that decided to send it
(a buyer's action, a clock round), rendered then from templates/mail/*, and delivered later
by a worker (`deliver`, the `notify` job), so a rolled-back change sends nothing.

Delivery is at most once. A worker claims a row (pending -> sending, committed), sends it
with a Message-ID derived from the row's idempotency key, then marks it sent. A row found
still "sending" after the lease (its worker died somewhere between claim and mark) may or
may not have gone out: it is marked failed ("interrupted"), visible, and never re-sent on its
own, because a duplicate reminder is worse than the rare lost one. SMTP errors before the
server accepted the message are retried with exponential backoff; 5xx answers fail at once.

No CRM here; links point at PUBLIC_BASE_URL and are signed with SECRET_KEY (sharing.Keys).
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app, render_template
from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import clock, mail, mirror, outbound, outbox, plans, sharing
from .domain_errors import Invalid, NotFound
from .models import (
    Activity,
    MailOptOut,
    Milestone,
    Notification,
    NotificationSettings,
    Plan,
    ReminderLog,
    StageMapping,
    Tenant,
    UsedLink,
    User,
    new_id,
)

log = logging.getLogger("mutualplan.notifications")

LEASE = timedelta(minutes=5)  # longer than one SMTP conversation with its timeouts
MAX_ATTEMPTS = 8
BACKOFF_CAP = 3600.0
ACTION_TTL = timedelta(days=14)  # a reminder's one-click links
NUDGE_EVERY = timedelta(hours=1)  # at most one nudge per recipient per hour
OVERDUE_EVERY = 3  # days between two "overdue" reminders about one milestone
STALLED_OVERDUE_DAYS = 7
STALLED_QUIET_DAYS = 14
ACTIONS = ("done", "confirm", "propose")

PLAN_DEFAULTS = {"reminders": True, "remind_days_before": 3, "weekends": False, "timezone": "UTC",
                 "send_hour": 8, "recipient_timezones": {}}
USER_DEFAULTS = {"instant": True, "digest": True, "stalled": True, "slack_url": "",
                 "timezone": "UTC"}


# ---- settings ----------------------------------------------------------------------------


def _settings_row(s: Session, tenant_id: str, *, plan_id=None, user_id=None):
    return s.scalars(select(NotificationSettings).where(
        NotificationSettings.tenant_id == tenant_id,
        NotificationSettings.plan_id.is_(None) if plan_id is None
        else NotificationSettings.plan_id == plan_id,
        NotificationSettings.user_id.is_(None) if user_id is None
        else NotificationSettings.user_id == user_id)).one_or_none()


def plan_settings(s: Session, plan: Plan) -> dict:
    row = _settings_row(s, plan.tenant_id, plan_id=plan.id)
    return {**PLAN_DEFAULTS, **(row.settings if row else {})}


def user_settings(s: Session, user: User) -> dict:
    row = _settings_row(s, user.tenant_id, user_id=user.id)
    return {**USER_DEFAULTS, **(row.settings if row else {})}


def tenant_settings(s: Session, tenant_id: str) -> dict:
    row = _settings_row(s, tenant_id)
    return {"slack_url": "", **(row.settings if row else {})}


def save_settings(s: Session, tenant_id: str, values: dict, *, plan_id=None, user_id=None) -> dict:
    if "timezone" in values:
        zone(values["timezone"], strict=True)
    if values.get("slack_url"):
        check_webhook_url(values["slack_url"])
    if "remind_days_before" in values and not 0 <= int(values["remind_days_before"]) <= 30:
        raise Invalid("remind_days_before", "from 0 to 30 days")
    row = _settings_row(s, tenant_id, plan_id=plan_id, user_id=user_id)
    if row is None:
        row = NotificationSettings(tenant_id=tenant_id, plan_id=plan_id, user_id=user_id,
                                   settings={})
        s.add(row)
    row.settings = {**(row.settings or {}), **values}
    row.updated_at = clock.now()
    s.flush()
    return row.settings


def zone(name: str | None, strict: bool = False) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        if strict:
            raise Invalid("timezone", "an IANA time zone such as Europe/Berlin") from None
        return ZoneInfo("UTC")


# ---- the queue ----------------------------------------------------------------------------


def queue(s: Session, *, key: str, tenant_id: str, plan_id: str | None, kind: str,
          recipient: str, template: str, context: dict, channel: str = "email",
          headers: dict | None = None) -> bool:
    """Render and queue one message in the current transaction; False when a message with
    this key exists already (the idempotency key)."""
    subject, text, html = render(template, context)
    dialect = s.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = clock.now()
    result = s.execute(insert(Notification).values(
        id=new_id(), key=key[:200], tenant_id=tenant_id, plan_id=plan_id, kind=kind,
        channel=channel, recipient=recipient, subject=subject[:300], text_body=text,
        html_body=html if channel == "email" else "", headers=headers or {}, status="pending",
        attempts=0, next_attempt_at=now, last_error="", created_at=now,
    ).on_conflict_do_nothing(index_elements=["key"]).returning(Notification.id))
    # RETURNING, not rowcount: psycopg may report a row for a skipped ON CONFLICT insert.
    inserted = result.first() is not None
    if inserted:
        s.info["notifications_written"] = True
    return inserted


def render(template: str, context: dict) -> tuple[str, str, str]:
    """(subject, text, html) from templates/mail/<template>.txt and .html; the text file's
    first line is `Subject: …`."""
    text = render_template(f"mail/{template}.txt", **context)
    first, _, rest = text.partition("\n")
    subject = first.removeprefix("Subject:").strip()
    html = render_template(f"mail/{template}.html", subject=subject, **context)
    return subject, rest.lstrip("\n"), html


def _keys() -> sharing.Keys:
    return sharing.Keys.from_config(current_app.config)


def _brand(s: Session, tenant_id: str) -> dict:
    tenant = s.get(Tenant, tenant_id)
    return {"name": tenant.name if tenant else "MutualPlan"}


# ---- signed links --------------------------------------------------------------------------


def _action_serializer(keys: sharing.Keys) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(keys.secret, salt="mutualplan-reminder-action")


def action_url(keys: sharing.Keys, plan: Plan, m: Milestone, email: str, name: str,
               action: str) -> str:
    token = _action_serializer(keys).dumps({"t": plan.tenant_id, "p": plan.id, "m": m.id,
                                            "e": email, "n": name[:100], "a": action,
                                            "j": new_id()[:8]})
    return f"{keys.base_url}/r/{token}"


def load_action(token: str, keys: sharing.Keys) -> dict:
    """The link's content, or NotFound (the same for forged, expired and malformed)."""
    try:
        data = _action_serializer(keys).loads(token, max_age=int(ACTION_TTL.total_seconds()))
    except BadSignature:
        raise NotFound("This link is not valid any more.") from None
    if not isinstance(data, dict) or data.get("a") not in ACTIONS or not all(
            isinstance(data.get(k), str) for k in "tpmen"):
        raise NotFound("This link is not valid any more.")
    return data


def token_used(s: Session, token: str) -> bool:
    return s.get(UsedLink, hashlib.sha256(token.encode()).hexdigest()) is not None


def apply_action(s: Session, token: str, data: dict, *, proposed: date | None = None,
                 reason: str = "") -> str:
    """Do what a one-click link says, once (the caller commits; a second use fails at that
    commit on the used_links primary key). Returns the activity it caused."""
    if token_used(s, token):
        raise Invalid("link", "this link was used already; open the plan to do more")
    plan = plans.get_plan(s, data["t"], data["p"])
    m = sharing.visible_milestone(plan, data["m"])
    buyer = sharing.Buyer(data["n"] or data["e"], data["e"])
    if data["a"] == "done":
        sharing.buyer_set_done(s, plan, m, True, buyer)
    elif data["a"] == "confirm":
        sharing.confirm_date(s, plan, m, buyer, None)
    else:
        if proposed is None:
            raise Invalid("date", "pick the date that works for you")
        sharing.propose_date(s, plan, m, proposed, reason, buyer, None, clock.today())
    s.add(UsedLink(token_hash=hashlib.sha256(token.encode()).hexdigest(), used_at=clock.now(),
                   expires_at=clock.now() + ACTION_TTL))
    return data["a"]


def _unsubscribe_serializer(keys: sharing.Keys) -> URLSafeSerializer:
    return URLSafeSerializer(keys.secret, salt="mutualplan-unsubscribe")


def unsubscribe_url(keys: sharing.Keys, tenant_id: str, email: str, plan_id: str | None) -> str:
    token = _unsubscribe_serializer(keys).dumps({"t": tenant_id, "e": email, "p": plan_id})
    return f"{keys.base_url}/u/{token}"


def load_unsubscribe(token: str, keys: sharing.Keys) -> dict:
    try:
        data = _unsubscribe_serializer(keys).loads(token)
    except BadSignature:
        raise NotFound("This link is not valid.") from None
    if not isinstance(data, dict) or not isinstance(data.get("e"), str):
        raise NotFound("This link is not valid.")
    return data


def unsubscribe(s: Session, tenant_id: str, email: str, plan_id: str | None) -> None:
    email = email.lower()
    exists = s.scalars(select(MailOptOut.id).where(
        MailOptOut.tenant_id == tenant_id, MailOptOut.email == email,
        MailOptOut.plan_id.is_(None) if plan_id is None else MailOptOut.plan_id == plan_id)).first()
    if not exists:
        s.add(MailOptOut(tenant_id=tenant_id, email=email, plan_id=plan_id))


def opted_out(s: Session, tenant_id: str, email: str, plan_id: str | None) -> bool:
    return s.scalars(select(MailOptOut.id).where(
        MailOptOut.tenant_id == tenant_id, MailOptOut.email == email.lower(),
        or_(MailOptOut.plan_id.is_(None), MailOptOut.plan_id == plan_id))).first() is not None


def list_headers(keys: sharing.Keys, tenant_id: str, email: str, plan_id: str | None) -> dict:
    """RFC 8058 one-click unsubscribe (RFC 2369 List-Unsubscribe, HTTPS only)."""
    return {"List-Unsubscribe": f"<{unsubscribe_url(keys, tenant_id, email, plan_id)}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


# ---- buyer reminders -------------------------------------------------------------------------


def recipients_of(plan: Plan, m: Milestone) -> list[tuple[str, str]]:
    """(email, name) of a milestone's owners: their own e-mail, else a buyer-side stakeholder
    of the same name who has one."""
    by_name = {p.name.strip().lower(): p.email for p in plan.stakeholders
               if p.email and p.side == "buyer"}
    # A shared step may list the rep's people too: sellers get no buyer reminders.
    sellers = {x for p in plan.stakeholders if p.side == "seller"
               for x in (p.name.strip().lower(), p.email.lower()) if x}
    found = {}
    for owner in m.owners or []:
        name = (owner.get("name") or "").strip()
        address = (owner.get("email") or by_name.get(name.lower()) or "").strip().lower()
        if address and address not in found and not {name.lower(), address} & sellers:
            found[address] = name
    return list(found.items())


def _open_buyer_milestones(plan: Plan) -> list[Milestone]:
    return [m for m in plans.ordered_milestones(plan)
            if sharing.buyer_can_complete(m) and m.status != "done"]


def _local_now(settings: dict, email: str, now: datetime) -> datetime:
    name = settings["recipient_timezones"].get(email) or settings["timezone"]
    return now.astimezone(zone(name))


def _last_log(s: Session, m: Milestone, email: str, kind: str) -> ReminderLog | None:
    return s.scalars(select(ReminderLog).where(
        ReminderLog.milestone_id == m.id, ReminderLog.email == email, ReminderLog.kind == kind)
        .order_by(ReminderLog.sent_on.desc()).limit(1)).first()


def _due_items(s: Session, plan: Plan, email: str, day: date, before: int) -> list[tuple]:
    """(milestone, kind, days) this recipient should hear about today."""
    items = []
    for m in _open_buyer_milestones(plan):
        if m.due_date is None or email not in dict(recipients_of(plan, m)):
            continue
        days = (m.due_date - day).days
        if 0 <= days <= before:
            last = _last_log(s, m, email, "due")
            if last is None or last.due_date != m.due_date:
                items.append((m, "due", days))
        elif days < 0:
            last = _last_log(s, m, email, "overdue")
            if last is None or (day - last.sent_on).days >= OVERDUE_EVERY:
                items.append((m, "overdue", -days))
    return items


def _reminder_context(s: Session, plan: Plan, email: str, name: str, items, keys) -> dict:
    rows = [{"title": m.title, "due_date": m.due_date, "kind": kind, "days": days,
             "done_url": action_url(keys, plan, m, email, name, "done"),
             "confirm_url": action_url(keys, plan, m, email, name, "confirm"),
             "propose_url": action_url(keys, plan, m, email, name, "propose")}
            for m, kind, days in items]
    return {"brand": _brand(s, plan.tenant_id), "plan": plan, "name": name, "items": rows,
            "unsubscribe_plan": unsubscribe_url(keys, plan.tenant_id, email, plan.id),
            "unsubscribe_all": unsubscribe_url(keys, plan.tenant_id, email, None)}


def _queue_reminder(s: Session, plan: Plan, email: str, name: str, items, key: str,
                    kind: str) -> bool:
    keys = _keys()
    return queue(s, key=key, tenant_id=plan.tenant_id, plan_id=plan.id, kind=kind,
                 recipient=email, template="reminder",
                 context=_reminder_context(s, plan, email, name, items, keys),
                 headers=list_headers(keys, plan.tenant_id, email, plan.id))


def _active_plans(s: Session):
    return s.scalars(select(Plan).where(Plan.archived_at.is_(None)).order_by(Plan.id))


def reminders(s: Session, now: datetime | None = None) -> int:
    """The clock's round: queue today's reminders (one message per recipient and plan per
    local day, after the plan's send hour, never on weekends unless the plan allows it).
    Commits per plan; returns messages queued."""
    now = now or clock.now()
    queued = 0
    for plan_id in [p.id for p in _active_plans(s)]:
        plan = s.get(Plan, plan_id)
        try:
            queued += _remind_plan(s, plan, now)
            s.commit()
        except IntegrityError:  # another clock did this plan at the same moment
            s.rollback()
    return queued


def _remind_plan(s: Session, plan: Plan, now: datetime) -> int:
    settings = plan_settings(s, plan)
    if not settings["reminders"]:  # switched off in the editor; "Send reminder" still works
        return 0
    people = {}
    for m in _open_buyer_milestones(plan):
        people.update({e: n for e, n in recipients_of(plan, m)})
    queued = 0
    for email, name in sorted(people.items()):
        local = _local_now(settings, email, now)
        if local.hour < int(settings["send_hour"]) or (
                local.weekday() >= 5 and not settings["weekends"]):
            continue
        if opted_out(s, plan.tenant_id, email, plan.id):
            continue
        day = local.date()
        items = _due_items(s, plan, email, day, int(settings["remind_days_before"]))
        if not items:
            continue
        if _queue_reminder(s, plan, email, name, items, f"reminder:{plan.id}:{email}:{day}",
                           "reminder"):
            queued += 1
            for m, kind, _days in items:
                s.add(ReminderLog(tenant_id=plan.tenant_id, milestone_id=m.id, email=email,
                                  kind=kind, due_date=m.due_date, sent_on=day))
            s.flush()
    return queued


def nudge(s: Session, plan: Plan, actor: str) -> int:
    """The rep's "Send reminder": every owner of an open buyer-side milestone gets their
    reminder now, at most once an hour. Returns how many were queued (the caller commits)."""
    now = clock.now()
    people: dict[str, list] = {}
    for m in _open_buyer_milestones(plan):
        for email, name in recipients_of(plan, m):
            people.setdefault(email, [name, []])[1].append(m)
    sent = 0
    for email, (name, milestones) in sorted(people.items()):
        if opted_out(s, plan.tenant_id, email, plan.id):
            continue
        recent = s.scalar(select(func.count()).select_from(Notification).where(
            Notification.tenant_id == plan.tenant_id, Notification.recipient == email,
            Notification.kind == "nudge", Notification.plan_id == plan.id,
            Notification.created_at > now - NUDGE_EVERY))
        if recent:
            continue
        day = clock.today()
        items = [(m, "overdue" if m.due_date and m.due_date < day else "due",
                  abs((m.due_date - day).days) if m.due_date else None) for m in milestones]
        if _queue_reminder(s, plan, email, name, items, f"nudge:{plan.id}:{email}:{new_id()}",
                           "nudge"):
            sent += 1
    if sent:
        plans.touch(s, plan, actor, "reminder.sent", None, {"recipients": sent})
    return sent


# ---- rep alerts ------------------------------------------------------------------------------


ALERTS = {"date.proposed": "proposed a new date", "comment.added": "commented",
          "milestone.updated": "completed a gate milestone"}


def on_change(s: Session, plan: Plan, actor: str, action: str, subject_id, detail: dict) -> None:
    """Called by plans.touch: a buyer's proposal, comment or completed gate alerts the rep."""
    if not actor.startswith("buyer:") or action not in ALERTS or plan.owner_user_id is None:
        return
    m = s.get(Milestone, subject_id) if subject_id else None
    status = (detail or {}).get("status")  # plans.touch passes [old, new] for each changed field
    if action == "milestone.updated" and not (
            m is not None and isinstance(status, list) and status[-1] == "done"
            and _is_gate(s, plan, m)):
        return
    user = s.get(User, plan.owner_user_id)
    if user is None:
        return
    prefs = user_settings(s, user)
    if not prefs["instant"]:
        return
    context = {"brand": _brand(s, plan.tenant_id), "plan": plan, "user": user,
               "who": actor.removeprefix("buyer:"), "what": ALERTS[action], "action": action,
               "milestone": m.title if m else "", "detail": detail or {},
               "editor_url": f"{_keys().base_url}/app", "prefs_url": f"{_keys().base_url}/app/notifications"}
    _to_user(s, user, prefs, f"alert:{new_id()}", plan, "alert", "rep_alert", context)


def _to_user(s: Session, user: User, prefs: dict, key: str, plan: Plan | None, kind: str,
             template: str, context: dict) -> int:
    """E-mail (when the user has an address) and Slack (the user's, else the tenant's)."""
    count = 0
    plan_id = plan.id if plan else None
    if user.email:
        count += queue(s, key=key, tenant_id=user.tenant_id, plan_id=plan_id, kind=kind,
                       recipient=user.email, template=template, context=context)
    slack = prefs.get("slack_url") or tenant_settings(s, user.tenant_id)["slack_url"]
    if slack:
        count += queue(s, key=f"{key}:slack", tenant_id=user.tenant_id, plan_id=plan_id,
                       kind=kind, recipient=slack, template=template, context=context,
                       channel="slack")
    return count


def _is_gate(s: Session, plan: Plan, m: Milestone) -> bool:
    """A stage gate of the plan's pipeline mapping, or (no CRM) a close milestone."""
    installation = outbox.installation_for(s, plan)
    title = mirror.key(m.title)
    if installation is not None:
        for mapping in s.scalars(select(StageMapping).where(
                StageMapping.installation_id == installation.id)):
            if title in (mapping.gates or {}) or title == mirror.key(mapping.close_milestone or ""):
                return True
    return title in ("commercial agreement", "contract signed")


# ---- digests and stalled plans ----------------------------------------------------------------


def _buyer_activity(s: Session, plan_ids: list[str], since: datetime) -> list[Activity]:
    if not plan_ids:
        return []
    return list(s.scalars(select(Activity).where(
        Activity.plan_id.in_(plan_ids), Activity.actor.like("buyer:%"), Activity.at >= since)
        .order_by(Activity.at)))


def digests(s: Session, now: datetime | None = None) -> int:
    """The clock's daily round per user: a digest of yesterday's buyer activity and the
    stalled plans (each at most once a day / once a week). Commits; returns messages queued."""
    now = now or clock.now()
    queued = 0
    for user in list(s.scalars(select(User).order_by(User.id))):
        prefs = user_settings(s, user)
        local = now.astimezone(zone(prefs["timezone"]))
        if local.hour < 8:
            continue
        owned = list(s.scalars(select(Plan).where(Plan.owner_user_id == user.id,
                                                  Plan.archived_at.is_(None))))
        if prefs["digest"]:
            queued += _digest(s, user, prefs, owned, now, local.date())
        if prefs["stalled"]:
            for plan in owned:
                queued += _stalled(s, user, prefs, plan, now, local.date())
        s.commit()
    return queued


def _digest(s, user, prefs, owned, now, day) -> int:
    rows = _buyer_activity(s, [p.id for p in owned], now - timedelta(days=1))
    if not rows:
        return 0
    titles = {p.id: p.title for p in owned}
    context = {"brand": _brand(s, user.tenant_id), "user": user, "day": day,
               "rows": [{"plan": titles[a.plan_id], "who": a.actor.removeprefix("buyer:"),
                         "action": a.action, "milestone": (a.detail or {}).get("milestone", "")}
                        for a in rows],
               "prefs_url": f"{_keys().base_url}/app/notifications"}
    return _to_user(s, user, prefs, f"digest:{user.id}:{day}", None, "digest", "digest", context)


def stalled_reason(s: Session, plan: Plan, now: datetime) -> str | None:
    day = clock.today()
    late = [m for m in plans.ordered_milestones(plan) if m.status != "done" and m.due_date
            and (day - m.due_date).days >= STALLED_OVERDUE_DAYS]
    if late:
        return f"“{late[0].title}” is {(day - late[0].due_date).days} days overdue"
    last = s.scalar(select(func.max(Activity.at)).where(Activity.plan_id == plan.id,
                                                        Activity.actor.like("buyer:%")))
    since = clock.aware(last) or clock.aware(plan.created_at)
    if now - since >= timedelta(days=STALLED_QUIET_DAYS):
        return f"no buyer activity for {(now - since).days} days"
    return None


def _stalled(s, user, prefs, plan, now, day) -> int:
    reason = stalled_reason(s, plan, now)
    if reason is None:
        return 0
    year, week, _ = day.isocalendar()
    context = {"brand": _brand(s, user.tenant_id), "user": user, "plan": plan, "reason": reason,
               "prefs_url": f"{_keys().base_url}/app/notifications"}
    return _to_user(s, user, prefs, f"stalled:{plan.id}:{year}-W{week}", plan, "stalled",
                    "stalled", context)


# ---- delivery ---------------------------------------------------------------------------------


def claim(s: Session, limit: int = 20) -> list[str]:
    query = (select(Notification.id).where(Notification.status == "pending",
                                           Notification.next_attempt_at <= clock.now())
             .order_by(Notification.next_attempt_at).limit(limit))
    if s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for row_id in s.scalars(query).all():
        result = s.execute(update(Notification).where(
            Notification.id == row_id, Notification.status == "pending")
            .values(status="sending", claimed_at=clock.now(), attempts=Notification.attempts + 1))
        if result.rowcount == 1:
            claimed.append(row_id)
    s.commit()
    return claimed


def recover_interrupted(s: Session) -> int:
    """Rows left "sending" by a worker that died: failed, never re-sent (see the docstring)."""
    result = s.execute(update(Notification).where(
        Notification.status == "sending", Notification.claimed_at < clock.now() - LEASE)
        .values(status="failed", last_error="interrupted while sending: it may or may not have "
                "gone out, so it is not sent again"))
    s.commit()
    return result.rowcount


def deliver(s: Session, limit: int = 20, after_send=None) -> int:
    """Claim due rows and send them; returns how many were sent. `after_send` (bench/, tests)
    runs between the send and the mark, where a killed worker would stop."""
    recover_interrupted(s)
    sent = 0
    for row_id in claim(s, limit):
        row = s.get(Notification, row_id)
        try:
            _send(row)
        except mail.MailError as exc:
            _failed(row, exc.detail, exc.permanent)
            s.commit()
            continue
        if after_send is not None:
            after_send(row)
        row.status, row.sent_at, row.last_error = "sent", clock.now(), ""
        s.commit()
        sent += 1
    return sent


def _failed(row: Notification, error: str, permanent: bool) -> None:
    row.last_error = error[:2000]
    if permanent or row.attempts >= MAX_ATTEMPTS:
        row.status = "failed"
        return
    delay = min(BACKOFF_CAP, 30 * 2 ** row.attempts) * (0.5 + random.random() / 2)
    row.status, row.next_attempt_at = "pending", clock.now() + timedelta(seconds=delay)


def _send(row: Notification) -> None:
    config = current_app.config
    if row.channel == "slack":
        return _post_slack(row.recipient, row.subject, row.text_body)
    if not config.get("SMTP_URL"):
        raise mail.MailError("SMTP_URL is not set")
    msg = mail.build(sender=config["MAIL_FROM"], to=row.recipient, subject=row.subject,
                     text=row.text_body, html=row.html_body, key=row.key, headers=row.headers)
    mail.send(config["SMTP_URL"], msg)


# ---- Slack incoming webhooks ---------------------------------------------------------------


def check_webhook_url(url: str):
    """HTTPS to a public address; private, loopback and link-local addresses are refused
    unless NOTIFY_ALLOW_PRIVATE_URLS is set (local development, tests), which also allows
    http to loopback. Returns the pinned target (webapp/outbound.py: the one SSRF guard)."""
    allow = bool(current_app.config.get("NOTIFY_ALLOW_PRIVATE_URLS"))
    try:
        return outbound.pin(url, allow_private=allow, allow_http=allow)
    except outbound.Refused as exc:
        raise Invalid("slack_url", exc.detail) from None


def _post_slack(url: str, subject: str, text: str) -> None:
    try:
        target = check_webhook_url(url)
    except Invalid as exc:
        raise mail.MailError(exc.detail, permanent=True) from None
    body = json.dumps({"text": f"*{subject}*\n{text}"}).encode()
    try:  # connects to the address just checked (DNS pinning); never follows a redirect
        answer = outbound.post(target, body, {"Content-Type": "application/json"},
                               timeout=(10.0, 10.0))
    except Exception as exc:  # noqa: BLE001 - connection, TLS and timeout errors alike
        raise mail.MailError(f"slack: {type(exc).__name__}") from None
    if answer.status >= 300:
        raise mail.MailError(f"slack: HTTP {answer.status}",
                             permanent=400 <= answer.status < 500 and answer.status != 429)
