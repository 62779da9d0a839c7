"""Where background work runs.

- With REDIS_URL: RQ. `mutualplan worker` runs jobs inside the app context;
  `mutualplan clock` enqueues the periodic ones (outbox sweep, reconcile
  pulls, token keep-alive).
- Without: one background thread per app (the embedded default), woken after
  every commit that wrote outbox rows, and by its own timer for deferred rows.
- JOBS_MODE=inline (tests): the same work, run to completion right after the
  commit, on a separate thread and session, before the request returns.
  JOBS_MODE=manual (tests): nothing runs until the test calls the task.

Jobs are kicked only *after* commit (a SQLAlchemy after_commit hook), so a
rolled-back change never runs a job: the outbox row is the job.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone

from flask import Flask, current_app
from sqlalchemy import event, select

from connector import ratelimit

from . import outbox, sync
from .db import database
from .models import Installation

log = logging.getLogger("mutualplan.jobs")
EXT = "mutualplan.jobs"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


# ---- the work ------------------------------------------------------------------


def relay(batch: int = 10, max_rounds: int | None = None) -> int:
    """Claim and push due outbox rows until none are left; returns rows handled."""
    handled, rounds, name = 0, 0, worker_name()
    Session = database().Session
    while max_rounds is None or rounds < max_rounds:
        rounds += 1
        s = Session()
        try:
            ids = outbox.claim(s, name, batch)
            if not ids:
                return handled
            for entry_id in ids:
                sync.push_entry(s, entry_id)
                handled += 1
        finally:
            Session.remove()
    return handled


def sweep() -> dict:
    Session = database().Session
    try:
        return {"requeued": outbox.sweep(Session())}
    finally:
        Session.remove()


def pull(installation_id: str) -> int:
    Session = database().Session
    try:
        return sync.pull_installation(Session(), installation_id)
    finally:
        Session.remove()


def reconcile_all() -> int:
    Session = database().Session
    # Providers with their own poll schedule (Salesforce: adaptive interval, task "salesforce_poll")
    # are left to it.
    own_schedule = current_app.extensions.get("mutualplan.poll_due", {})
    try:
        rows = Session().scalars(select(Installation).where(Installation.status == "active")).all()
        ids = [r.id for r in rows if r.provider not in own_schedule]
    finally:
        Session.remove()
    for installation_id in ids:
        enqueue("pull", installation_id)
    return len(ids)


def keep_alive() -> int:
    """Refresh tokens that would expire soon (connectors that support it)."""
    Session = database().Session
    count = 0
    try:
        s = Session()
        for installation in s.scalars(select(Installation).where(Installation.status == "active")):
            try:
                connector = sync.connector_for(installation)
            except Exception:
                continue
            if hasattr(connector, "keep_alive"):
                try:
                    connector.keep_alive()
                    count += 1
                except Exception as exc:  # its own errors are recorded by the connector's store
                    log.warning("keep-alive failed for %s: %s", installation.id, exc)
        s.commit()
    finally:
        Session.remove()
    return count


TASKS = {"relay": relay, "sweep": sweep, "pull": pull, "reconcile": reconcile_all, "keep_alive": keep_alive}


def run_task(name: str, *args):
    """RQ entry point: runs a task inside the worker's app context."""
    return TASKS[name](*args)


# ---- dispatch ---------------------------------------------------------------------


def enqueue(name: str, *args, app: Flask | None = None) -> None:
    app = app or current_app._get_current_object()
    state = app.extensions[EXT]
    mode = state["mode"]
    if mode == "rq":
        queue = state["queue"]
        job_id = f"{name}:{':'.join(args)}" if name in ("pull",) else None
        queue.enqueue("webapp.jobs.run_task", name, *args, job_id=job_id, result_ttl=60, failure_ttl=86400)
    elif mode == "thread":
        state["runner"].submit(name, *args)
    elif mode == "manual":  # tests drive the work themselves
        state.setdefault("queued", []).append((name, args))
    else:  # inline
        _run_in_new_context(app, name, *args)


def _run_in_new_context(app: Flask, name: str, *args):
    """Run a task on a fresh thread (its own scoped session) and wait for it."""
    box = {}

    def target():
        with app.app_context():
            box["result"] = TASKS[name](*args)

    thread = threading.Thread(target=target, name=f"job-{name}")
    thread.start()
    thread.join()
    return box.get("result")


