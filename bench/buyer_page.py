"""Buyer page figures: throughput and latency against a trivial endpoint, HTML size, queries.

    .venv/bin/python bench/buyer_page.py            # needs PostgreSQL (BENCH_DATABASE_URL)

Serves the app with gunicorn (2 sync workers) on PostgreSQL, in a database of
its own (`mutualplan_bench_buyer`, dropped and made afresh; never `test`), seeds the
enterprise demo plan with a buyer link, then drives 32 concurrent clients at
GET /p/<token> and at a trivial Flask endpoint (`/bench/trivial`, added to the
same app, same server) for the same time. The ratio of the two throughputs is
the figure: it does not depend much on the machine. Also printed: HTML bytes
of the demo buyer page and database queries per view (SQLAlchemy event
listener), for the demo plan and for the same plan with 40 more milestones.
"""
from __future__ import annotations

import http.client
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# bench/ must not shadow packages (bench/crm_hubspot.py vs the hubspot SDK): import from the root.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

SERVER_URL = os.environ.get("BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432")
DB_NAME = "mutualplan_bench_buyer"  # our own: other benchmarks drop `mutualplan_bench`
CLIENTS = 32
PROCESSES = 4
TOKEN_KEY = "Toeo6joCMtQIZXRkJlZkrQ8fPDCsKW90rlq6kQKHLKw="  # bench-only Fernet key
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
SECRET = "bench-secret"


def bench_app():
    """The gunicorn entry point: the real app plus a trivial endpoint on the same server."""
    from webapp import create_app

    app = create_app()
    app.config["BUYER_PAGE_CACHE"] = os.environ.get("BENCH_PAGE_CACHE", "1") == "1"

    @app.get("/bench/trivial")
    def trivial():
        return "ok"

    return app


def _fresh_database() -> str:
    import psycopg

    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    return f"{SERVER_URL}/{DB_NAME}"


def _seed(url: str, base: str) -> tuple[str, dict]:
    from webapp import create_app, migrate, plans, sharing
    from webapp.cli import seed_demo
    from webapp.db import database, make_engine, session
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET, "PUBLIC_BASE_URL": base,
                      "TOKEN_ENCRYPTION_KEYS": TOKEN_KEY,
                      "LOG_LEVEL": "WARNING"})
    figures = {}
    with app.app_context():
        s = session()
        keys = sharing.Keys.from_config(app.config)
        _, plan = seed_demo(s)
        link_url = sharing.current_or_new_link(
            s, plans.get_plan(s, plan.tenant_id, plan.id), "bench", keys)
        s.commit()
        # a second plan, like the demo but with 40 more milestones, for the queries figure
        _, big = _big_plan(s, plan.tenant_id)
        big_url = sharing.current_or_new_link(s, big, "bench", keys)
        s.commit()
    client = app.test_client()
    engine = database(app).engine

    def count(path):
        return statements_per_view(client, engine, path)

    path = urlsplit(link_url).path
    client.get("/healthz")  # the engine's first connection runs the dialect's own queries
    figures["queries"], figures["html_bytes"] = count(path)  # first view: rendered afresh
    figures["queries_warm"], _ = count(path)  # plan unchanged: the rendered page is reused
    figures["queries_big"], figures["html_bytes_big"] = count(urlsplit(big_url).path)
    figures["milestones_big"] = 11 + 40
    database(app).engine.dispose()
    return path, figures


def statements_per_view(client, engine, path: str) -> tuple[int, int]:
    """(SQL statements, HTML bytes) of one GET of `path` in this thread (not the in-process job
    runner's polls), counting the page's first read on a bare cursor (db.FastRead) too."""
    from sqlalchemy import event

    from webapp.db import FastRead

    n = [0]
    me = threading.get_ident()

    def before(*_a, **_k):
        if threading.get_ident() == me:
            n[0] += 1

    read = FastRead.first

    def counted(self, **params):
        before()
        return read(self, **params)

    FastRead.first = counted
    event.listen(engine, "before_cursor_execute", before)
    try:
        response = client.get(path)
    finally:
        event.remove(engine, "before_cursor_execute", before)
        FastRead.first = read
    assert response.status_code == 200, response.status_code
    return n[0], len(response.data)


