"""Users, roles and server-side sessions (issue 12; webapp/users.py, webapp/auth.py)."""
from __future__ import annotations

import pytest
from conftest import signed_in
from flask import g

from webapp import users
from webapp.auth import admin_required, login_required, safe_next
from webapp.db import session
from webapp.domain_errors import Conflict, NotFound
from webapp.models import User, UserSession


@pytest.fixture
def app(app):
    """Two probe routes behind the decorators (J2's /settings uses admin_required)."""
    @app.get("/probe/admin")
    @admin_required
    def probe_admin():
        return f"admin {g.user.id}"

    @app.get("/api/v1/probe/me")
    @login_required
    def probe_me():
        return {"id": g.user.id}

    return app


def test_anonymous_page_redirects_to_login_with_next(client):
    response = client.get("/app?filter=overdue", headers={"Accept": "text/html"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/app?filter%3Doverdue"
    assert client.get("/probe/admin", headers={"Accept": "text/html"}).status_code == 302


def test_anonymous_api_gets_401_problem(client):
    response = client.get("/api/v1/probe/me")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_signed_in_user_reaches_pages_and_rep_is_refused_admin_page(client):
    rep = signed_in(client, "acme", "rep", name="Riley Chen")
    page = client.get("/app", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "Riley Chen" in page.text
    refused = client.get("/probe/admin", headers={"Accept": "text/html"})
    assert refused.status_code == 403 and "Only an admin" in refused.text
    assert client.get("/api/v1/probe/me").json == {"id": rep.user_id}


def test_admin_reaches_admin_page(client):
    admin = signed_in(client, "acme", "admin")
    assert client.get("/probe/admin").text == f"admin {admin.user_id}"


def test_session_cookie_holds_a_token_whose_hash_only_is_stored(app, client):
    who = signed_in(client, "acme", "rep")
    with app.app_context():
        row = session().get(UserSession, who.session_id)
        assert row.token_hash == users.hash_token(who.token) and who.token not in row.token_hash
        assert session().query(UserSession).filter_by(token_hash=who.token).count() == 0


def test_sign_out_revokes_the_session_and_needs_csrf(app, client):
    who = signed_in(client, "acme", "rep")
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/api/v1/probe/me").status_code == 200
    response = client.post("/logout", data={"csrf": who.csrf})
    assert response.status_code == 303
    with app.app_context():
        assert session().get(UserSession, who.session_id).revoked_at is not None
    # The old cookie, replayed, no longer works either.
    client.set_cookie(users.COOKIE, who.token)
    assert client.get("/api/v1/probe/me").status_code == 401


def test_csrf_token_is_bound_to_the_session(app, client):
    first = signed_in(client, "acme", "rep")
    other = signed_in(app.test_client(), "acme", "rep")
    assert first.csrf != other.csrf
    with app.test_request_context(headers={"Cookie": f"{users.COOKIE}={first.token}"}):
        assert users.csrf_ok(first.csrf) and not users.csrf_ok(other.csrf)


def test_revoke_sessions_by_user_ends_every_browser(app, client):
    who = signed_in(client, "acme", "rep", crm_user_id="42")
    second = app.test_client()
    again = signed_in(second, "acme", "rep", crm_user_id="42")
    assert again.user_id == who.user_id
    with app.app_context():
        assert users.revoke_sessions(session(), tenant_id=who.tenant_id, user_id=who.user_id) == 2
        session().commit()
    assert client.get("/api/v1/probe/me").status_code == 401
    assert second.get("/api/v1/probe/me").status_code == 401


def test_expired_session_is_anonymous(app, client):
    from datetime import timedelta

    who = signed_in(client, "acme", "rep")
    with app.app_context():
        row = session().get(UserSession, who.session_id)
        row.expires_at = row.created_at - timedelta(seconds=1)
        session().commit()
    assert client.get("/api/v1/probe/me").status_code == 401


def test_another_tenants_session_does_not_leak_users(app, client):
    acme = signed_in(client, "acme", "admin")
    globex = signed_in(app.test_client(), "globex", "admin")
    with app.app_context():
        assert [u.id for u in users.list_users(session(), acme.tenant_id)] == [acme.user_id]
        with pytest.raises(NotFound):
            users.set_role(session(), acme.tenant_id, globex.user_id, "rep")


def test_roles_last_admin_stays_and_demotion_ends_sessions(app, client):
    admin = signed_in(client, "acme", "admin", crm_user_id="1")
    with app.app_context():
        s = session()
        with pytest.raises(Conflict):
            users.set_role(s, admin.tenant_id, admin.user_id, "rep")
        rep = users.upsert_user(s, admin.tenant_id, "hubspot", "2", email="b@acme.example")
        assert rep.role == "rep"
        users.set_role(s, admin.tenant_id, rep.id, "admin")
        users.set_role(s, admin.tenant_id, admin.user_id, "rep")
        s.commit()
        assert s.get(User, admin.user_id).role == "rep"
    assert client.get("/api/v1/probe/me").status_code == 401  # the demoted admin signs in again


def test_upsert_user_never_demotes_and_refreshes_name(app):
    with app.app_context():
        s = session()
        from webapp.auth import ensure_tenant

        t = ensure_tenant(s, "acme")
        first = users.upsert_user(s, t.id, "salesforce", "005A", name="Old", role="admin")
        again = users.upsert_user(s, t.id, "salesforce", "005A", name="New")
        assert again.id == first.id and again.role == "admin" and again.name == "New"


@pytest.mark.parametrize("target,expected", [
    ("/app?x=1", "/app?x=1"), ("//evil.example/", "/app"), ("https://evil.example", "/app"),
    ("/\\evil.example", "/app"), ("", "/app"), (None, "/app"),
])
def test_next_is_a_local_path(target, expected):
    assert safe_next(target) == expected


@pytest.mark.parametrize("base,embedded,expected", [
    ("http://127.0.0.1:5000", False, {"samesite": "Lax"}),
    ("http://127.0.0.1:5000", True, {"samesite": "Lax"}),
    ("https://plans.example", False, {"samesite": "Lax", "secure": True}),
    ("https://plans.example", True, {"samesite": "None", "secure": True, "partitioned": True}),
])
def test_cookie_attributes(app, base, embedded, expected):
    app.config["PUBLIC_BASE_URL"] = base
    with app.test_request_context():
        kwargs = users.session_cookie_kwargs(embedded=embedded)
    assert kwargs["httponly"] is True
    assert {k: kwargs[k] for k in ("samesite", "secure", "partitioned") if k in kwargs} == expected
