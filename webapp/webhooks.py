"""Outgoing webhooks (issue 13, item 6): admins register HTTPS endpoints for events; each
event is signed the Standard Webhooks way (https://www.standardwebhooks.com) and delivered
by the workers, never inside the request that caused it.

- Events are `webhook_deliveries` rows written in the transaction of the change (plans.touch
  calls `on_change`; the buyer page calls `viewed`), one row per subscribed endpoint, with
  the exact JSON body that every attempt signs and sends. A rolled-back change sends nothing.
- Headers: `webhook-id` (the message id, the same for every attempt and replay: receivers
  use it to deduplicate), `webhook-timestamp` (the attempt's Unix time) and
  `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
  base64-decoded part of the endpoint's `whsec_…` secret (shown once, stored encrypted).
- Delivery is at least once: a 2xx is success; anything else (3xx too: redirects are not
  followed, 4xx, 5xx, timeouts, refused connections) is retried with exponential backoff and
  jitter until 24 hours after the event, then the row is failed. 410 Gone disables the
  endpoint, as the spec suggests. A row left "sending" by a worker that died goes back to
  pending after a lease (a receiver may see that message twice, with the same webhook-id).
- SSRF: every attempt goes through webapp/outbound.py (resolve once, refuse private targets
  unless the endpoint allows them, connect to the checked address).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import Text, cast, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import clock, outbound
from .domain_errors import Conflict, Invalid, NotFound
from .models import Plan, WebhookDelivery, WebhookEndpoint, new_id

EVENTS = ("plan.updated", "milestone.completed", "milestone.date_proposed", "buyer.commented",
          "buyer.viewed")
RETRY_FOR = timedelta(hours=24)
FIRST_DELAY = 5.0  # seconds before the first retry; then ×4 each time, at most MAX_DELAY
MAX_DELAY = 6 * 3600.0
LEASE = timedelta(minutes=2)  # longer than one attempt with its timeouts
VIEW_EVERY = "%Y-%m-%dT%H"  # buyer.viewed: at most once per link, viewer and hour
MAX_ENDPOINTS = 20  # per tenant


# ---- signing (Standard Webhooks, symmetric) ------------------------------------------------


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _cipher():
    from .installations import cipher  # the same keys (and rotation) as stored CRM tokens

    return cipher()


def secret_of(endpoint: WebhookEndpoint) -> str:
    return _cipher().decrypt(endpoint.secret.encode()).decode()


# ---- endpoints -------------------------------------------------------------------------------


def _config_allows_http() -> bool:
    return bool(current_app.config.get("WEBHOOK_ALLOW_HTTP_LOOPBACK"))


def check_url(url: str, allow_private: bool) -> outbound.Target:
    try:
        return outbound.pin(url, allow_private=allow_private, allow_http=_config_allows_http())
    except outbound.Refused as exc:
        raise Invalid("url", exc.detail) from None


def _check_events(events) -> list[str]:
    if not isinstance(events, list) or not events:
        raise Invalid("events", f"one or more of {', '.join(EVENTS)}")
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise Invalid("events", f"unknown event {unknown[0]!r}; one of {', '.join(EVENTS)}")
    return [e for e in EVENTS if e in events]


def _check_description(text: str) -> str:
    text = (text or "").strip()
    if len(text) > 200:
        raise Invalid("description", "at most 200 characters")
    return text


def endpoints(s: Session, tenant_id: str) -> list[WebhookEndpoint]:
    return list(s.scalars(select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)
                          .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)))


def get_endpoint(s: Session, tenant_id: str, endpoint_id: str) -> WebhookEndpoint:
    row = s.get(WebhookEndpoint, endpoint_id)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound("No webhook endpoint with this id.")
    return row


def create_endpoint(s: Session, tenant_id: str, *, url: str, events: list, description: str = "",
                    allow_private: bool = False, actor: str = "") -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (the only time the secret is returned). The caller commits."""
    events = _check_events(events)
    description = _check_description(description)
    check_url(url, allow_private)
    if len(endpoints(s, tenant_id)) >= MAX_ENDPOINTS:
        raise Invalid("url", f"at most {MAX_ENDPOINTS} endpoints per team; delete one first")
    secret = new_secret()
    row = WebhookEndpoint(tenant_id=tenant_id, url=url.strip(), events=events,
                          description=description, allow_private=bool(allow_private),
                          secret=_cipher().encrypt(secret.encode()).decode(), created_by=actor[:200])
    s.add(row)
    s.flush()
    return row, secret


