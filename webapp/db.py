"""SQLAlchemy 2 wiring: one engine per app, one session per app context.

Plain SQLAlchemy rather than Flask-SQLAlchemy: jobs and the CLI use the same
`session()` inside an app context, and the models stay ordinary declarative
classes. The schema is owned by Alembic (migrations/); nothing here creates
tables.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import Flask, current_app
from sqlalchemy import DateTime, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator

EXTENSION = "mutualplan.db"


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator):
    """A point in time, stored in UTC and always read back as an aware UTC datetime.

    The column is DateTime(timezone=True) as before (timestamptz on PostgreSQL; text
    on SQLite, which drops the zone): values are converted to UTC on the way in, and
    a zone-less value read back is UTC. A naive value written is taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def make_engine(url: str) -> Engine:
    """`hide_parameters`: a database error's message (and so any traceback that is logged)
    names the statement but not its values, which include encrypted tokens and buyer data."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgres://"):  # Heroku-style URLs
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    engine = create_engine(url, pool_size=5, max_overflow=10, hide_parameters=True)
    _ping_when_idle(engine)
    return engine


IDLE_PING_SECONDS = 10.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only when it sat idle for IDLE_PING_SECONDS.

    `pool_pre_ping` pings on every checkout: one more round trip per request, half of
    what a buyer page view that reuses its rendered page costs (bench/buyer_wrk.py).
    The connections a database restart or an idle timeout may have closed are the idle
    ones; one used a moment ago is alive, and should it die in between, the error marks
    the pool invalid (SQLAlchemy's disconnect handling) and the next checkout reconnects.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record):
        record.info["mutualplan.idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy):
        idle_since = record.info.get("mutualplan.idle_since")
        if idle_since is not None and time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the driver's own error type; the pool retries on this one
            raise DisconnectionError("stale pooled connection") from exc


class Database:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.Session = scoped_session(sessionmaker(engine, expire_on_commit=False))
        self._reads: Engine | None = None

    @property
    def reads(self) -> Engine:
        """A second pool on the same database, in autocommit and without the reset (a
        ROLLBACK) on return, for `FastRead`; disposed with the main engine."""
        if self._reads is None:
            sqlite = self.engine.dialect.name == "sqlite"
            self._reads = create_engine(
                self.engine.url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None,
                hide_parameters=True,
                connect_args={"check_same_thread": False, "timeout": 30} if sqlite else {})
            event.listen(self.engine, "engine_disposed", lambda _conn: self._reads.dispose())
        return self._reads


class FastRead:
    """One read-only SELECT, compiled once, run on a bare DBAPI cursor of `Database.reads`.

    For the buyer page's one query per view (bench/buyer_wrk.py): SQLAlchemy's Connection,
    result and pool events cost about as much as the query's round trip itself. Returns
    the first row as a plain tuple (no type processing: callers convert what they need).
    Any driver error invalidates the connection and is raised as it is, so the caller can
    read once more through SQLAlchemy (which tells a dead database from a dead connection).
    """

    def __init__(self, db: Database, statement):
        self.db = db
        compiled = statement.compile(dialect=db.engine.dialect)
        self.sql, self.compiled = str(compiled), compiled

    def first(self, **params):
        values = self.compiled.construct_params(params)
        if self.compiled.positional:
            values = tuple(values[name] for name in self.compiled.positiontup)
        conn = self.db.reads.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.execute(self.sql, values)
            row = cursor.fetchone()
            cursor.close()
            return row
        except self.db.engine.dialect.loaded_dbapi.Error:
            conn.invalidate()
            raise
        finally:
            conn.close()


def init_app(app: Flask) -> None:
    url = app.config["DATABASE_URL"]
    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    app.extensions[EXTENSION] = Database(make_engine(url))

    @app.teardown_appcontext
    def _remove_session(exc):
        app.extensions[EXTENSION].Session.remove()


def database(app: Flask | None = None) -> Database:
    return (app or current_app).extensions[EXTENSION]


def session() -> Session:
    """The session of the current app context (thread-scoped)."""
    return database().Session()
