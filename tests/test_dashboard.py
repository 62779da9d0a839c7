"""The rep's home /app (webapp/dashboard.py): who sees which plans, filters, sort, search,
and a constant number of SQL statements per page."""
from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import TODAY, signed_in
from sqlalchemy import event, select

from webapp import users
from webapp.db import database, session
from webapp.models import Activity, Milestone, Plan, Slip


def _own(app, plan_id, user_id):
    with app.app_context():
        s = session()
        users.claim_plan(s, s.get(Plan, plan_id), s.get(users.User, user_id) if user_id else None, "t")
        s.commit()


def _plan(api, title, template="quick"):
    response = api.post("/plans", json={"title": title, "template": template,
                                        "start_date": TODAY.isoformat()})
    assert response.status_code == 201, response.json
    return response.json


def _titles(client, query=""):
    html = client.get("/app" + query).text
    import re

    return re.findall(r'<a href="/editor/plans/[^"]+">([^<]+)</a>', html)


def test_a_rep_sees_own_plans_an_admin_all_another_tenant_none(app, api, client):
    rep = signed_in(client, "acme", "rep", name="Riley")
    mine, theirs = _plan(api, "Mine"), _plan(api, "Theirs")
    _own(app, mine["id"], rep.user_id)
    assert _titles(client) == ["Mine"]
    admin = app.test_client()
    signed_in(admin, "acme", "admin")
    assert sorted(_titles(admin)) == ["Mine", "Theirs"]
    stranger = app.test_client()
    signed_in(stranger, "globex", "admin")
    assert _titles(stranger) == []
    assert stranger.get(f"/editor/plans/{mine['id']}").status_code == 401
    assert theirs


def test_filters_sort_and_search(app, api, client):
    rep = signed_in(client, "acme", "rep")
    plans = {t: _plan(api, t) for t in ("Calm", "Late", "Risky", "Slipped", "Heard")}
    for p in plans.values():
        _own(app, p["id"], rep.user_id)
    with app.app_context():
        s = session()
        ms = {t: s.scalars(select(Milestone).where(Milestone.plan_id == p["id"])
                           .order_by(Milestone.position)).all() for t, p in plans.items()}
        for rows in ms.values():  # everything far in the future unless said otherwise
            for i, m in enumerate(rows):
                m.due_date = TODAY + timedelta(days=30 + i)
        ms["Late"][0].due_date = TODAY - timedelta(days=2)
        ms["Risky"][0].risk = "off_track"
        ms["Calm"][0].due_date = TODAY + timedelta(days=3)
        tenant = ms["Calm"][0].tenant_id
        s.add(Slip(tenant_id=tenant, plan_id=plans["Slipped"]["id"], milestone_id=ms["Slipped"][0].id,
                   old_date=TODAY, new_date=TODAY + timedelta(days=9), actor="x"))
        s.add(Activity(tenant_id=tenant, plan_id=plans["Heard"]["id"], actor="buyer:Dana <d@x>",
                       action="comment.added"))
        s.commit()
    assert _titles(client, "?filter=overdue") == ["Late"]
    assert sorted(_titles(client, "?filter=at_risk")) == ["Late", "Risky"]  # overdue counts
    assert _titles(client, "?filter=due_this_week") == ["Calm"]
    assert _titles(client, "?filter=slipped") == ["Slipped"]
    assert "Heard" not in _titles(client, "?filter=quiet") and len(_titles(client, "?filter=quiet")) == 4
    assert _titles(client, "?filter=overdue&filter=slipped") == []
    assert _titles(client, "?q=lat") == ["Late"]
    assert _titles(client, "?sort=next_due")[:2] == ["Late", "Calm"]
    assert _titles(client, "?sort=activity")[0] == "Heard"
    assert _titles(client, "?sort=title") == sorted(plans)
    assert client.get("/app?sort=nonsense&filter=nonsense").status_code == 200


def _statements(app, client) -> int:
    count = 0

    def counter(*_args):
        nonlocal count
        count += 1

    engine = database(app).engine
    event.listen(engine, "before_cursor_execute", counter)
    try:
        assert client.get("/app").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", counter)
    return count


@pytest.mark.parametrize("n", [5])
def test_statements_per_page_do_not_grow_with_plans(app, api, client, n):
    admin = signed_in(client, "acme", "admin")
    for i in range(n):
        _own(app, _plan(api, f"P{i}")["id"], admin.user_id)
    few = _statements(app, client)
    for i in range(n, 10 * n):
        _plan(api, f"P{i}")
    many = _statements(app, client)
    assert len(_titles(client)) == 10 * n
    assert few == many, (few, many)


def test_database_figures_match_plans_derive(app, api, client):
    from webapp import dashboard
    from webapp import plans as domain

    rep = signed_in(client, "acme", "rep")
    made = [_plan(api, f"E{i}", "enterprise") for i in range(3)]
    with app.app_context():
        s = session()
        rows = s.scalars(select(Milestone).where(Milestone.plan_id == made[0]["id"])).all()
        rows[0].status, rows[1].risk, rows[2].due_date = "done", "off_track", None
        rows[3].due_date = TODAY - timedelta(days=1)
        s.commit()
        for p in made:
            users.claim_plan(s, s.get(Plan, p["id"]), s.get(users.User, rep.user_id), "t")
        s.commit()
        rows = dashboard.rows_for(s, s.get(users.User, rep.user_id), TODAY)
        got = {r.id: r for r in dashboard.fill_next_titles(s, rep.tenant_id, rows)}
        for p in made:
            want = domain.derive([m for _, ms in domain.sorted_stages(s.get(Plan, p["id"])) for m in ms], TODAY)
            row = got[p["id"]]
            assert (row.progress, row.risk, row.overdue_count) == (
                want["progress"], want["risk"], want["overdue_count"])
            assert (row.next_title, row.next_due) == (want["next_milestone"].title,
                                                      want["next_milestone"].due_date)
