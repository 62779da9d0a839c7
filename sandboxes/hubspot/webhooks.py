"""HubSpot's side of webhooks and app-card fetches: v1/v3 signatures, the signed sender."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sandbox import Portal

log = logging.getLogger("sandboxes.hubspot")


# Subscription ids the sender uses when an event does not carry one (*emulator choice*).
SUBSCRIPTION_IDS = {
    "deal.creation": 1001,
    "deal.deletion": 1002,
    "deal.propertyChange": 1003,
    "deal.associationChange": 1004,
    "deal.restore": 1005,
}
DEFAULT_WEBHOOK_SUBSCRIPTIONS = (
    ("deal.propertyChange", "dealstage"),
    ("deal.propertyChange", "closedate"),
    ("deal.deletion", None),
)


WEBHOOK_BATCH_LIMIT = 100  # events per webhook request, at most


# --------------------------------------------------------------------------------------------
# signatures

_V3_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_V3_DECODE_RE = re.compile("|".join(re.escape(k) for k in _V3_DECODE), re.IGNORECASE)


def hubspot_decode_uri(uri: str) -> str:
    """Decode exactly the 12 escapes HubSpot's v3 signature rule decodes; leave the rest as sent."""
    return _V3_DECODE_RE.sub(lambda m: _V3_DECODE[m.group(0).upper()], uri)


def _b(x: str | bytes) -> bytes:
    return x if isinstance(x, bytes) else x.encode("utf-8")


