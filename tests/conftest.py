"""Test wiring: a real database (SQLite file, or PostgreSQL from TEST_DATABASE_URL),
migrated by Alembic once per run and emptied after every test."""
from __future__ import annotations

import os
import re
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy import text

from webapp import create_app, migrate, sharing
from webapp.auth import create_key, ensure_tenant
from webapp.db import Base, database, make_engine, session
from webapp.mail import Catcher

TODAY = date(2026, 11, 26)
# A fixed Fernet key: create_app refuses to start on PostgreSQL (TEST_DATABASE_URL) without one.
TOKEN_KEY = "kvI1sBRX3uNviRCg7dgpVb6Af4VPRt4jOgM7RHPOd64="


def _reset_schema(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    migrate.upgrade(engine)
    engine.dispose()


def _job_threads() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.name == "mutualplan-jobs" and t.is_alive()}


@pytest.fixture(autouse=True)
def _no_job_thread_outlives_its_test():
    """The embedded job runner (JOBS_MODE thread, the default without REDIS_URL) never stops:
    a test that starts one leaves it polling after the app is gone. Tests use JOBS_MODE manual
    or inline; this fails the test that forgets."""
    before = _job_threads()
    yield
    leaked = _job_threads() - before
    assert not leaked, "a test started the embedded job thread; create the app with JOBS_MODE"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    url = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    _reset_schema(url)
    return url


def _empty_tables(app) -> None:
    engine = database(app).engine
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        else:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture
def catcher():
    """The local SMTP catcher (webapp/mail.py) on a free port: real SMTP, messages kept in memory."""
    c = Catcher().start()
    yield c
    c.stop()


@pytest.fixture
def app_config():
    """Overridden by test modules that need other settings."""
    return {}


@pytest.fixture
def app(database_url, app_config):
    app = create_app({"DATABASE_URL": database_url, "TESTING": True, "TODAY": lambda: TODAY,
                      "LOG_LEVEL": "WARNING", "SECRET_KEY": "test-secret", "JOBS_MODE": "manual", "OUTBOX_DEBOUNCE": 0,
                      # rate-limit counters in Redis are per test, not shared across tests
                      "RATE_LIMIT_NAMESPACE": f"test-{secrets.token_hex(4)}",
                      "TOKEN_ENCRYPTION_KEYS": TOKEN_KEY,
                      **app_config})
    yield app
    _empty_tables(app)
    database(app).engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


class Api:
    """A test client bound to one tenant's API key."""

    def __init__(self, client, key):
        self.client, self.key = client, key

    def _headers(self, headers):
        return {"Authorization": f"Bearer {self.key}", **(headers or {})}

    def get(self, path, headers=None, **kw):
        return self.client.get("/api/v1" + path, headers=self._headers(headers), **kw)

    def post(self, path, json=None, headers=None, **kw):
        return self.client.post("/api/v1" + path, json=json, headers=self._headers(headers), **kw)

    def patch(self, path, json=None, headers=None, **kw):
        return self.client.patch("/api/v1" + path, json=json, headers=self._headers(headers), **kw)

    def put(self, path, json=None, headers=None, **kw):
        return self.client.put("/api/v1" + path, json=json, headers=self._headers(headers), **kw)

    def delete(self, path, headers=None, **kw):
        return self.client.delete("/api/v1" + path, headers=self._headers(headers), **kw)


def make_api(app, client, tenant_name: str) -> Api:
    with app.app_context():
        s = session()
        key = create_key(s, ensure_tenant(s, tenant_name), "tests")
        s.commit()
    return Api(client, key)


@pytest.fixture
def api(app, client):
    return make_api(app, client, "acme")


@pytest.fixture
def other_api(app, client):
    return make_api(app, client, "globex")


@pytest.fixture
def plan(api):
    """A plan made from the enterprise template, starting today."""
    response = api.post("/plans", json={"title": "Acme rollout", "template": "enterprise",
                                        "start_date": TODAY.isoformat()})
    assert response.status_code == 201, response.json
    return response.json


def snapshot(app) -> dict:
    """Every row of every table, to prove that a rejected request changed nothing."""
    with database(app).engine.connect() as conn:
        return {t.name: sorted(map(repr, conn.execute(t.select()).all())) for t in Base.metadata.sorted_tables}


# ---- shared helpers and fixtures for the domain tests ----------------------------

CSRF = re.compile(r'name="csrf" value="([^"]+)"')  # the CSRF field of the buyer page and editor


def path_of(url: str) -> str:
    """The path of an absolute URL (buyer links, editor links), for the test client."""
    return "/" + url.split("/", 3)[3]


def milestones_of(plan: dict) -> list[dict]:
    """A plan document's milestones, in plan order."""
    return [m for stage in plan["stages"] for m in stage["milestones"]]


def milestone(plan: dict, title: str) -> dict:
    return next(m for m in milestones_of(plan) if m["title"] == title)


def tenant_of(s, plan: dict) -> str:
    """The tenant id of a plan document (the API does not show it)."""
    from webapp.models import Plan

    return s.get(Plan, plan["id"]).tenant_id


def make_link(api, plan_id: str, **body) -> dict:
    response = api.post(f"/plans/{plan_id}/share-links", json=body)
    assert response.status_code == 201, response.json
    return response.json


@pytest.fixture
def keys(app) -> sharing.Keys:
    """The app's signing keys and base URL, as the blueprints pass them to sharing.py."""
    return sharing.Keys.from_config(app.config)


# ---- people: signed-in users (webapp/users.py) ------------------------------------------

@dataclass
class SignedIn:
    """A user signed in on a test client: ids, and the CSRF token of their session's forms."""

    user_id: str
    tenant_id: str
    session_id: str
    token: str
    csrf: str
    role: str


def signed_in(client, tenant: str = "acme", role: str = "rep", *, provider: str = "hubspot",
              crm_user_id: str | None = None, email: str | None = None,
              name: str | None = None) -> SignedIn:
    """Sign a user of `role` in tenant `tenant` (a name, created when missing) in on `client`:
    a real users row and a real server-side session, its cookie set on the client."""
    from webapp import users

    app = client.application
    crm_user_id = crm_user_id or f"{role}-{uuid.uuid4().hex[:8]}"
    with app.test_request_context():
        s = session()
        t = ensure_tenant(s, tenant)
        user = users.upsert_user(s, t.id, provider, crm_user_id,
                                 email=email or f"{crm_user_id}@{tenant}.example",
                                 name=name or f"{role.title()} of {tenant}", role=role)
        row, token = users.start_session(s, tenant_id=t.id, actor=users.actor_of(user), user=user)
        s.commit()
        result = SignedIn(user.id, t.id, row.id, token, users.csrf_for(row.id), user.role)
    client.set_cookie(users.COOKIE, token)
    return result


@pytest.fixture
def sign_in(client):
    """`sign_in(tenant="acme", role="rep", **user)` signs a user in on the test client."""
    return lambda tenant="acme", role="rep", **kw: signed_in(client, tenant, role, **kw)
