"""Fuzz figures: generated requests against every endpoint, and how many answered 5xx.

    .venv/bin/python bench/fuzz.py [EXAMPLES_PER_ENDPOINT]     # default 100

The same generator as tests/test_fuzz.py (tests/fuzzing.py), run longer: a fresh
world (plan, buyer link, editor session, HubSpot installation) per endpoint, in a
database of its own (`mutualplan_bench_fuzz` on PostgreSQL, else SQLite; never
`test`). Prints one line per endpoint with 5xx or a 4xx that changed the
database, then the totals (issue 10: "generated requests in the fuzz test and 5xx
seen, goal 0"). FUZZ_VALID_TIMESTAMPS=1 looks past the known timestamp 500.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench._setup import make_app
from tests import fuzzing
from webapp.db import Base, database


def _empty(app) -> None:
    with database(app).engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def _fuzz(app, client, world, rule, method, examples) -> list[str]:
    problems: list[str] = []

    @settings(max_examples=examples, deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        request = data.draw(st.composite(
            lambda draw: fuzzing.request_for(draw, world, rule, method))())
        problem = fuzzing.check(app, client, request)
        if problem is not None:
            problems.append(problem)

    run()
    return problems


def main() -> None:
    examples = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    app, url = make_app(**{**fuzzing.CONFIG, "LOG_LEVEL": "ERROR"})
    print(f"database: {url.split('@')[-1]}; {examples} requests per endpoint")
    requests, server_errors, dirty = 0, Counter(), Counter()
    where: dict[str, str] = {}
    for rule, method, endpoint in fuzzing.routes(app):
        _empty(app)
        client = app.test_client()
        world = fuzzing.seed(app, client)

        key = f"{method} {rule}"
        requests += examples
        for problem in _fuzz(app, client, world, rule, method, examples):
            if problem.startswith("5"):
                server_errors[key] += 1
            else:
                dirty[key] += 1
            where.setdefault(key, problem[:300])
        if server_errors[key] or dirty[key]:
            print(f"  {key}: {server_errors[key]} 5xx, {dirty[key]} 4xx that changed data; "
                  f"first: {where[key]}")
    print(f"generated requests: {requests}")
    print(f"5xx seen: {sum(server_errors.values())} "
          f"(on {len(server_errors)} of {len(fuzzing.routes(app))} endpoints)")
    print(f"4xx that changed the database: {sum(dirty.values())}")


if __name__ == "__main__":
    main()
