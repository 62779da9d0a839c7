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
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import event, select

from connector import ratelimit
from connector.errors import CrmError, NeedsReauth, NotFound

from . import clock, notifications, outbox, providers, sync
from .db import database
from .models import Installation

log = logging.getLogger("mutualplan.jobs")
EXT = "mutualplan.jobs"


# The clock: (task, seconds between two runs). pull_due asks each provider's schedule
# (HubSpot: reconcile every 5 minutes besides webhooks; Salesforce: the adaptive poll).
SETUP_EVERY = timedelta(days=1)
CLOCK = [("relay", 10.0), ("sweep", 60.0), ("pull_due", 15.0), ("keep_alive", 3600.0),
         ("notify", 30.0), ("reminders", 900.0), ("refresh_summaries", 3600.0),
         ("webhooks", 10.0), ("flush_views", 10.0)]


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
    """One pull of one account (webhook, clock or reconnect). CRM failures never fail the job:
    sync.pull_installation records them and sets when the clock pulls again."""
    Session = database().Session
    try:
        return sync.pull_installation(Session(), installation_id)
    finally:
        Session.remove()


def setup(installation_id: str) -> dict:
    """After connect: the provider's bootstrap (connector.ensure_setup) into settings, then the
    first pull. A CRM failure is recorded (settings["setup_error"]) and the clock retries."""
    Session = database().Session
    try:
        s = Session()
        row = s.get(Installation, installation_id)
        if row is None or row.status != "active":
            return {}
        mode_before = (row.settings or {}).get("mode")
        provider = providers.get(row.provider)
        try:
            learnt = provider.setup(provider.connector_for(row))
        except NeedsReauth as exc:
            s.rollback()
            outbox.park_installation(s, s.get(Installation, installation_id), exc.detail)
            s.commit()
            return {"error": exc.detail}
        except CrmError as exc:  # NotFound: the package was uninstalled meanwhile; or CRM down
            s.rollback()
            row = s.get(Installation, installation_id)
            row.settings = {**(row.settings or {}), "setup_error": exc.detail}
            if isinstance(exc, NotFound):
                row.status_reason = exc.detail
            s.commit()
            log.warning("setup of %s deferred: %s", installation_id, exc.detail)
            return {"error": exc.detail}
        row = s.get(Installation, installation_id)
        settings = {k: v for k, v in (row.settings or {}).items() if k != "setup_error"}
        row.settings = {**settings, **learnt, "setup_at": clock.now().isoformat()}
        if mode_before and learnt.get("mode") and learnt["mode"] != mode_before:
            # The account changed shape (a HubSpot portal that upgraded to custom objects, or
            # lost them): every plan is written again in the new shape.
            log.info("%s changed mode %s -> %s", installation_id, mode_before, learnt["mode"])
            sync.push_everything(s, row)
        s.commit()
        try:
            applied = sync.pull_installation(s, installation_id)
        except CrmError as exc:  # the regular schedule catches up
            s.rollback()
            applied = 0
            log.warning("first pull of %s failed: %s", installation_id, exc.detail)
        return {"mode": learnt.get("mode"), "pipelines": sorted(learnt.get("pipelines", {})),
                "applied": applied}
    finally:
        Session.remove()


def _setup_due(row: Installation, now) -> bool:
    """Setup not finished, or finished more than SETUP_EVERY ago: the bootstrap re-runs daily
    (idempotent), so what the account can do is re-read (e.g. a HubSpot portal that upgraded
    to Enterprise gets its custom objects and a full push)."""
    done = (row.settings or {}).get("setup_at")
    return not done or now - clock.aware(datetime.fromisoformat(done)) >= SETUP_EVERY


def pull_due() -> int:
    """The clock's task: enqueue one pull per account whose provider schedule says it is due
    (and the setup of any account whose setup has not finished); returns how many."""
    Session = database().Session
    now = clock.now()
    try:
        rows = Session().scalars(select(Installation).where(Installation.status == "active")).all()
        setups = [r.id for r in rows if _setup_due(r, now)]
        due = [r.id for r in rows
               if r.id not in setups and providers.get(r.provider).is_due(r, now)]
    finally:
        Session.remove()
    for installation_id in setups:
        enqueue("setup", installation_id)
    for installation_id in due:
        enqueue("pull", installation_id)
    return len(due)