def update_endpoint(s: Session, row: WebhookEndpoint, changes: dict) -> WebhookEndpoint:
    """Change url, events, description, allow_private or active (re-enabling clears the reason)."""
    if "events" in changes:
        row.events = _check_events(changes["events"])
    if "description" in changes:
        row.description = _check_description(changes["description"])
    if "allow_private" in changes:
        row.allow_private = bool(changes["allow_private"])
    if "url" in changes or "allow_private" in changes:
        url = changes.get("url", row.url)
        check_url(url, row.allow_private)
        row.url = url.strip()
    if "active" in changes:
        row.active = bool(changes["active"])
        if row.active:
            row.disabled_reason = ""
    row.updated_at = clock.now()
    s.flush()
    return row


def delete_endpoint(s: Session, row: WebhookEndpoint) -> None:
    s.delete(row)  # its deliveries go with it (ON DELETE CASCADE, and here explicitly for SQLite)
    s.execute(WebhookDelivery.__table__.delete().where(WebhookDelivery.endpoint_id == row.id))
    s.flush()


# ---- events ----------------------------------------------------------------------------------


def _insert(s: Session):
    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert


def _subscribed(s: Session, tenant_id: str) -> list[WebhookEndpoint]:
    return list(s.scalars(select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id,
                                                        WebhookEndpoint.active.is_(True))))


def fire(s: Session, tenant_id: str, event_type: str, data: dict, *, dedupe_key: str | None = None,
         targets: list[WebhookEndpoint] | None = None) -> int:
    """Queue `event_type` for every active endpoint of the tenant subscribed to it, in the
    current transaction. Returns rows queued (a dedupe key already used queues nothing)."""
    targets = [e for e in (targets if targets is not None else _subscribed(s, tenant_id))
               if event_type in (e.events or [])]
    if not targets:
        return 0
    now = clock.now()
    msg_id = "msg_" + new_id().replace("-", "")
    body = json.dumps({"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"),
                       "data": data}, separators=(",", ":"), ensure_ascii=False, default=str)
    queued = 0
    for endpoint in targets:
        statement = _insert(s)(WebhookDelivery).values(
            id=new_id(), tenant_id=tenant_id, endpoint_id=endpoint.id, msg_id=msg_id,
            event_type=event_type, body=body, dedupe_key=dedupe_key, status="pending", attempts=0,
            next_attempt_at=now, give_up_at=now + RETRY_FOR, last_error="", created_at=now)
        if dedupe_key is not None:
            statement = statement.on_conflict_do_nothing(index_elements=["endpoint_id", "dedupe_key"])
        if s.execute(statement.returning(WebhookDelivery.id)).first() is not None:
            queued += 1
    if queued:
        s.info["webhooks_written"] = True
    return queued


def _plan_data(plan: Plan) -> dict:
    deal = ({"provider": plan.deal_provider, "account_id": plan.deal_account_id,
             "deal_id": plan.deal_id} if plan.deal_provider else None)
    return {"id": plan.id, "title": plan.title, "version": plan.version, "deal": deal}


def _milestone_data(s: Session, subject_id) -> dict | None:
    from .models import Milestone

    m = s.get(Milestone, subject_id) if subject_id else None
    if m is None:
        return None
    return {"id": m.id, "title": m.title, "status": m.status, "owner_side": m.owner_side,
            "due_date": m.due_date.isoformat() if m.due_date else None}


def _buyer(actor: str) -> dict | None:
    if not actor.startswith("buyer:"):
        return None
    text = actor.removeprefix("buyer:")
    name, _, email = text.partition(" <")
    return {"name": name, "email": email.rstrip(">")}


