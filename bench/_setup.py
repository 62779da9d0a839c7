"""Shared set-up for the benchmarks: a throwaway database and an app on it.

PostgreSQL when BENCH_DATABASE_URL (default: a `mutualplan_bench` database on
the local server) is reachable, else a temporary SQLite file; Redis from
REDIS_URL when set. Never touches the `test` database.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from webapp import create_app, migrate  # noqa: E402
from webapp.db import make_engine  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def database_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url
    # One database per bench script, so two benches can run at once.
    name = "mutualplan_bench_" + "".join(c for c in Path(sys.argv[0]).stem if c.isalnum() or c == "_")
    try:
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        return f"postgresql://postgres@127.0.0.1:5432/{name}"
    except Exception as exc:  # no PostgreSQL here: say so, and measure on SQLite
        print(f"(PostgreSQL not reachable: {exc.__class__.__name__}; using SQLite)")
        return f"sqlite:///{tempfile.mkdtemp()}/bench.db"


def make_app(**config):
    url = database_url()
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    settings = {"DATABASE_URL": url, "LOG_LEVEL": "WARNING", "JOBS_MODE": "manual", "SECRET_KEY": "bench",
                "TOKEN_ENCRYPTION_KEYS": "Toeo6joCMtQIZXRkJlZkrQ8fPDCsKW90rlq6kQKHLKw=",
                "REDIS_URL": os.environ.get("REDIS_URL")}
    settings.update(config)
    return create_app(settings), url