def keep_alive() -> int:
    """Refresh tokens that would expire soon (connectors that support it)."""
    Session = database().Session
    count = 0
    try:
        s = Session()
        for installation in s.scalars(select(Installation).where(Installation.status == "active")):
            try:
                connector = sync.connector_for(installation)
            except CrmError:
                continue
            if hasattr(connector, "keep_alive"):
                try:
                    connector.keep_alive()
                    count += 1
                except Exception as exc:  # its own errors are recorded by the connector's store
                    log.warning("keep-alive failed for %s: %s", installation.id,
                                type(exc).__name__)  # the class: a message may quote a token
        s.commit()
    finally:
        Session.remove()
    return count


def notify() -> int:
    """Send the due notifications (e-mail, Slack); returns how many went out."""
    Session = database().Session
    try:
        return notifications.deliver(Session())
    finally:
        Session.remove()


def reminders() -> int:
    """The clock's round: buyer reminders, then the reps' digests and stalled alerts (each
    queued once per day or week by its idempotency key), then a delivery pass."""
    Session = database().Session
    try:
        s = Session()
        queued = notifications.reminders(s) + notifications.digests(s)
        notifications.deliver(s)
        return queued
    finally:
        Session.remove()


def webhooks() -> int:
    """Deliver the due outgoing webhooks (webapp/webhooks.py); returns how many succeeded."""
    from . import webhooks as outgoing

    Session = database().Session
    try:
        return outgoing.deliver(Session())
    finally:
        Session.remove()


# Every task a queue may run; nothing adds to it at runtime (providers are data, not tasks).
def refresh_summaries() -> int:
    """The clock's task: queue pushes of the plans whose health or win probability changed
    (a closed deal moves the history, a quiet buyer the health); see analytics.py."""
    from . import analytics

    Session = database().Session
    try:
        s = Session()
        analytics.refresh_win_rates(s)  # the forecast's per-tenant cache, committed on its own
        s.commit()  # so that its row lock is never held while pushes are queued
        queued = analytics.refresh_summaries(s)
        s.commit()
    finally:
        Session.remove()
    return queued


def flush_views() -> int:
    """The clock's task: buffered buyer page views into buyer_views (webapp/view_counter.py)."""
    from . import view_counter

    return view_counter.flush()


TASKS = {"relay": relay, "sweep": sweep, "pull": pull, "setup": setup, "pull_due": pull_due,
         "keep_alive": keep_alive, "notify": notify, "reminders": reminders,
         "refresh_summaries": refresh_summaries, "webhooks": webhooks, "flush_views": flush_views}
PER_INSTALLATION = ("pull", "setup")  # one queued job per installation at a time


def _queued_already(state: dict, job_id: str) -> bool:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    try:
        status = Job.fetch(job_id, connection=state["redis"]).get_status()
    except NoSuchJobError:
        return False
    return status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED)


def run_task(name: str, *args):
    """RQ entry point: runs a task inside the worker's app context."""
    return TASKS[name](*args)


# ---- dispatch ---------------------------------------------------------------------


def enqueue(name: str, *args, app: Flask | None = None) -> None:
    app = app or current_app._get_current_object()
    state = app.extensions[EXT]
    mode = state["mode"]
    if mode == "rq":
        # A deterministic id per installation: a pull (or setup) already waiting in the queue
        # covers this one too, so overlapping webhooks and clock rounds pull an account once.
        job_id = f"{name}:{':'.join(args)}" if name in PER_INSTALLATION else None
        if job_id and _queued_already(state, job_id):
            return
        state["queue"].enqueue("webapp.jobs.run_task", name, *args, job_id=job_id, result_ttl=60,
                               failure_ttl=86400)
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