def on_change(s: Session, plan: Plan, actor: str, action: str, subject_id, detail: dict) -> None:
    """Called by plans.touch: every change is `plan.updated`; some are also a specific event."""
    targets = _subscribed(s, plan.tenant_id)
    if not targets:
        return
    base = {"plan": _plan_data(plan), "actor": actor, "change": action}
    fire(s, plan.tenant_id, "plan.updated", {**base, "subject_id": subject_id}, targets=targets)
    status = (detail or {}).get("status")
    if action == "milestone.updated" and isinstance(status, list) and status[-1] == "done":
        fire(s, plan.tenant_id, "milestone.completed",
             {**base, "milestone": _milestone_data(s, subject_id)}, targets=targets)
    elif action == "date.proposed":
        fire(s, plan.tenant_id, "milestone.date_proposed",
             {**base, "milestone": _milestone_data(s, subject_id), "buyer": _buyer(actor),
              "proposal": {"id": detail.get("proposal_id"), "from": detail.get("from"),
                           "to": detail.get("to"), "reason": detail.get("reason")}},
             targets=targets)
    elif action == "comment.added" and actor.startswith("buyer:"):
        fire(s, plan.tenant_id, "buyer.commented",
             {**base, "milestone": _milestone_data(s, subject_id), "buyer": _buyer(actor),
              "comment": {"id": detail.get("comment_id"), "excerpt": detail.get("excerpt")}},
             targets=targets)


def wanted(tenant_id: str, event_type: str):
    """SQL: does the tenant have an active endpoint for `event_type`? A scalar expression for
    the buyer page's view upsert to answer in the same statement (no query of its own)."""
    return exists().where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.active.is_(True),
                          cast(WebhookEndpoint.events, Text).like(f'%"{event_type}"%'))


def viewed(s: Session, link, buyer) -> int:
    """A buyer page view (the caller commits): `buyer.viewed`, at most once per link, viewer and
    hour (a dedupe key). The buyer page calls it only when `wanted` said so."""
    email = (buyer.email.lower() if buyer else "")
    at = clock.now()
    return fire(s, link.tenant_id, "buyer.viewed",
                {"plan": {"id": link.plan_id}, "link": {"id": link.id},
                 "buyer": {"name": buyer.name, "email": email} if buyer else None},
                dedupe_key=f"buyer.viewed:{link.id}:{email}:{at.strftime(VIEW_EVERY)}"[:200])


# ---- the delivery log and replay ------------------------------------------------------------


def deliveries(s: Session, tenant_id: str, endpoint_id: str, limit: int = 50,
               status: str | None = None) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id,
                                          WebhookDelivery.endpoint_id == endpoint_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    return list(s.scalars(query.order_by(WebhookDelivery.created_at.desc(),
                                         WebhookDelivery.id).limit(limit)))


def replay(s: Session, tenant_id: str, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
    """Send a delivered or failed message again (same webhook-id and body, a new timestamp and
    signature), with a fresh 24-hour retry window. The caller commits."""
    row = s.get(WebhookDelivery, delivery_id)
    if row is None or row.tenant_id != tenant_id or row.endpoint_id != endpoint_id:
        raise NotFound("No webhook delivery with this id.")
    if row.status in ("pending", "sending"):
        raise Conflict("This delivery is queued already.")
    now = clock.now()
    row.status, row.attempts, row.next_attempt_at = "pending", 0, now
    row.give_up_at, row.last_error = now + RETRY_FOR, ""
    s.info["webhooks_written"] = True
    return row


# ---- delivery (the workers) ------------------------------------------------------------------


def claim(s: Session, limit: int = 20) -> list[str]:
    """Take due rows (pending -> sending, committed); rows of dead workers come back first.
    Three statements whatever the batch size: the database round trip is most of the cost."""
    s.execute(update(WebhookDelivery).where(
        WebhookDelivery.status == "sending", WebhookDelivery.claimed_at < clock.now() - LEASE)
        .values(status="pending"))
    query = (select(WebhookDelivery.id).where(WebhookDelivery.status == "pending",
                                              WebhookDelivery.next_attempt_at <= clock.now())
             .order_by(WebhookDelivery.next_attempt_at).limit(limit))
    if s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(s.scalars(query))
    claimed = []
    if ids:  # the status guard makes this safe where SKIP LOCKED does not exist (SQLite)
        claimed = list(s.scalars(update(WebhookDelivery).where(
            WebhookDelivery.id.in_(ids), WebhookDelivery.status == "pending")
            .values(status="sending", claimed_at=clock.now())
            .returning(WebhookDelivery.id), execution_options={"synchronize_session": False}))
    s.commit()
    return claimed


def deliver(s: Session, limit: int = 20) -> int:
    """Claim due rows and attempt each once (each result committed on its own); returns how
    many were delivered."""
    ids = claim(s, limit)
    if not ids:
        return 0
    rows = list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                          .order_by(WebhookDelivery.next_attempt_at)))
    endpoint_ids = {r.endpoint_id for r in rows}
    by_id = {e.id: e for e in s.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.id.in_(endpoint_ids)))}
    delivered = 0
    # Each result is committed at once, without re-reading the batch after every commit: its
    # rows are this worker's until marked, and an endpoint edited meanwhile applies next batch.
    expire, s.expire_on_commit = s.expire_on_commit, False
    try:
        for row in rows:
            delivered += attempt(s, row, by_id.get(row.endpoint_id))
            s.commit()
    finally:
        s.expire_on_commit = expire
    return delivered


