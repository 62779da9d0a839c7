"""The rep's home (/app) in headless Chromium: each "Show only" filter, ticked and applied,
leaves exactly the plans in that state (webapp/dashboard.py FILTERS)."""
from __future__ import annotations

from datetime import timedelta

from conftest import TODAY, signed_in
from sqlalchemy import select

from webapp import users
from webapp.db import session
from webapp.models import Activity, Milestone, Plan, Slip

WANT = {
    "At risk": ["Late", "Risky"],  # an overdue milestone counts as at risk
    "Overdue": ["Late"],
    "Due this week": ["Calm"],
    "Slipped": ["Slipped"],
    "No buyer activity for 14 days": ["Calm", "Late", "Risky", "Slipped"],
}


def _seed(app, api, owner_id: str) -> None:
    """Five plans of the rep: one per state, and "Heard" with a recent buyer comment."""
    made = {}
    for title in ("Calm", "Late", "Risky", "Slipped", "Heard"):
        answer = api.post("/plans", json={"title": title, "template": "quick",
                                          "start_date": TODAY.isoformat()})
        assert answer.status_code == 201, answer.json
        made[title] = answer.json["id"]
    with app.app_context():
        s = session()
        owner = s.get(users.User, owner_id)
        ms = {}
        for title, plan_id in made.items():
            users.claim_plan(s, s.get(Plan, plan_id), owner, "t")
            ms[title] = s.scalars(select(Milestone).where(Milestone.plan_id == plan_id)
                                  .order_by(Milestone.position)).all()
            for i, m in enumerate(ms[title]):  # far in the future unless said otherwise
                m.due_date = TODAY + timedelta(days=30 + i)
        ms["Late"][0].due_date = TODAY - timedelta(days=2)
        ms["Risky"][0].risk = "off_track"
        ms["Calm"][0].due_date = TODAY + timedelta(days=3)
        tenant = ms["Calm"][0].tenant_id
        s.add(Slip(tenant_id=tenant, plan_id=made["Slipped"], milestone_id=ms["Slipped"][0].id,
                   old_date=TODAY, new_date=TODAY + timedelta(days=9), actor="x"))
        s.add(Activity(tenant_id=tenant, plan_id=made["Heard"], actor="buyer:Dana <d@x>",
                       action="comment.added"))
        s.commit()


def test_each_filter_shows_the_plans_in_that_state(browser, app, api, live_server):
    who = signed_in(app.test_client(), "acme", "rep", name="Riley Rep")
    _seed(app, api, who.user_id)
    ctx = browser.context()
    ctx.add_cookies([{"name": users.COOKIE, "value": who.token, "url": live_server}])
    page = ctx.new_page()
    page.goto(live_server + "/app")

    def box(label):
        return page.get_by_role("checkbox", name=label, exact=True)

    def shown():
        return sorted(page.locator("#plans tbody td:first-child a").all_inner_texts())

    assert shown() == ["Calm", "Heard", "Late", "Risky", "Slipped"]
    for label, titles in WANT.items():
        box(label).check()
        page.get_by_role("button", name="Apply").click()
        page.wait_for_load_state()
        assert box(label).is_checked(), label
        assert shown() == titles, label
        assert page.locator("#count").inner_text().startswith(f"{len(titles)} of 5 plans")
        box(label).uncheck()
    box("Overdue").check()
    box("Slipped").check()
    page.get_by_role("button", name="Apply").click()
    assert page.locator(".empty").inner_text() == "No plan matches these filters."
