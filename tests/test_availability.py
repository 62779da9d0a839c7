"""F3: a committed write is answered as committed, and an unreachable dependency is a 503.

Redis down is a REDIS_URL pointing at a closed port; the database down is a DATABASE_URL
pointing at one."""
from __future__ import annotations

import socket

import pytest
from conftest import TOKEN_KEY, make_api
from sqlalchemy import select

from webapp import create_app
from webapp.db import session
from webapp.models import Installation, OutboxEntry, Plan


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_config():
    # JOBS_MODE unset: with REDIS_URL the app runs in "rq" mode, as in production.
    return {"REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0", "JOBS_MODE": None}


def test_a_write_to_a_crm_linked_plan_commits_and_says_so_when_redis_is_down(app, client):
    assert app.extensions["mutualplan.jobs"]["mode"] == "rq"
    api = make_api(app, client, "acme")
    created = api.post("/plans", json={"title": "Linked", "template": "quick", "deal": {
        "provider": "hubspot", "account_id": "portal-1", "deal_id": "42"}})
    assert created.status_code == 201
    with app.app_context():  # connect the portal: from now on a change writes an outbox row
        s = session()
        plan = s.get(Plan, created.json["id"])
        s.add(Installation(tenant_id=plan.tenant_id, provider="hubspot", account_id="portal-1"))
        s.commit()

    response = api.patch(f"/plans/{created.json['id']}", json={"title": "Renamed"},
                         headers={"If-Match": f'"{created.json["version"]}"'})

    assert response.status_code == 200, response.json
    assert response.json["title"] == "Renamed"
    with app.app_context():
        rows = session().scalars(select(OutboxEntry).where(
            OutboxEntry.plan_id == created.json["id"])).all()
        assert [r.status for r in rows] == ["pending"]  # the clock's relay pushes it later
    assert api.get(f"/plans/{created.json['id']}").json["title"] == "Renamed"


def test_healthz_names_redis_when_it_is_down(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "database": "ok", "redis": "unreachable"}


def _dead_database_app():
    return create_app({"DATABASE_URL": f"postgresql://nobody@127.0.0.1:{closed_port()}/none",
                       "LOG_LEVEL": "CRITICAL", "SECRET_KEY": "x" * 32, "JOBS_MODE": "manual",
                       "TOKEN_ENCRYPTION_KEYS": TOKEN_KEY})


def test_the_api_answers_503_when_the_database_is_unreachable():
    client = _dead_database_app().test_client()
    for response in (client.get("/api/v1/plans", headers={"Authorization": "Bearer mp_x"}),
                     client.post("/api/v1/plans", json={"title": "x"},
                                 headers={"Authorization": "Bearer mp_x"})):
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        assert response.json["type"].endswith("/database-unavailable")
        assert response.headers["Retry-After"] == "5"


def test_healthz_names_the_database_when_it_is_down():
    response = _dead_database_app().test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["database"] == "unreachable"
