"""Buyer access modes per share link (webapp/access.py): open, identify, domain allow-list and
verified e-mail, with the code sent over real SMTP to the local catcher."""
from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import CSRF, make_link, milestones_of, path_of, snapshot
from sqlalchemy import select

from webapp import notifications
from webapp.db import session
from webapp.models import BuyerAccess

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
CODE = re.compile(r"Your code is (\d{6})")


@pytest.fixture
def clock_box():
    return {"now": NOW}


@pytest.fixture
def app_config(catcher, clock_box):
    return {"SMTP_URL": catcher.url, "MAIL_FROM": "Acme <mail@acme.example>",
            "CLOCK": lambda: clock_box["now"]}


def plan_words(plan) -> list[str]:
    """Strings that only the plan itself contains."""
    return [plan["title"], *[m["title"] for m in milestones_of(plan)],
            *[st["name"] for st in plan["stages"]]]


def assert_no_plan_data(html: str, plan) -> None:
    for word in plan_words(plan):
        assert word not in html, word


def csrf_of(client, path, status=200):
    response = client.get(path)
    assert response.status_code == status
    return CSRF.search(response.text).group(1)


def ask_code(client, path, email="dana@acme.example", name="Dana Buyer"):
    return client.post(path + "/access/code",
                       data={"csrf": csrf_of(client, path), "name": name, "email": email})


def delivered_code(app, catcher, count=1) -> str:
    with app.app_context():
        notifications.deliver(session())
    return CODE.search(catcher.wait_for(count)[count - 1]["text"]).group(1)


def enter(client, path, access_id, code):
    csrf = CSRF.search(client.get(f"{path}/access?v={access_id}").text).group(1)
    return client.post(path + "/access/verify", data={"csrf": csrf, "v": access_id, "code": code})


def access_id_of(response) -> str:
    assert response.status_code == 303, response.text
    return response.headers["Location"].split("v=")[1]


# ---- the API ----------------------------------------------------------------------------


def test_api_sets_and_validates_the_mode_and_allow_list(api, other_api, plan):
    link = make_link(api, plan["id"], access_mode="domain", allowed_domains=["@Acme.example", "acme.example"])
    assert link["access_mode"] == "domain" and link["allowed_domains"] == ["acme.example"]
    assert link["verified"] == []
    base = f"/plans/{plan['id']}/share-links"
    for body in ({"access_mode": "secret"}, {"access_mode": "domain"},
                 {"access_mode": "verified", "allowed_domains": ["not a domain"]},
                 {"allowed_domains": ["a.example"] * 21}):
        assert api.post(base, json=body).status_code == 422, body
    assert make_link(api, plan["id"])["access_mode"] == "open"  # the default stays today's
    changed = api.patch(f"/share-links/{link['id']}", json={"access_mode": "verified", "allowed_domains": []})
    assert changed.status_code == 200 and changed.json["access_mode"] == "verified"
    assert changed.json["allowed_domains"] == []
    assert api.patch(f"/share-links/{link['id']}", json={"access_mode": "domain"}).status_code == 422
    assert other_api.patch(f"/share-links/{link['id']}", json={"access_mode": "open"}).status_code == 404
    assert api.get(base).json["items"][-1]["access_mode"] in ("verified", "open")


# ---- the gate shows nothing of the plan -------------------------------------------------------


@pytest.mark.parametrize("mode", ["identify", "domain", "verified"])
def test_a_gated_page_and_every_buyer_route_show_no_plan_data(api, client, plan, mode):
    link = make_link(api, plan["id"], access_mode=mode, allowed_domains=["acme.example"] if mode == "domain" else [])
    path = path_of(link["url"])
    page = client.get(path)
    assert page.status_code == 200 and "Open the plan" in page.text
    assert_no_plan_data(page.text, plan)
    assert page.headers["Cache-Control"] == "no-store"
    m = milestones_of(plan)[1]
    for response in (client.get(path + "/calendar.ics"),
                     client.post(f"{path}/m/{m['id']}/comment", data={"body": "hi"}),
                     client.post(f"{path}/m/{m['id']}/done", data={"done": "1"}),
                     client.get(f"{path}/blocks/{m['id']}/open"),  # content routes too
                     client.post(f"{path}/m/{m['id']}/upload", data={})):
        assert response.status_code == 403
        assert_no_plan_data(response.text, plan)