class ThreadRunner:
    """The embedded default: one daemon thread running relay passes, queued tasks,
    and the clock's periodic tasks (what `mutualplan clock` does with Redis)."""

    def __init__(self, app: Flask):
        self.app = app
        self.wake = threading.Event()
        self.tasks: list = []
        self.lock = threading.Lock()
        self.thread = None
        self.last_run: dict[str, float] = {}

    def start(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.submit("sweep")

    def submit(self, name: str, *args) -> None:
        with self.lock:
            if (name, args) not in self.tasks:
                self.tasks.append((name, args))
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="mutualplan-jobs", daemon=True)
                self.thread.start()
        self.wake.set()

    def _loop(self) -> None:
        with self.app.app_context():
            while True:
                self.wake.clear()
                with self.lock:
                    tasks, self.tasks = self.tasks, []
                for name, args in tasks + self._clock_tasks():
                    try:
                        TASKS[name](*args)
                    except Exception:
                        log.exception("job %s failed", name)
                self.wake.wait(timeout=min(self._until_next_due(), self._until_next_tick()))

    def _clock_tasks(self) -> list:
        now = time.monotonic()
        due = []
        for name, every in CLOCK:
            if name != "relay" and name in TASKS and now - self.last_run.setdefault(name, now) >= every:
                self.last_run[name] = now
                due.append((name, ()))
        return due

    def _until_next_tick(self) -> float:
        now = time.monotonic()
        waits = [every - (now - self.last_run.get(name, now)) for name, every in CLOCK if name != "relay"]
        return max(0.05, min(waits, default=30.0))

    def _until_next_due(self) -> float:
        Session = database().Session
        try:
            due = outbox.next_due(Session())
        finally:
            Session.remove()
        if due is None:
            return 30.0
        if due.tzinfo is None:
            due = due.replace(tzinfo=timezone.utc)
        wait = (due - datetime.now(timezone.utc)).total_seconds()
        if wait <= 0:
            self.submit("relay")
            return 0.05
        return min(wait, 30.0)


def init_app(app: Flask) -> None:
    mode = app.config.get("JOBS_MODE") or ("rq" if app.config.get("REDIS_URL") else "thread")
    state = {"mode": mode}
    if mode == "rq":
        import redis
        from rq import Queue

        state["redis"] = redis.Redis.from_url(app.config["REDIS_URL"])
        state["queue"] = Queue("mutualplan", connection=state["redis"])
    elif mode == "thread":
        state["runner"] = ThreadRunner(app)

        @app.before_request
        def _start_runner():  # periodic work starts with the first request, not with CLI commands
            state["runner"].start()
    app.extensions[EXT] = state
    app.extensions["mutualplan.ratelimiter"] = _rate_limiters(app, state)

    @event.listens_for(database(app).Session.session_factory, "after_commit")
    def _kick(session):
        if session.info.pop("outbox_written", False):
            enqueue("relay", app=app)  # no app context here: this runs inside commit()

    @event.listens_for(database(app).Session.session_factory, "after_rollback")
    def _forget(session):
        session.info.pop("outbox_written", None)


def _rate_limiters(app: Flask, state: dict) -> dict:
    """Token buckets per provider: in Redis when there is Redis, so all workers share them."""
    limits = {"hubspot": ratelimit.HUBSPOT, "salesforce": ratelimit.SALESFORCE}
    if state.get("redis") is not None:
        return {p: ratelimit.RedisTokenBucket(state["redis"], **cfg) for p, cfg in limits.items()}
    return {p: ratelimit.TokenBucket(**cfg) for p, cfg in limits.items()}


def rate_limiter(provider: str):
    return current_app.extensions["mutualplan.ratelimiter"].get(provider)


# ---- long-running processes ----------------------------------------------------------


def run_worker(burst: bool = False) -> None:
    """An RQ worker in this process, jobs running in the current app context."""
    from rq import SimpleWorker

    state = current_app.extensions[EXT]
    if state["mode"] != "rq":
        raise SystemExit("`mutualplan worker` needs REDIS_URL; without it jobs run inside the web process.")
    SimpleWorker([state["queue"]], connection=state["redis"]).work(burst=burst, with_scheduler=False)


CLOCK = [("relay", 10.0), ("sweep", 60.0), ("reconcile", 300.0), ("keep_alive", 3600.0)]


def run_clock(ticks: int | None = None, interval: float = 1.0) -> None:
    """Enqueue the periodic jobs; a due outbox row never waits for more than ~10 s."""
    last = {name: 0.0 for name, _ in CLOCK}
    n = 0
    while ticks is None or n < ticks:
        now = time.monotonic()
        for name, every in CLOCK:
            if now - last[name] >= every:
                enqueue(name)
                last[name] = now
        n += 1
        time.sleep(interval)
