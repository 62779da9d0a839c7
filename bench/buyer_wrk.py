"""Buyer page throughput with wrk: the page against a trivial endpoint on the same gunicorn.

    .venv/bin/python bench/buyer_wrk.py     # needs PostgreSQL and wrk (apt-get install wrk)

The issue's measurement, reproduced: gunicorn with 2 sync workers on PostgreSQL
(a database of its own, `mutualplan_bench_buyer_wrk`, made afresh; never `test`),
`wrk -c 32` for BENCH_SECONDS (default 10, in BENCH_ROUNDS interleaved slices, default 5)
against GET /p/<token> of a small plan
(the enterprise demo, 11 milestones), of a big plan (100 milestones with
2,000-character descriptions) and against `/bench/trivial` (bench/buyer_page.py's
app: the real app plus an endpoint that answers "ok"). Prints requests/s, p50 and
p99 of each (medians of the slices), the ratio of each page to the trivial endpoint
(the median of the slices' ratios: the load of a shared machine drifts), and the SQL statements
of one view (fresh render and page reused) of each plan. Without wrk on the PATH it
says so and falls back to bench/buyer_page.py's Python load generator (which takes
CPU from the server on a small machine, so its ratio is lower).
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench import buyer_page

buyer_page.DB_NAME = "mutualplan_bench_buyer_wrk"
SECONDS = int(float(os.environ.get("BENCH_SECONDS", "10")))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CONNECTIONS = 32
BIG_MILESTONES = 100  # the per-plan limit
SECRET = buyer_page.SECRET


def _seed(url: str, base: str) -> dict:
    """The demo plan and a big plan, each with a buyer link; their paths and queries per view."""
    from webapp import create_app, migrate, plans, sharing
    from webapp.cli import seed_demo
    from webapp.db import database, make_engine, session
    from webapp.schemas import MilestoneIn, MilestonePatch, PlanCreate
    from webapp.web import date

    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET, "PUBLIC_BASE_URL": base,
                      "TOKEN_ENCRYPTION_KEYS": buyer_page.TOKEN_KEY, "LOG_LEVEL": "WARNING"})
    with app.app_context():
        s = session()
        keys = sharing.Keys.from_config(app.config)
        _, small = seed_demo(s)
        small = plans.get_plan(s, small.tenant_id, small.id)
        small_url = sharing.current_or_new_link(s, small, "bench", keys)
        big = plans.create_plan(s, small.tenant_id, PlanCreate(title="Big plan", template="enterprise"),
                                "bench", date.today())
        s.flush()
        text = ("We agree the scope, the owners and the date of this step, and say what done "
                "looks like so nobody has to ask. ") * 18
        existing = [m for st in big.stages for m in st.milestones]
        for m in existing:
            plans.update_milestone(s, m, MilestonePatch(description=text[:2000]), "bench")
        for i in range(BIG_MILESTONES - len(existing)):
            stage = big.stages[i % len(big.stages)]
            plans.add_milestone(s, big, MilestoneIn(stage_id=stage.id, title=f"Step {i}",
                                                    description=text[:2000], owner_side="buyer"),
                                "bench")
        big_url = sharing.current_or_new_link(s, big, "bench", keys)
        s.commit()
        milestones = {"small": sum(len(st.milestones) for st in small.stages),
                      "big": sum(len(st.milestones) for st in big.stages)}
    client = app.test_client()
    engine = database(app).engine

    def count(path: str) -> tuple[int, int]:
        return buyer_page.statements_per_view(client, engine, path)

    client.get("/healthz")  # the first connection runs the dialect's own queries
    out = {}
    for name, link in (("small", small_url), ("big", big_url)):
        path = urlsplit(link).path
        fresh, size = count(path)
        warm, _ = count(path)
        out[name] = {"path": path, "fresh": fresh, "warm": warm, "bytes": size,
                     "milestones": milestones[name]}
    database(app).engine.dispose()
    return out


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * _UNITS[unit]


def wrk(port: int, path: str, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--latency",
         f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": total,
            "errors": (int(bad.group(1)) if bad else 0)
            + (sum(int(x) for x in errors.groups()[:1] + errors.groups()[3:]) if errors else 0)}


def main() -> int:
    port = buyer_page._free_port()
    base = f"http://127.0.0.1:{port}"
    url = buyer_page._fresh_database()
    seeded = _seed(url, base)
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": SECRET, "PUBLIC_BASE_URL": base,
           "TOKEN_ENCRYPTION_KEYS": buyer_page.TOKEN_KEY, "LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(ROOT), "BENCH_PAGE_CACHE": "1"}
    env.pop("REDIS_URL", None)
    have_wrk = shutil.which("wrk") is not None
    drive = wrk if have_wrk else buyer_page.load
    paths = {"trivial": "/bench/trivial", "small": seeded["small"]["path"],
             "big": seeded["big"]["path"]}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
         "--chdir", str(ROOT), "--log-level", "warning", "bench.buyer_page:bench_app()"], env=env)
    try:
        for _ in range(100):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/bench/trivial")
                break
            except OSError:
                time.sleep(0.1)
        for path in paths.values():  # warm both workers (and their page caches)
            for _ in range(20):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", path)
                conn.getresponse().read()
                conn.close()
        # ROUNDS interleaved slices per endpoint: on a shared machine the load drifts during
        # a run, and a ratio of two measurements taken minutes apart measures the drift.
        rounds = [{name: drive(port, path, max(1, SECONDS // ROUNDS))
                   for name, path in paths.items()} for _ in range(ROUNDS)]
    finally:
        server.terminate()
        server.wait(timeout=10)

    tool = f"wrk -t2 -c{CONNECTIONS}" if have_wrk else "NO wrk: bench/buyer_page.py's Python load generator"
    print(f"buyer page, gunicorn 2 sync workers, PostgreSQL, {tool}, {SECONDS} s each in {ROUNDS} "
          f"interleaved slices, medians of the slices "
          f"({os.cpu_count()} CPUs shared by server, database and load generator)")
    for name, label in (("trivial", "GET /bench/trivial"), ("small", "GET /p/<token> small"),
                        ("big", "GET /p/<token> big")):
        runs = [r[name] for r in rounds]
        ratio = "" if name == "trivial" else "   ratio {:.2f} (slices: {})".format(
            statistics.median(r[name]["rps"] / r["trivial"]["rps"] for r in rounds),
            ", ".join(f"{r[name]['rps'] / r['trivial']['rps']:.2f}" for r in rounds))
        print(f"  {label:22s} {statistics.median(r['rps'] for r in runs):8.1f} req/s   "
              f"p50 {statistics.median(r['p50_ms'] for r in runs):6.2f} ms   "
              f"p99 {statistics.median(r['p99_ms'] for r in runs):6.2f} ms   "
              f"({sum(r['requests'] for r in runs)} requests, "
              f"{sum(r['errors'] for r in runs)} errors){ratio}")
    for name in ("small", "big"):
        f = seeded[name]
        print(f"  {name} plan ({f['milestones']} milestones, {f['bytes']} bytes of HTML): "
              f"{f['fresh']} SQL statements per view after a change, {f['warm']} when unchanged")
    return 0 if all(r[name]["errors"] == 0 for r in rounds for name in paths) else 1


if __name__ == "__main__":
    sys.exit(main())