def _big_plan(s, tenant_id):
    from webapp import plans
    from webapp.schemas import MilestoneIn, PlanCreate
    from webapp.web import date

    plan = plans.create_plan(s, tenant_id, PlanCreate(title="Big plan", template="enterprise"),
                             "bench", date.today())
    s.flush()
    for i in range(40):
        stage = plan.stages[i % len(plan.stages)]
        plans.add_milestone(s, plan, MilestoneIn(stage_id=stage.id, title=f"Extra step {i}",
                                                 owner_side="buyer"), "bench")
    return None, plan


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(port: int, path: str, threads: int, seconds: float, out):
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def run():
        mine = []
        bad = 0
        while time.perf_counter() < stop:
            start = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status != 200:
                    bad += 1
                    continue
            except OSError:
                bad += 1
                continue
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors[0]))


def load(port: int, path: str, seconds: float) -> dict:
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_worker, args=(port, path, CLIENTS // PROCESSES, seconds, queue))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    latencies, errors = [], 0
    for _ in procs:
        lat, err = queue.get()
        latencies += lat
        errors += err
    for p in procs:
        p.join()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0] * 99
    return {"rps": len(latencies) / seconds, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000,
            "requests": len(latencies), "errors": errors}


def main() -> int:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    url = _fresh_database()
    path, figures = _seed(url, base)
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": SECRET, "PUBLIC_BASE_URL": base,
           "TOKEN_ENCRYPTION_KEYS": TOKEN_KEY,
           "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)

    def serve(cache: bool, paths):
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
             "--chdir", str(ROOT), "--log-level", "warning", "bench.buyer_page:bench_app()"],
            env={**env, "BENCH_PAGE_CACHE": "1" if cache else "0"})
        try:
            for _ in range(100):
                try:
                    http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/bench/trivial")
                    break
                except OSError:
                    time.sleep(0.1)
            for p in paths:
                load(port, p, 1.0)  # warm up both workers
            return [load(port, p, SECONDS) for p in paths]
        finally:
            server.terminate()
            server.wait(timeout=10)

    page, trivial = serve(True, [path, "/bench/trivial"])
    (fresh,) = serve(False, [path])
    print(f"buyer page, gunicorn 2 sync workers, PostgreSQL, {CLIENTS} concurrent clients, {SECONDS:.0f} s each "
          f"({os.cpu_count()} CPUs shared with the load generator)")
    print(f"  GET /p/<token>       {page['rps']:8.1f} req/s   p50 {page['p50_ms']:6.1f} ms   "
          f"p99 {page['p99_ms']:6.1f} ms   ({page['requests']} ok, {page['errors']} errors)")
    print(f"  GET /bench/trivial   {trivial['rps']:8.1f} req/s   p50 {trivial['p50_ms']:6.1f} ms   "
          f"p99 {trivial['p99_ms']:6.1f} ms   ({trivial['requests']} ok, {trivial['errors']} errors)")
    print(f"  GET /p/<token>, rendered afresh on every view (page reuse off): {fresh['rps']:.1f} req/s   "
          f"p50 {fresh['p50_ms']:.1f} ms   p99 {fresh['p99_ms']:.1f} ms")
    print(f"  ratio buyer page / trivial endpoint: {page['rps'] / trivial['rps']:.2f} "
          f"(rendered afresh every time: {fresh['rps'] / trivial['rps']:.2f})")
    print(f"  HTML of the enterprise demo plan: {figures['html_bytes']} bytes "
          f"(CSS and JS are separate, cacheable files)")
    print(f"  database queries per buyer page view: {figures['queries']} when the plan changed since the "
          f"last view ({figures['queries_big']} with {figures['milestones_big']} milestones), "
          f"{figures['queries_warm']} when it did not")
    return 0 if page["errors"] == trivial["errors"] == fresh["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
