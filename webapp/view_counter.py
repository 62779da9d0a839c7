"""Buyer page views, counted without a database write per view (issue 10, buyer page speed).

The buyer page used to upsert `buyer_views` on every view: a transaction (BEGIN, the upsert,
COMMIT) that cost more than the rest of a view that reuses its rendered page. Now a view
adds one to a counter per (link, viewer), and `flush` moves the counts into `buyer_views`
(analytics.record_view, one upsert per link and viewer, one transaction):

- With REDIS_URL: in Redis (HINCRBY and two HSETs in one MULTI: one round trip), shared by
  every process, so a process that dies loses nothing. The clock's `flush_views` task
  (webapp/jobs.py, every FLUSH_SECONDS) empties it, on whichever worker runs it.
- Without (or when Redis does not answer): in this process's memory. The embedded job
  thread runs the same clock task in each web process; a view also flushes when the buffer
  is older than FLUSH_SECONDS or holds MAX_KEYS viewers (a bound on memory), and the
  process flushes on exit.

Readers of `buyer_views` (engagement, coverage, health, the dashboard) see a view at most
FLUSH_SECONDS late. A link deleted before its views are flushed takes them with it, as the
foreign key's cascade would have. Counts that fail to reach the database go back to the
buffer for the next flush.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime

from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import analytics, clock, timeline, webhooks
from .db import database
from .models import Plan, ShareLink
from .sharing import Buyer

log = logging.getLogger("mutualplan.views")
EXT = "mutualplan.view_counter"
FLUSH_SECONDS = 10.0
MAX_KEYS = 10_000


@dataclass
class Count:
    views: int
    first_seen: datetime
    last_seen: datetime
    name: str

    def add(self, other: Count) -> None:
        self.views += other.views
        self.first_seen = min(self.first_seen, other.first_seen)
        if other.last_seen >= self.last_seen:
            self.last_seen, self.name = other.last_seen, other.name


Key = tuple[str, str]  # (link id, viewer email; "" before the buyer says who they are)


class MemoryCounts:
    """This process's counts; thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: dict[Key, Count] = {}
        self.since = time.monotonic()

    def add(self, key: Key, count: Count) -> None:
        with self.lock:
            if not self.counts:
                self.since = time.monotonic()
            if key in self.counts:
                self.counts[key].add(count)
            else:
                self.counts[key] = count

    def due(self) -> bool:
        return bool(self.counts) and (len(self.counts) >= MAX_KEYS
                                      or time.monotonic() - self.since >= FLUSH_SECONDS)

    def take(self) -> dict[Key, Count]:
        with self.lock:
            taken, self.counts = self.counts, {}
            return taken


class RedisCounts:
    """Three hashes under the namespace, field "<link id> <email>": the count, the first time
    seen, and "<last time seen> <name>". Written and emptied in MULTI, so a flush takes a
    consistent snapshot and a view counted meanwhile goes to the next one."""

    def __init__(self, url: str, namespace: str):
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.errors = (redis.RedisError, OSError)
        self.keys = tuple(f"mp:views:{namespace}:{part}" for part in ("n", "first", "last"))

    def add(self, key: Key, count: Count) -> None:
        field = f"{key[0]} {key[1]}"
        n, first, last = self.keys
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(n, field, count.views)
        pipe.hsetnx(first, field, count.first_seen.isoformat())
        pipe.hset(last, field, f"{count.last_seen.isoformat()} {count.name}")
        pipe.execute()

    def take(self) -> dict[Key, Count]:
        pipe = self.redis.pipeline(transaction=True)
        for name in self.keys:
            pipe.hgetall(name)
        pipe.delete(*self.keys)
        ns, firsts, lasts, _ = pipe.execute()
        taken = {}
        for field, n in ns.items():
            link_id, _, email = field.decode().partition(" ")
            last, _, name = (lasts.get(field) or b"").decode().partition(" ")
            first = (firsts.get(field) or b"").decode()
            try:
                seen_last = datetime.fromisoformat(last)
                seen_first = datetime.fromisoformat(first) if first else seen_last
            except ValueError:  # a half-written entry (cannot happen in MULTI): take it as now
                seen_first = seen_last = clock.now()
            taken[(link_id, email)] = Count(int(n), seen_first, seen_last, name)
        return taken