def attempt(s: Session, row: WebhookDelivery, endpoint: WebhookEndpoint | None) -> bool:
    now = clock.now()
    row.attempts += 1
    row.last_attempt_at = now
    if endpoint is None or not endpoint.active:
        row.status, row.last_error = "failed", "the endpoint is disabled"
        return False
    config = current_app.config
    try:
        target = outbound.pin(endpoint.url, allow_private=endpoint.allow_private,
                              allow_http=bool(config.get("WEBHOOK_ALLOW_HTTP_LOOPBACK")))
    except outbound.Refused as exc:
        if "resolve" in exc.detail:
            return _retry(row, exc.detail, None)
        row.status, row.last_error, row.response_code = "failed", f"refused: {exc.detail}", None
        return False
    timestamp = int(now.timestamp())
    headers = {"Content-Type": "application/json", "User-Agent": "MutualPlan-Webhooks/1",
               "webhook-id": row.msg_id, "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(secret_of(endpoint), row.msg_id, timestamp, row.body)}
    try:
        answer = outbound.post(target, row.body.encode(), headers,
                               timeout=(float(config.get("WEBHOOK_CONNECT_TIMEOUT", 5.0)),
                                        float(config.get("WEBHOOK_READ_TIMEOUT", 15.0))),
                               ca_bundle=config.get("WEBHOOK_CA_BUNDLE"))
    except Exception as exc:  # noqa: BLE001 - urllib3 and ssl errors alike: a failed attempt
        return _retry(row, f"{type(exc).__name__} connecting to {target.address}", None)
    row.response_code = answer.status
    if 200 <= answer.status < 300:
        row.status, row.delivered_at, row.last_error = "delivered", clock.now(), ""
        return True
    if answer.status == 410:  # Gone: the receiver wants no more (Standard Webhooks)
        endpoint.active, endpoint.disabled_reason = False, "the endpoint answered 410 Gone"
        row.status, row.last_error = "failed", "HTTP 410: endpoint disabled"
        return False
    return _retry(row, f"HTTP {answer.status}", _retry_after(answer.headers))


def _retry_after(headers: dict) -> float | None:
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), "")
    return float(raw) if raw.isdigit() else None


def _retry(row: WebhookDelivery, error: str, after: float | None) -> bool:
    """Exponential backoff with jitter, or failed once the next try would be past 24 hours."""
    delay = min(MAX_DELAY, FIRST_DELAY * 4 ** (row.attempts - 1)) * (0.5 + random.random() / 2)
    if after is not None:
        delay = min(MAX_DELAY, max(delay, after))
    due = clock.now() + timedelta(seconds=delay)
    row.last_error = error[:2000]
    if due > clock.aware(row.give_up_at):
        row.status = "failed"
        row.last_error = f"{row.last_error} (gave up: retried for 24 hours)"
        return False
    row.status, row.next_attempt_at = "pending", due
    return False