def test_identify_mode_opens_after_name_and_email(api, client, plan):
    path = path_of(make_link(api, plan["id"], access_mode="identify")["url"])
    bad = client.post(path + "/identify", data={"csrf": csrf_of(client, path), "name": "Dana", "email": "nope"})
    assert bad.status_code == 422 and "email" in bad.text
    assert_no_plan_data(bad.text, plan)
    ok = client.post(path + "/identify", data={"csrf": csrf_of(client, path), "name": "Dana",
                                               "email": "dana@anywhere.example"})
    assert ok.status_code == 303
    assert plan["title"] in client.get(path).text


def test_domain_mode_refuses_other_domains(app, api, client, plan):
    path = path_of(make_link(api, plan["id"], access_mode="domain", allowed_domains=["acme.example"])["url"])
    before = snapshot(app)
    wrong = client.post(path + "/identify", data={"csrf": csrf_of(client, path), "name": "Eve",
                                                  "email": "eve@evil.example"})
    assert wrong.status_code == 422 and "acme.example only" in wrong.text
    assert_no_plan_data(wrong.text, plan)
    assert snapshot(app) == before
    ok = client.post(path + "/identify", data={"csrf": csrf_of(client, path), "name": "Dana",
                                               "email": "dana@eu.acme.example"})  # a subdomain
    assert ok.status_code == 303 and plan["title"] in client.get(path).text


# ---- verified e-mail ---------------------------------------------------------------------------


def test_verified_flow_code_by_smtp_then_a_30_day_session_on_this_link(app, api, client, catcher, plan, clock_box):
    link = make_link(api, plan["id"], access_mode="verified", label="Acme team")
    path = path_of(link["url"])
    assert ask_code(client, path, email="bob@acme.example").status_code == 303  # no CSRF: form from page
    access_id = access_id_of(ask_code(client, path))
    code = delivered_code(app, catcher, 2)
    msg = catcher.snapshot()[1]
    assert msg["to"] == ["dana@acme.example"] and code in msg["html"]
    assert_no_plan_data(msg["text"] + msg["html"], plan)

    code_page = client.get(f"{path}/access?v={access_id}")
    assert "d***@acme.example" in code_page.text and 'autocomplete="one-time-code"' in code_page.text
    assert_no_plan_data(code_page.text, plan)
    wrong = enter(client, path, access_id, "000000" if code != "000000" else "111111")
    assert wrong.status_code == 422 and "4 attempts left" in wrong.text
    assert_no_plan_data(wrong.text, plan)

    ok = enter(client, path, access_id, code)
    assert ok.status_code == 303 and ok.headers["Location"].endswith("ok=verified")
    cookie = client.get_cookie(f"mp_access_{link['id']}", path="/p/")
    assert cookie is not None and "HttpOnly" in ok.headers.getlist("Set-Cookie")[0]
    page = client.get(path)
    assert plan["title"] in page.text and "You are Dana Buyer" in page.text
    with app.app_context():
        row = session().get(BuyerAccess, access_id)
        assert row.session_hash == hashlib.sha256(cookie.value.encode()).hexdigest()
        rows = snapshot(app)
        for table, values in rows.items():
            assert cookie.value not in repr(values), table

    # the code is single-use, and the rep sees who verified
    again = client.post(path + "/access/verify", data={"csrf": csrf_of(client, path), "v": access_id, "code": code})
    assert again.status_code == 422 and "not valid any more" in again.text
    [listed] = api.get(f"/plans/{plan['id']}/share-links").json["items"]
    assert [v["email"] for v in listed["verified"]] == ["dana@acme.example"]

    # scoped to this link: another verified link of the same plan asks again
    other = path_of(make_link(api, plan["id"], access_mode="verified")["url"])
    assert "Open the plan" in client.get(other).text

    # 30 days on this device, then the gate again
    clock_box["now"] = NOW + timedelta(days=29)
    assert plan["title"] in client.get(path).text
    clock_box["now"] = NOW + timedelta(days=31)
    assert_no_plan_data(client.get(path).text, plan)