def sign_v3(method: str, uri: str, body: str | bytes, secret: str, timestamp: int | str) -> str:
    """X-HubSpot-Signature-v3: base64(HMAC-SHA256(secret, method + uri + body + timestamp)).

    `uri` is the full URL (scheme, host, path, query) as HubSpot knows it; the 12 escapes of
    HubSpot's rule are decoded first, as a verifier does, so both sides agree.
    """
    source = _b(method.upper()) + _b(hubspot_decode_uri(uri)) + _b(body) + _b(str(timestamp))
    digest = hmac.new(_b(secret), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_v1(body: str | bytes, secret: str) -> str:
    """X-HubSpot-Signature (version v1): hex(SHA256(client_secret + body))."""
    return hashlib.sha256(_b(secret) + _b(body)).hexdigest()


@dataclass
class Delivery:
    """One webhook POST made by `send_webhooks`."""

    url: str
    status: int | None
    body: bytes
    headers: dict[str, str]
    attempt: int
    response_body: bytes = b""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class FetchResponse:
    """What `card_fetch` got back from the backend."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    attempts: int

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class WebhookSender:
    """The HubSpotSandbox methods that record deal events and deliver them signed."""

    # ---- webhook events -----------------------------------------------------------------
    def _deal_events(
        self,
        portal: Portal,
        deal_id: str,
        changed: dict | None,
        created_props: dict | None,
        source: str,
        *,
        created: bool = False,
        deleted: bool = False,
        restored: bool = False,
        source_id: str | None = None,
    ) -> list[dict]:
        base = {
            "portalId": portal.portal_id,
            "objectId": int(deal_id),
            "changeSource": source,
            "occurredAt": self.now_ms(),
            "attemptNumber": 0,
        }
        if source_id:
            base["sourceId"] = source_id
        out = []
        if created:
            out.append({**base, "subscriptionType": "deal.creation", "changeFlag": "CREATED"})
        if deleted:
            out.append({**base, "subscriptionType": "deal.deletion", "changeFlag": "DELETED"})
        if restored:  # no extra payload properties for restore (changelog, see restore_deal)
            out.append({**base, "subscriptionType": "deal.restore"})
        for name, (_old, new) in (changed or {}).items():
            if name in ("hs_lastmodifieddate", "hs_deal_stage_probability", "hs_is_closed"):
                continue
            out.append(
                {
                    **base,
                    "subscriptionType": "deal.propertyChange",
                    "propertyName": name,
                    "propertyValue": new if new is not None else "",
                }
            )
        for ev in out:
            ev["eventId"] = random.randint(1, 2**31)
            ev["subscriptionId"] = SUBSCRIPTION_IDS.get(ev["subscriptionType"], 1000)
        if self.webhook_target_url:
            due = [e for e in out if self._subscribed(e)]
            if due:
                threading.Thread(
                    target=self._auto_deliver, args=(self.webhook_target_url, due), daemon=True
                ).start()
        else:
            self.events.extend(out)
        return out

    def _subscribed(self, ev: dict) -> bool:
        return any(
            ev["subscriptionType"] == st and (pn is None or ev.get("propertyName") == pn)
            for st, pn in self.webhook_subscriptions
        )

    def _auto_deliver(self, url: str, events: list[dict]) -> None:
        if self.webhook_delay:
            time.sleep(self.webhook_delay)
        out = self.send_webhooks(url, events, max_attempts=3)
        with self.lock:
            self.deliveries.extend(out)
        if not out[-1].ok:
            log.warning("HubSpot sandbox: webhook delivery to %s failed: %s", url, out[-1])

    def drain_events(self, portal_id: int | None = None, *, all_types: bool = False) -> list[dict]:
        """Take the recorded deal events HubSpot would deliver for `webhook_subscriptions`."""
        with self.lock:
            keep, out = [], []
            for ev in self.events:
                if portal_id is not None and ev["portalId"] != portal_id:
                    keep.append(ev)
                    continue
                if all_types or self._subscribed(ev):
                    out.append(ev)
            self.events = keep
            return out

    def send_webhooks(
        self,
        target_url: str,
        events: list[dict],
        client_secret: str | None = None,
        duplicate: bool = False,
        shuffle: bool = False,
        *,
        app_id: int | None = None,
        timeout: float = 5.0,
        max_attempts: int = 1,
        batch_size: int = WEBHOOK_BATCH_LIMIT,
        timestamp_ms: int | None = None,
    ) -> list[Delivery]:
        """POST events to the app's webhook URL as HubSpot does.

        Events are JSON arrays of at most 100 (`batch_size`), missing fields filled in (eventId,
        subscriptionId, portalId, appId, occurredAt, attemptNumber). Each request carries
        X-HubSpot-Signature (v1) and X-HubSpot-Signature-v3 + X-HubSpot-Request-Timestamp, signed
        with the client secret over `target_url` exactly as given. `shuffle` delivers out of order;
        `duplicate` sends every batch twice (second time attemptNumber + 1); a non-2xx answer or a
        failure is retried up to `max_attempts` in total, with attemptNumber increasing.
        """
        app = self.apps.get(app_id) if app_id else next(iter(self.apps.values()), None)
        secret = client_secret if client_secret is not None else (app.client_secret if app else "")
        evs = [dict(e) for e in events]
        for e in evs:
            e.setdefault("eventId", random.randint(1, 2**31))
            e.setdefault(
                "subscriptionId", SUBSCRIPTION_IDS.get(e.get("subscriptionType", ""), 1000)
            )
            e.setdefault("portalId", next(iter(self.portals), 0))
            e.setdefault("appId", app.app_id if app else 0)
            e.setdefault("occurredAt", self.now_ms())
            e.setdefault("attemptNumber", 0)
        if shuffle:
            random.shuffle(evs)
        batch_size = max(1, min(batch_size, WEBHOOK_BATCH_LIMIT))
        batches = [evs[i : i + batch_size] for i in range(0, len(evs), batch_size)]
        deliveries: list[Delivery] = []
        for batch in batches:
            rounds = 2 if duplicate else 1
            attempt_base = 0
            for _ in range(rounds):
                for attempt in range(attempt_base, attempt_base + max(1, max_attempts)):
                    body_events = [
                        {**e, "attemptNumber": e["attemptNumber"] + attempt} for e in batch
                    ]
                    d = self._post_webhook(
                        target_url, body_events, secret, timeout, attempt, timestamp_ms
                    )
                    deliveries.append(d)
                    attempt_base = attempt + 1
                    if d.ok:
                        break
        return deliveries

    def _post_webhook(
        self,
        url: str,
        events: list[dict],
        secret: str,
        timeout: float,
        attempt: int,
        timestamp_ms: int | None,
    ) -> Delivery:
        body = json.dumps(events, separators=(",", ":")).encode("utf-8")
        ts = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) (sandbox)",
            "X-HubSpot-Signature": sign_v1(body, secret),
            "X-HubSpot-Signature-Version": "v1",
            "X-HubSpot-Signature-v3": sign_v3("POST", url, body, secret, ts),
            "X-HubSpot-Request-Timestamp": ts,
        }
        status, resp, err = _http("POST", url, body, headers, timeout)
        return Delivery(url, status, body, headers, attempt, resp, err)

    def card_fetch(
        self,
        url: str,
        method: str = "GET",
        json_body: Any = None,
        client_secret: str | None = None,
        portal_id: int | None = None,
        user_id: int | None = None,
        *,
        json: Any = None,
        user_email: str | None = None,
        app_id: int | None = None,
        params: dict[str, Any] | None = None,
        timeout: float = 15.0,
        retry_once: bool = True,
    ) -> FetchResponse:
        """Call the backend as `hubspot.fetch` from an app card does.

        Appends portalId, userId, userEmail and appId (then `params`, e.g. associatedObjectId) to
        the query string, signs method + full URL + JSON body + timestamp (v3) with the client
        secret, sends JSON for POST/PUT/PATCH and, like HubSpot, retries once on a connection
        failure or 5xx. No other headers are sent (hubspot.fetch allows none).
        """
        body_obj = json if json is not None else json_body
        app = self.apps.get(app_id) if app_id else next(iter(self.apps.values()), None)
        secret = client_secret if client_secret is not None else (app.client_secret if app else "")
        portal = self.portals.get(portal_id) if portal_id else next(iter(self.portals.values()))
        uid, email = self._user(portal, user_id)
        q = {
            "portalId": portal.portal_id,
            "userId": uid,
            "userEmail": user_email or email,
            "appId": app.app_id if app else 0,
        }
        q.update(params or {})
        parts = urllib.parse.urlsplit(url)
        query = (
            parts.query
            + ("&" if parts.query else "")
            + urllib.parse.urlencode([(k, str(v)) for k, v in q.items()])
        )
        full = urllib.parse.urlunsplit(parts._replace(query=query))
        method = method.upper()
        body = b""
        if method in ("POST", "PUT", "PATCH"):
            body = _json_dumps(body_obj if body_obj is not None else {}).encode("utf-8")
        attempts = 0
        while True:
            attempts += 1
            ts = str(int(time.time() * 1000))
            headers = {
                "X-HubSpot-Signature-v3": sign_v3(method, full, body, secret, ts),
                "X-HubSpot-Request-Timestamp": ts,
                "User-Agent": "HubSpot-UIExtensions-Fetch (sandbox)",
            }
            if body:
                headers["Content-Type"] = "application/json"
            status, resp, err = _http(
                method, full, body or None, headers, timeout, want_headers=True
            )
            if retry_once and attempts == 1 and (status is None or status >= 500):
                continue
            if status is None:
                raise ConnectionError(f"card fetch to {full} failed: {err}")
            resp_body, resp_headers = resp
            return FetchResponse(full, status, resp_headers, resp_body, attempts)


# --------------------------------------------------------------------------------------------
# HTTP helpers (stdlib only: the sender must not depend on the app's HTTP stack)


def _json_dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _http(
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    timeout: float,
    want_headers: bool = False,
):
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    ctx = None
    if url.startswith("https://") and os.environ.get("CRM_CA_BUNDLE"):
        import ssl

        ctx = ssl.create_default_context(cafile=os.environ["CRM_CA_BUNDLE"])
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            data = r.read()
            return r.status, ((data, dict(r.headers)) if want_headers else data), None
    except urllib.error.HTTPError as e:
        data = e.read()
        return e.code, ((data, dict(e.headers)) if want_headers else data), None
    except (urllib.error.URLError, OSError) as e:
        return None, ((b"", {}) if want_headers else b""), repr(e)

