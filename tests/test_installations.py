"""Token encryption at rest, key rotation, OAuth state, reinstall."""
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text, update

from connector.base import TokenSet
from webapp import installations
from webapp.db import database, session
from webapp.installations import StateError
from webapp.models import Installation, OAuthState, OutboxEntry

KEY_1, KEY_2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def app_config():
    return {"TOKEN_ENCRYPTION_KEYS": KEY_1}


def test_tokens_are_encrypted_at_rest_and_survive_rotation(app):
    with app.app_context():
        s = session()
        row, api_key = installations.save(s, "hubspot", "42", TokenSet("access-secret", "refresh-secret",
                                                                      datetime.now(timezone.utc)))
        s.commit()
        assert api_key.startswith("mp_")
        with database().engine.connect() as conn:
            stored = conn.execute(text("SELECT tokens FROM installations")).scalar_one()
        assert "access-secret" not in stored and "refresh-secret" not in stored
        assert installations.tokens_of(row).refresh_token == "refresh-secret"
    app.config["TOKEN_ENCRYPTION_KEYS"] = f"{KEY_2},{KEY_1}"
    app.extensions.pop("mutualplan.cipher")
    with app.app_context():
        s = session()
        assert installations.rotate_keys(s) == 1
        row = s.scalars(select(Installation)).one()
        assert installations.tokens_of(row).access_token == "access-secret"
    app.config["TOKEN_ENCRYPTION_KEYS"] = KEY_2  # the old key is gone: rotation made it unnecessary
    app.extensions.pop("mutualplan.cipher")
    with app.app_context():
        row = session().scalars(select(Installation)).one()
        assert installations.tokens_of(row).access_token == "access-secret"


def test_reinstall_reactivates_and_unparks(app):
    with app.app_context():
        s = session()
        row, first_key = installations.save(s, "hubspot", "7", TokenSet("a1", "r1"))
        s.add(OutboxEntry(tenant_id=row.tenant_id, installation_id=row.id, plan_id="p1", status="parked"))
        installations.mark_needs_reconnect(s, row, "invalid_grant")
        s.commit()
        again, second_key = installations.save(s, "hubspot", "7", TokenSet("a2", "r2"))
        s.commit()
        assert again.id == row.id and again.status == "active" and second_key is None
        assert s.scalars(select(OutboxEntry.status)).all() == ["pending"]
        assert installations.tokens_of(again).refresh_token == "r2"


def test_oauth_state_is_single_use_browser_bound_and_expires(app):
    with app.app_context():
        s = session()
        state = installations.issue_state(s, "hubspot", "browser-1", {"verifier": "v"})
        s.commit()
        with pytest.raises(StateError) as wrong_browser:
            installations.consume_state(s, "hubspot", state, "browser-2")
        assert wrong_browser.value.reason == "invalid_browser"
        with pytest.raises(StateError) as wrong_provider:
            installations.consume_state(s, "salesforce", state, "browser-1")
        assert wrong_provider.value.reason == "invalid_state"
        assert installations.consume_state(s, "hubspot", state, "browser-1") == {"verifier": "v"}
        s.commit()
        with pytest.raises(StateError) as replay:
            installations.consume_state(s, "hubspot", state, "browser-1")
        assert replay.value.reason == "used_state"
        old = installations.issue_state(s, "hubspot", "browser-1")
        s.execute(update(OAuthState).where(OAuthState.used_at.is_(None))
                  .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        with pytest.raises(StateError) as expired:
            installations.consume_state(s, "hubspot", old, "browser-1")
        assert expired.value.reason == "expired_state"
        with pytest.raises(StateError):
            installations.consume_state(s, "hubspot", None, "browser-1")


def _stored_access_token(app, installation_id) -> str:
    with database(app).Session.session_factory() as own:
        return installations.tokens_of(own.get(Installation, installation_id)).access_token


@pytest.mark.parametrize("flushed", [True, False])
def test_a_refresh_is_saved_at_once_and_never_commits_the_callers_transaction(app, flushed):
    """The caller has uncommitted changes (written to the database, or only in its session)
    when a connector refreshes: the new tokens are saved, the caller's changes are not
    committed by it, and nothing waits on SQLite's single write lock."""
    from webapp.models import Tenant

    with app.app_context():
        s = session()
        row, _ = installations.save(s, "salesforce", "org-1", TokenSet("old-access", "refresh-1"))
        s.commit()
        installation_id = row.id
        s.add(Tenant(name="half-done"))  # the caller's own, uncommitted work
        if flushed:
            s.flush()
        store = installations.InstallationTokenStore(installation_id)
        seen = []

        def refresher(current):
            seen.append(current.access_token)
            return TokenSet("new-access", "refresh-2", None, current.extra)

        fresh = store.refresh(TokenSet("old-access", "refresh-1"), refresher)
        assert fresh.access_token == "new-access" and seen == ["old-access"]
        assert store.load().access_token == "new-access"
        # a second worker that also saw the old token gets the new one without a refresh
        again = installations.InstallationTokenStore(installation_id).refresh(
            TokenSet("old-access", "refresh-1"), refresher)
        assert again.access_token == "new-access" and seen == ["old-access"]
        if not flushed or s.get_bind().dialect.name == "postgresql":
            assert _stored_access_token(app, installation_id) == "new-access"  # saved at once
        s.rollback()  # the caller gives up its own work
        assert _stored_access_token(app, installation_id) == "new-access"
        with database(app).Session.session_factory() as own:
            names = set(own.scalars(text("SELECT name FROM tenants")))
        assert "half-done" not in names


def test_a_refused_refresh_marks_the_installation_and_raises(app):
    from connector.errors import NeedsReauth

    with app.app_context():
        s = session()
        row, _ = installations.save(s, "hubspot", "43", TokenSet("a", "r"))
        s.commit()
        store = installations.InstallationTokenStore(row.id)

        def refused(current):
            raise NeedsReauth("invalid_grant")

        with pytest.raises(NeedsReauth):
            store.refresh(None, refused)
        s.expire_all()
        assert s.get(Installation, row.id).status == "needs_reconnect"
