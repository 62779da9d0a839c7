"""Editor links and sessions under attack (issue 10, F8): single use, revoked keys,
sign out everywhere, and edits attributed to a person."""
from __future__ import annotations

from conftest import CSRF, milestone, path_of, signed_in
from sqlalchemy import select

from webapp import auth, sharing, users
from webapp.db import session
from webapp.models import ApiKey, Comment, UserSession


def _link(api, plan_id):
    response = api.post(f"/plans/{plan_id}/editor-link")
    assert response.status_code == 200
    return path_of(response.json["url"])


def test_an_editor_link_opens_once(app, api, client, plan):
    link = _link(api, plan["id"])
    assert client.get(link).status_code == 303
    thief = app.test_client()
    second = thief.get(link)
    assert second.status_code == 410 and "already used" in second.text
    assert thief.get(f"/editor/plans/{plan['id']}").status_code == 401
    assert client.get(f"/editor/plans/{plan['id']}").status_code == 200  # the first one works


def test_the_cookie_holds_a_random_token_and_the_server_only_its_hash(app, api, client, plan):
    client.get(_link(api, plan["id"]))
    token = client.get_cookie(users.EDITOR_COOKIE, path=f"/editor/plans/{plan['id']}").value
    with app.app_context():
        row = session().scalars(select(UserSession)).one()
        assert row.token_hash == users.hash_token(token) and row.plan_id == plan["id"]
        assert row.api_key_id is not None


def test_revoking_the_key_ends_the_sessions_its_links_opened(app, api, client, plan):
    client.get(_link(api, plan["id"]))
    unopened = _link(api, plan["id"])
    page = f"/editor/plans/{plan['id']}"
    assert client.get(page).status_code == 200
    with app.app_context():
        s = session()
        key = s.scalars(select(ApiKey)).one()
        auth.revoke_key(s, key.tenant_id, key.id)
        s.commit()
        assert s.scalars(select(UserSession)).one().revoked_at is not None
    assert client.get(page).status_code == 401
    assert app.test_client().get(unopened).status_code == 404  # links of a revoked key are dead


def test_a_key_revoked_by_hand_ends_its_sessions_too(app, api, client, plan):
    client.get(_link(api, plan["id"]))
    with app.app_context():
        s = session()
        s.scalars(select(ApiKey)).one().revoked_at = s.scalars(select(UserSession)).one().created_at
        s.commit()
    assert client.get(f"/editor/plans/{plan['id']}").status_code == 401


def test_sign_out_everywhere_ends_every_session_on_the_plan(app, api, client, plan):
    page = f"/editor/plans/{plan['id']}"
    other = app.test_client()
    client.get(_link(api, plan["id"]))
    other.get(_link(api, plan["id"]))
    second_plan = api.post("/plans", json={"title": "Other"}).json
    other.get(_link(api, second_plan["id"]))
    token = CSRF.search(client.get(page).text).group(1)
    assert client.post(page + "/sign-out-everywhere", data={"csrf": "forged"}).status_code == 403
    assert other.get(page).status_code == 200
    done = client.post(page + "/sign-out-everywhere", data={"csrf": token})
    assert done.status_code == 200 and "2 editor session(s)" in done.text
    assert client.get(page).status_code == 401 and other.get(page).status_code == 401
    assert other.get(f"/editor/plans/{second_plan['id']}").status_code == 200  # another plan


def test_a_link_for_a_person_attributes_edits_to_them(app, api, client, plan, keys):
    who = signed_in(app.test_client(), "acme", "rep", name="Riley Chen")
    with app.test_request_context():
        url, _ = sharing.editor_link(who.tenant_id, plan["id"], "hubspot:riley@x", keys,
                                     user_id=who.user_id)
    page = f"/editor/plans/{plan['id']}"
    assert client.get(path_of(url)).status_code == 303
    html = client.get(page).text
    assert "signed in as Riley Chen" in html
    m = milestone(plan, plan["stages"][0]["milestones"][0]["title"])
    token = CSRF.search(html).group(1)
    client.post(page + "/do", data={"csrf": token, "op": "comment", "milestone_id": m["id"],
                                    "body": "Sent the deck."})
    with app.app_context():
        assert session().scalars(select(Comment)).one().author_name == "Riley Chen"


def test_a_signed_in_rep_opens_own_plans_only_and_an_admin_every_plan(app, api, client, plan):
    page = f"/editor/plans/{plan['id']}"
    rep = signed_in(client, "acme", "rep")
    assert client.get(page).status_code == 401
    with app.app_context():
        s = session()
        from webapp.models import Plan

        users.claim_plan(s, s.get(Plan, plan["id"]), s.get(users.User, rep.user_id), "x")
        s.commit()
    assert client.get(page).status_code == 200
    other_rep = app.test_client()
    signed_in(other_rep, "acme", "rep")
    assert other_rep.get(page).status_code == 401
    admin = app.test_client()
    signed_in(admin, "acme", "admin")
    assert admin.get(page).status_code == 200
    stranger = app.test_client()
    signed_in(stranger, "globex", "admin")
    assert stranger.get(page).status_code == 401
