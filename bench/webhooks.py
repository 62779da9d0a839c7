"""Outgoing webhooks, measured (issue 13, item 6). Prints, with one worker and a local HTTP
receiver on loopback (the endpoint's "allow private addresses" flag on, http to loopback
allowed as in tests):

1. deliveries/s: N queued events drained by one worker (claim, resolve + pin, sign, POST, mark);
2. delivery latency: from the commit of a plan change to the receiver having the signed
   request, with the embedded job thread woken after the commit: p50, p99.

    .venv/bin/python bench/webhooks.py     # PostgreSQL when reachable (bench/_setup.py)
"""
from __future__ import annotations

import statistics
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from _setup import make_app

from webapp import jobs, plans, webhooks
from webapp.auth import ensure_tenant
from webapp.db import database, session
from webapp.models import WebhookDelivery
from webapp.schemas import PlanCreate, PlanPatch

N = 500
LATENCY_SAMPLES = 200


class Receiver:
    def __init__(self):
        self.arrived: dict[str, float] = {}
        self.event = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.event:
                    outer.arrived[self.headers["webhook-id"]] = time.perf_counter()
                    outer.event.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        with self.event:
            self.event.wait_for(lambda: len(self.arrived) >= count, timeout)


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    receiver = Receiver()
    app, url = make_app(WEBHOOK_ALLOW_HTTP_LOOPBACK=True, OUTBOX_DEBOUNCE=0, JOBS_MODE="thread")
    state = app.extensions[jobs.EXT]
    state["mode"] = "manual"  # part 1 drains the queue itself: no second worker
    print(f"database: {url.split('@')[-1]}")
    with app.app_context():
        s = session()
        tenant = ensure_tenant(s, "bench")
        webhooks.create_endpoint(s, tenant.id, url=f"http://127.0.0.1:{receiver.server.server_port}/in",
                                 events=["plan.updated"], allow_private=True)
        plan = plans.create_plan(s, tenant.id, PlanCreate(title="Bench", template="quick",
                                                          start_date=date.today()), "bench", date.today())
        s.commit()
        tenant_id, plan_id = tenant.id, plan.id
        s.query(WebhookDelivery).delete()
        s.commit()

        # 1. throughput: N queued events, one worker draining them
        for i in range(N):
            webhooks.fire(s, tenant_id, "plan.updated", {"plan": {"id": plan_id}, "n": i})
        s.commit()
        start = time.perf_counter()
        sent = 0
        while sent < N:
            done = webhooks.deliver(s, limit=50)
            if not done:
                break
            sent += done
        elapsed = time.perf_counter() - start
        receiver.wait_for(N)
        print(f"throughput, one worker: {sent} deliveries in {elapsed:.2f} s = {sent / elapsed:.0f} deliveries/s")
        database().Session.remove()

    # 2. latency: commit of a change -> signed request at the receiver (embedded job thread)
    state["mode"] = "thread"  # the embedded runner: one worker thread, woken after each commit
    before = len(receiver.arrived)
    samples = []
    with app.app_context():
        state["runner"].start()
        for i in range(LATENCY_SAMPLES):
            s = session()
            plan = plans.get_plan(s, tenant_id, plan_id)
            t0 = time.perf_counter()
            plans.update_plan(s, plan, PlanPatch(title=f"Bench {i}"), "bench")
            s.commit()
            receiver.wait_for(before + i + 1)
            msg_id = max(receiver.arrived, key=receiver.arrived.get)
            samples.append((receiver.arrived[msg_id] - t0) * 1000)
            database().Session.remove()
    print(f"latency, commit -> receiver, one worker ({len(samples)} changes): "
          f"p50 {statistics.median(samples):.1f} ms, p99 {pct(samples, 99):.1f} ms")
    receiver.server.shutdown()


if __name__ == "__main__":
    main()