def test_codes_expire_allow_five_attempts_and_sending_is_limited(app, api, client, catcher, plan, clock_box):
    path = path_of(make_link(api, plan["id"], access_mode="verified", allowed_domains=["acme.example"])["url"])
    outsider = ask_code(client, path, email="eve@evil.example")
    assert outsider.status_code == 422 and "acme.example only" in outsider.text

    first = access_id_of(ask_code(client, path))
    code = delivered_code(app, catcher)
    for left in (4, 3, 2, 1):
        assert f"{left} attempt" in enter(client, path, first, "999999" if code != "999999" else "888888").text
    spent = enter(client, path, first, "999999" if code != "999999" else "888888")
    assert spent.status_code == 422 and "ask for a new one" in spent.text
    assert enter(client, path, first, code).status_code == 422  # the right code, too late
    assert_no_plan_data(client.get(path).text, plan)

    second = access_id_of(ask_code(client, path))
    code2 = delivered_code(app, catcher, 2)
    access_id_of(ask_code(client, path))  # the third in 10 minutes
    limited = ask_code(client, path)
    assert limited.status_code == 422 and "wait 10 minutes" in limited.text
    clock_box["now"] = NOW + timedelta(minutes=11)
    expired = enter(client, path, second, code2)
    assert expired.status_code == 422 and "expired" in expired.text
    assert ask_code(client, path).status_code == 303  # a new window


def test_get_changes_nothing_and_forged_forms_are_refused(app, api, client, catcher, plan):
    path = path_of(make_link(api, plan["id"], access_mode="verified")["url"])
    access_id = access_id_of(ask_code(client, path))
    code = delivered_code(app, catcher)
    before = snapshot(app)
    client.get(f"{path}/access?v={access_id}&code={code}")
    assert snapshot(app) == before
    forged = client.post(path + "/access/verify", data={"csrf": "forged", "v": access_id, "code": code})
    assert forged.status_code == 403
    cross = client.post(path + "/access/code", data={"csrf": csrf_of(client, path), "name": "A",
                                                     "email": "a@acme.example"},
                        headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403


def test_sign_out_ends_the_verified_session(app, api, client, catcher, plan):
    path = path_of(make_link(api, plan["id"], access_mode="verified")["url"])
    access_id = access_id_of(ask_code(client, path))
    assert enter(client, path, access_id, delivered_code(app, catcher)).status_code == 303
    csrf = csrf_of(client, path)
    assert client.post(path + "/forget", data={"csrf": csrf}).status_code == 303
    assert_no_plan_data(client.get(path).text, plan)
    with app.app_context():
        assert session().scalars(select(BuyerAccess)).one().ended_at is not None


# ---- the editor ----------------------------------------------------------------------------------


def test_editor_creates_and_changes_a_links_mode_and_shows_who_verified(app, api, client, catcher, plan):
    from test_editor import Editor, open_editor

    editor = Editor(client, open_editor(api, client, plan["id"]))
    refused = editor.do("link-create", expect=422, label="Legal", access_mode="domain", allowed_domains="")
    assert 'id="lc-dom-err"' in refused.text and 'value="Legal"' in refused.text
    editor.do("link-create", label="Legal", access_mode="verified", allowed_domains="acme.example")
    [link] = api.get(f"/plans/{plan['id']}/share-links").json["items"]
    assert (link["access_mode"], link["allowed_domains"]) == ("verified", ["acme.example"])
    page = editor.html()
    assert "Verified e-mail (one-time code)" in page and "acme.example" in page

    # a buyer verifies; the rep sees them in the list
    url = next(x for x in re.findall(r'value="(http[^"]+/p/[^"]+)"', page))
    path = path_of(url)
    access_id = access_id_of(ask_code(client, path))
    assert enter(client, path, access_id, delivered_code(app, catcher)).status_code == 303
    page = editor.html()
    assert "Verified e-mail addresses" in page and "Dana Buyer · dana@acme.example" in page

    bad = editor.do("link-access", expect=422, link_id=link["id"], access_mode="domain",
                    allowed_domains="not a domain")
    assert "is not a domain name" in bad.text
    editor.do("link-access", link_id=link["id"], access_mode="open", allowed_domains="")
    assert api.get(f"/plans/{plan['id']}/share-links").json["items"][0]["access_mode"] == "open"
    with app.app_context():
        from webapp.models import Activity
        assert session().scalars(select(Activity).where(Activity.action == "share_link.access")).first()