class Ticker:
    """The clock's schedule (CLOCK), shared by `mutualplan clock` and the thread runner: each
    entry is due one interval after the last time it was; `due` returns those due now."""

    def __init__(self, schedule=None, now: float | None = None):
        self.schedule = list(schedule or CLOCK)
        start = time.monotonic() if now is None else now
        self.last = {name: start for name, _ in self.schedule}

    def due(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        names = [name for name, every in self.schedule if now - self.last[name] >= every]
        for name in names:
            self.last[name] = now
        return names

    def wait(self, now: float | None = None) -> float:
        """Seconds until the next entry is due."""
        now = time.monotonic() if now is None else now
        return max(0.05, min((every - (now - self.last[name]) for name, every in self.schedule),
                             default=30.0))


class ThreadRunner:
    """The embedded default: one daemon thread running relay passes, queued tasks,
    and the clock's periodic tasks (the same Ticker as `mutualplan clock`)."""

    def __init__(self, app: Flask):
        self.app = app
        self.wake = threading.Event()
        self.tasks: list = []
        self.lock = threading.Lock()
        self.thread = None
        self.ticker = Ticker()

    def start(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.submit("sweep")

    def submit(self, name: str, *args) -> None:
        with self.lock:
            if (name, args) not in self.tasks:  # one queued pull per installation, as in RQ
                self.tasks.append((name, args))
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="mutualplan-jobs", daemon=True)
                self.thread.start()
        self.wake.set()

    def _loop(self) -> None:
        with self.app.app_context():
            while True:
                self.wake.clear()
                for name in self.ticker.due():
                    self.submit(name)  # what `mutualplan clock` enqueues, queued here
                with self.lock:
                    tasks, self.tasks = self.tasks, []
                for name, args in tasks:
                    try:
                        TASKS[name](*args)
                    except Exception:
                        log.exception("job %s failed", name)
                self.wake.wait(timeout=min(self._until_next_due(), self.ticker.wait()))

    def _until_next_due(self) -> float:
        Session = database().Session
        try:
            due = outbox.next_due(Session())
        finally:
            Session.remove()
        if due is None:
            return 30.0
        wait = (clock.aware(due) - clock.now()).total_seconds()
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

        # A bounded connect: a kick after commit must not hang a request when Redis is gone.
        state["redis"] = redis.Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=2)
        state["queue"] = Queue("mutualplan", connection=state["redis"])
    elif mode == "thread":
        state["runner"] = ThreadRunner(app)

        @app.before_request
        def _start_runner():  # periodic work starts with the first request, not with CLI commands
            state["runner"].start()
    app.extensions[EXT] = state
    app.extensions["mutualplan.ratelimiter"] = {}

    @event.listens_for(database(app).Session.session_factory, "after_commit")
    def _kick(session):
        if session.info.pop("outbox_written", False):
            kick(app)
        if session.info.pop("notifications_written", False):
            kick(app, "notify")
        if session.info.pop("webhooks_written", False):
            kick(app, "webhooks")

    @event.listens_for(database(app).Session.session_factory, "after_rollback")
    def _forget(session):
        session.info.pop("outbox_written", None)
        session.info.pop("notifications_written", None)
        session.info.pop("webhooks_written", None)


def kick(app: Flask, task: str = "relay") -> None:
    """Wake a relay after a commit that wrote outbox rows. It never raises: it runs inside
    commit(), after the change is durable, and an exception here would answer "nothing was
    saved" for a write that was saved (a client retrying it makes a duplicate). When the
    queue is unreachable the row simply waits: it is already due, and the clock's relay
    (every 10 s) or the sweeper pushes it once the queue is back."""
    try:
        enqueue(task, app=app)  # no app context here: this runs inside commit()
    except Exception as exc:  # noqa: BLE001 - whatever it is, the write is already committed
        log.warning("job queue unreachable after commit; the outbox row waits for the clock's "
                    "relay: %s", exc.__class__.__name__)


_LIMITERS_LOCK = threading.Lock()


def rate_limiter(provider: str):
    """The provider's per-account token bucket (its `rate`), made on first use: in Redis when
    there is Redis, so all workers share it."""
    app = current_app
    limiters = app.extensions["mutualplan.ratelimiter"]
    with _LIMITERS_LOCK:
        if provider not in limiters:
            cfg = providers.get(provider).rate
            redis_client = app.extensions[EXT].get("redis")
            limiters[provider] = (ratelimit.RedisTokenBucket(redis_client, **cfg) if redis_client
                                  else ratelimit.TokenBucket(**cfg))
        return limiters[provider]


# ---- long-running processes ----------------------------------------------------------


def run_worker(burst: bool = False) -> None:
    """An RQ worker in this process, jobs running in the current app context."""
    from rq import SimpleWorker

    state = current_app.extensions[EXT]
    if state["mode"] != "rq":
        raise SystemExit("`mutualplan worker` needs REDIS_URL; without it jobs run inside the web process.")
    SimpleWorker([state["queue"]], connection=state["redis"]).work(burst=burst, with_scheduler=False)


def run_clock(ticks: int | None = None, interval: float = 1.0) -> None:
    """Enqueue the periodic jobs; a due outbox row never waits for more than ~10 s."""
    ticker = Ticker()
    n = 0
    while ticks is None or n < ticks:
        for name in ticker.due():
            enqueue(name)
        n += 1
        time.sleep(interval)
