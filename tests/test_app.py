"""The app around the API: health, request ids, logs, CLI, migrations."""
import json
import logging

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import TOKEN_KEY

from webapp.cli import main
from webapp.db import Base, database


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok" and response.json["database"] == "ok"
    # Redis is reported when it is configured (the PostgreSQL + Redis run), and only then.
    assert ("redis" in response.json) == bool(client.application.config["REDIS_URL"])


def test_healthz_reports_a_dead_database(tmp_path):
    from webapp import create_app

    # JOBS_MODE manual: the embedded job thread would otherwise start with the request and keep
    # polling the dead database after the test (nothing stops it).
    app = create_app({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "LOG_LEVEL": "CRITICAL",
                      "SECRET_KEY": "x" * 32, "JOBS_MODE": "manual", "TOKEN_ENCRYPTION_KEYS": TOKEN_KEY})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"


def test_production_database_needs_a_real_secret_key():
    import pytest

    from webapp import create_app
    from webapp.config import DEV_SECRET_KEY

    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "SECRET_KEY": DEV_SECRET_KEY,
                    "JOBS_MODE": "manual", "TOKEN_ENCRYPTION_KEYS": TOKEN_KEY})


PG_NOWHERE = "postgresql://nobody@127.0.0.1:1/none"


def test_production_database_needs_token_encryption_keys():
    import pytest

    from webapp import create_app

    for keys in ("", " , "):
        with pytest.raises(RuntimeError, match="TOKEN_ENCRYPTION_KEYS"):
            create_app({"DATABASE_URL": PG_NOWHERE, "SECRET_KEY": "x" * 32, "JOBS_MODE": "manual",
                        "TOKEN_ENCRYPTION_KEYS": keys})
    app = create_app({"DATABASE_URL": PG_NOWHERE, "SECRET_KEY": "x" * 32, "JOBS_MODE": "manual",
                      "TOKEN_ENCRYPTION_KEYS": TOKEN_KEY})
    assert app.config["TOKEN_ENCRYPTION_KEYS"] == TOKEN_KEY


def test_sqlite_without_token_keys_derives_one_with_a_warning(tmp_path, capsys):
    from webapp import create_app, installations

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "SECRET_KEY": "x" * 32,
                      "JOBS_MODE": "manual", "TOKEN_ENCRYPTION_KEYS": ""})
    cipher = installations.cipher(app)
    assert cipher.decrypt(cipher.encrypt(b"t")) == b"t"
    assert "TOKEN_ENCRYPTION_KEYS is not set" in capsys.readouterr().err  # the JSON log line


def test_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert made and " " not in made


def test_logs_are_json_with_request_id(app, client, capsys):
    logging.getLogger("mutualplan.access").setLevel(logging.INFO)
    client.get("/healthz", headers={"X-Request-ID": "req-42"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry.get("path") == "/healthz"]
    assert access and access[-1]["request_id"] == "req-42" and access[-1]["status"] == 200


def test_apikey_create_prints_a_working_key_last(app, client):
    runner = app.test_cli_runner()
    result = runner.invoke(main, ["apikey", "create", "initech"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert client.get("/api/v1/plans", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    again = runner.invoke(main, ["apikey", "create", "initech"])
    assert again.output.strip().splitlines()[-1] != key  # same tenant, a second key


def test_demo_seed_is_idempotent_and_prints_a_working_key(app, client):
    runner = app.test_cli_runner()
    first = runner.invoke(main, ["demo"])
    second = runner.invoke(main, ["demo"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    key = second.output.strip().splitlines()[-1]
    plans = client.get("/api/v1/plans", headers={"Authorization": f"Bearer {key}"}).json["items"]
    assert len(plans) == 1
    assert plans[0]["progress"]["total"] == 11


def test_migrations_match_the_models(app):
    with database(app).engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_keys_are_stored_hashed(app):
    from sqlalchemy import select

    from webapp.models import ApiKey

    result = app.test_cli_runner().invoke(main, ["apikey", "create", "hashco"])
    key = result.output.strip().splitlines()[-1]
    with database(app).engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(select(ApiKey.prefix, ApiKey.key_hash))]
    assert all(key not in value for row in stored for value in row)


def test_local_proxy_signing_is_refused_outside_local_development(tmp_path):
    import pytest

    from webapp import create_app

    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    common = {"SECRET_KEY": "x" * 32, "JOBS_MODE": "manual", "TOKEN_ENCRYPTION_KEYS": TOKEN_KEY,
              "HUBSPOT_DEV_PROXY_SIGNING": True}
    for url, base in ((PG_NOWHERE, "http://localhost:5000"),
                      (sqlite, "https://plans.example.com")):
        with pytest.raises(RuntimeError, match="HUBSPOT_DEV_PROXY_SIGNING"):
            create_app({**common, "DATABASE_URL": url, "PUBLIC_BASE_URL": base})
    app = create_app({**common, "DATABASE_URL": sqlite, "PUBLIC_BASE_URL": "http://localhost:5000"})
    assert app.config["HUBSPOT_DEV_PROXY_SIGNING"] is True


def test_local_proxy_signing_flag_from_the_environment(monkeypatch):
    from webapp.config import Config

    for raw, expected in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv("HUBSPOT_DEV_PROXY_SIGNING", raw)
        assert Config().HUBSPOT_DEV_PROXY_SIGNING is expected