def _state(app: Flask | None = None) -> dict:
    return (app or current_app).extensions[EXT]


def count_view(link, buyer) -> None:
    """One buyer page view of `link` by `buyer` (None before they say who they are)."""
    now = clock.now()
    key = (link.id, (buyer.email.lower() if buyer else "")[:254])
    count = Count(1, now, now, (buyer.name if buyer else "")[:200])
    state = _state()
    if state["redis"] is not None:
        try:
            state["redis"].add(key, count)
            return
        except state["redis"].errors:  # Redis down: count in memory, flushed from here
            log.warning("view counter: Redis unavailable, counting in memory")
    memory = state["memory"]
    memory.add(key, count)
    if memory.due() and state["flushing"].acquire(blocking=False):
        try:
            _flush_memory(memory)
        finally:
            state["flushing"].release()


def flush() -> int:
    """Move the buffered counts into buyer_views (Redis's and this process's); returns the
    number of (link, viewer) rows written. The clock's `flush_views` task; tests call it."""
    state = _state()
    taken: dict[Key, Count] = {}
    if state["redis"] is not None:
        try:
            taken = state["redis"].take()
        except state["redis"].errors:
            log.warning("view counter: Redis unavailable, its counts wait for the next flush")
    with state["flushing"]:
        return _write_or_keep(_merge(taken, state["memory"].take()), state["memory"])


def _flush_memory(memory: MemoryCounts) -> int:
    return _write_or_keep(memory.take(), memory)


def _merge(into: dict[Key, Count], more: dict[Key, Count]) -> dict[Key, Count]:
    for key, count in more.items():
        if key in into:
            into[key].add(count)
        else:
            into[key] = count
    return into


def _write_or_keep(taken: dict[Key, Count], keep: MemoryCounts) -> int:
    """Write `taken`; on failure put it in `keep` (this process) for the next flush."""
    if not taken:
        return 0
    try:
        return _write(taken)
    except Exception:  # noqa: BLE001 - the counts are kept, whatever went wrong
        log.exception("view counter: flush failed; the counts wait for the next one")
        for key, count in taken.items():
            keep.add(key, count)
        return 0


def _write(taken: dict[Key, Count]) -> int:
    """One transaction on a session of its own (a view may flush in the middle of a request).

    What a view sets off happens here, in the same transaction as its count: the `buyer.viewed`
    webhook (when the tenant has an endpoint for it) and, for the first view of the day, the
    CRM timeline's "link opened" (webapp/timeline.py)."""
    with Session(database().engine) as s:
        links = {row.id: row for row in s.execute(
            select(ShareLink.id, ShareLink.tenant_id, ShareLink.plan_id, Plan.deal_id)
            .join(Plan, Plan.id == ShareLink.plan_id)
            .where(ShareLink.id.in_({link_id for link_id, _ in taken})))}
        written = 0
        for (link_id, email), c in sorted(taken.items()):  # one lock order for every flusher
            link = links.get(link_id)
            if link is None:
                continue
            buyer = Buyer(c.name, email) if email else None
            previous, wanted = analytics.record_view(
                s, link, buyer, views=c.views, first_seen=c.first_seen, last_seen=c.last_seen,
                also=webhooks.wanted(link.tenant_id, "buyer.viewed"))
            if wanted:
                webhooks.viewed(s, link, buyer)
            if link.deal_id and timeline.opened_again(previous):
                timeline.link_opened(s, link, buyer)
            written += 1
        s.commit()
        return written


def init_app(app: Flask) -> None:
    url = app.config.get("REDIS_URL")
    namespace = app.config.get("RATE_LIMIT_NAMESPACE") or "mutualplan"
    app.extensions[EXT] = {"redis": RedisCounts(url, namespace) if url else None,
                           "memory": MemoryCounts(), "flushing": threading.Lock()}

    ref = weakref.ref(app)  # tests make many apps: exit does not keep them alive

    def _at_exit():  # a web process stopping (deploy, gunicorn max_requests) keeps its counts
        app = ref()
        if app is not None and app.extensions[EXT]["memory"].counts:
            with app.app_context():
                try:
                    flush()
                except Exception:  # noqa: BLE001 - nothing left to tell at exit
                    pass

    atexit.register(_at_exit)
