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
