"""The settings UIs of notifications: per-plan reminders in the editor, and the tenant's Slack
webhook in /settings (admins). CSRF on both; a refusal saves nothing and keeps what was typed."""
from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import pytest
from conftest import TODAY, milestone, snapshot
from test_editor import Editor, open_editor

from webapp import notifications, plans
from webapp.db import session
from webapp.models import Milestone, Plan
from webapp.schemas import MilestonePatch, Owner

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)  # a Thursday


@pytest.fixture
def app_config():
    return {"CLOCK": lambda: NOW}


@pytest.fixture
def editor(api, client, plan):
    return Editor(client, open_editor(api, client, plan["id"]))


def _settings(app, plan_id):
    with app.app_context():
        s = session()
        return notifications.plan_settings(s, s.get(Plan, plan_id))


def _remind(app):
    with app.app_context():
        return notifications.reminders(session(), NOW)


def test_editor_reminder_settings_validate_save_and_switch_reminders_off(app, editor, plan):
    with app.app_context():
        s = session()
        m = s.get(Milestone, milestone(plan, "Identify problems to solve")["id"])
        plans.update_milestone(s, m, MilestonePatch(owners=[Owner(name="Sam", email="sam@buyer.example")],
                                                    due_date=TODAY + timedelta(days=5)), "test")
        s.commit()
    page = editor.html()
    assert 'name="remind_days_before"' in page and 'value="3"' in page
    assert _remind(app) == 0  # due in 5 days, reminded 3 days before by default

    before = snapshot(app)
    bad = editor.do("reminders", expect=422, reminders="1", remind_days_before="31", send_hour="8",
                    timezone="Mars/Olympus")
    text = html.unescape(bad.text)
    assert 'id="r-days-err">days from 0 to 30</p>' in text and 'value="31"' in text
    assert snapshot(app) == before
    tz = editor.do("reminders", expect=422, reminders="1", remind_days_before="5", send_hour="8",
                   timezone="Mars/Olympus")
    assert 'id="r-tz-err"' in tz.text and snapshot(app) == before

    editor.do("reminders", reminders="1", remind_days_before="5", send_hour="9", timezone="Europe/Berlin",
              weekends="1")
    saved = _settings(app, plan["id"])
    assert (saved["reminders"], saved["remind_days_before"], saved["send_hour"], saved["weekends"],
            saved["timezone"]) == (True, 5, 9, True, "Europe/Berlin")
    assert 'value="Europe/Berlin"' in editor.html()

    editor.do("reminders", remind_days_before="5", send_hour="9", timezone="Europe/Berlin")  # unchecked: off
    assert _settings(app, plan["id"])["reminders"] is False
    assert _remind(app) == 0
    editor.do("reminders", reminders="1", remind_days_before="5", send_hour="9", timezone="Europe/Berlin")
    assert _remind(app) == 1


def test_reminder_settings_need_the_editors_csrf(client, editor, plan):
    response = client.post(editor.page + "/do", data={"csrf": "forged", "op": "reminders",
                                                      "remind_days_before": "1", "send_hour": "8"})
    assert response.status_code == 403


def test_slack_webhook_page_is_for_admins_validates_and_switches_off(app, client, sign_in):
    sign_in(role="rep")
    assert client.get("/settings/notifications").status_code == 403
    admin = sign_in(role="admin")
    page = client.get("/settings/notifications")
    assert page.status_code == 200 and 'name="slack_url"' in page.text
    assert client.post("/settings/notifications", data={"slack_url": "https://8.8.8.8/x"}).status_code == 403
    before = snapshot(app)
    for url, message in (("http://8.8.8.8/services/x", "https://"), ("https://127.0.0.1/services/x", "private"),
                         ("https://10.1.2.3/hook", "private")):
        refused = client.post("/settings/notifications", data={"csrf": admin.csrf, "slack_url": url})
        assert refused.status_code == 422 and message in refused.text and f'value="{url}"' in refused.text
    assert snapshot(app) == before
    ok = client.post("/settings/notifications", data={"csrf": admin.csrf, "slack_url": "https://8.8.8.8/services/x"})
    assert ok.status_code == 303
    with app.app_context():
        assert notifications.tenant_settings(session(), admin.tenant_id)["slack_url"] == "https://8.8.8.8/services/x"
    assert 'value="https://8.8.8.8/services/x"' in client.get("/settings/notifications").text
    off = client.post("/settings/notifications", data={"csrf": admin.csrf, "slack_url": ""})
    assert off.status_code == 303 and "switched off" in client.get(off.headers["Location"]).text
    with app.app_context():
        assert notifications.tenant_settings(session(), admin.tenant_id)["slack_url"] == ""
