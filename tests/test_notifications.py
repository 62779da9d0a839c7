"""Notifications end to end: real SMTP to the local catcher (aiosmtpd), one-click links,
unsubscribe (RFC 8058), nudges, rep alerts, Slack over real HTTP, interrupted sends."""
from __future__ import annotations

import json
import re
import threading
import typing
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import TODAY, path_of
from sqlalchemy import select

from webapp import notifications, plans, sharing
from webapp.db import session
from webapp.models import Milestone, Notification, Plan, User
from webapp.schemas import MilestonePatch, Owner

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)  # a Thursday, 10:00 UTC
LINK = re.compile(r"(http://localhost:5000/[ru]/\S+)")


@pytest.fixture
def clock_box():
    return {"now": NOW}


@pytest.fixture
def app_config(catcher, clock_box):
    return {"SMTP_URL": catcher.url, "MAIL_FROM": "Acme <mail@acme.example>",
            "CLOCK": lambda: clock_box["now"], "NOTIFY_ALLOW_PRIVATE_URLS": True}


@pytest.fixture
def owned(app, plan):
    """The plan's buyer-side "Identify problems to solve", owned by Sam, due in 3 days."""
    with app.app_context():
        s = session()
        m = s.scalars(select(Milestone).where(Milestone.plan_id == plan["id"],
                                              Milestone.title == "Identify problems to solve")).one()
        plans.update_milestone(s, m, MilestonePatch(
            owners=[Owner(name="Sam Ortega", email="sam@buyer.example")],
            due_date=TODAY + timedelta(days=3)), "test")
        s.commit()
        return m.id


def _deliver(app, **kw):
    with app.app_context():
        return notifications.deliver(session(), **kw)


def _remind(app):
    with app.app_context():
        return notifications.reminders(session())


def test_reminder_goes_out_once_with_both_parts_and_unsubscribe_headers(app, catcher, owned):
    assert _remind(app) == 1
    assert _remind(app) == 0  # the same day: nothing more
    assert _deliver(app) == 1
    [msg] = catcher.wait_for(1)
    assert msg["to"] == ["sam@buyer.example"]
    assert "Identify problems to solve" in msg["text"] and "due in 3 days" in msg["text"]
    assert "Mark done" in msg["html"] and "acme" in msg["html"]  # the tenant's name
    assert msg["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["headers"]["List-Unsubscribe"].startswith("<http://localhost:5000/u/")
    assert msg["headers"]["Message-ID"].endswith("@acme.example>")
    assert _deliver(app) == 0


def test_quiet_on_weekends_and_before_the_send_hour(app, clock_box, owned):
    clock_box["now"] = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # Saturday
    assert _remind(app) == 0
    clock_box["now"] = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)  # Friday, 06:00
    assert _remind(app) == 0


def test_one_click_link_shows_a_page_and_only_the_post_changes_it_once(app, client, catcher, owned):
    _remind(app)
    _deliver(app)
    [msg] = catcher.wait_for(1)
    done_url = LINK.findall(msg["text"])[0]
    page = client.get(path_of(done_url))
    assert page.status_code == 200 and "Mark this step done" in page.text
    with app.app_context():
        assert session().get(Milestone, owned).status != "done"  # a GET changes nothing
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert client.post(path_of(done_url), data={"csrf": "forged"}).status_code == 403
    answer = client.post(path_of(done_url), data={"csrf": csrf})
    assert answer.status_code == 200 and "marked done" in answer.text
    with app.app_context():
        m = session().get(Milestone, owned)
        assert m.status == "done" and m.completed_by.startswith("buyer:Sam Ortega")
    assert client.post(path_of(done_url), data={"csrf": csrf}).status_code == 422  # single use
    assert "used already" in client.get(path_of(done_url)).text
    assert client.get(path_of(done_url)[:-3] + "xyz").status_code == 404


def test_propose_link_needs_a_date_and_reason(app, client, catcher, owned):
    _remind(app)
    _deliver(app)
    propose = LINK.findall(catcher.wait_for(1)[0]["text"])[2]
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get(path_of(propose)).text).group(1)
    assert client.post(path_of(propose), data={"csrf": csrf}).status_code == 422
    new = (TODAY + timedelta(days=10)).isoformat()
    ok = client.post(path_of(propose), data={"csrf": csrf, "date": new, "reason": "Holidays"})
    assert ok.status_code == 200
    with app.app_context():
        plan = session().get(Milestone, owned).plan
        [proposal] = sharing.proposals_for(session(), plan)
        assert proposal.proposed_date.isoformat() == new and proposal.author_email == "sam@buyer.example"


def test_one_click_unsubscribe_stops_reminders(app, client, catcher, api, plan, owned):
    _remind(app)
    _deliver(app)
    headers = catcher.wait_for(1)[0]["headers"]
    url = headers["List-Unsubscribe"].strip("<>")
    answer = client.post(path_of(url), data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 204
    assert api.post(f"/plans/{plan['id']}/nudge").json == {"sent": 0}
    with app.app_context():
        assert notifications.opted_out(session(), session().get(Plan, plan["id"]).tenant_id,
                                       "sam@buyer.example", plan["id"])


def test_nudge_sends_now_at_most_once_an_hour(app, catcher, clock_box, api, plan, owned):
    first = api.post(f"/plans/{plan['id']}/nudge")
    assert first.status_code == 202 and first.json == {"sent": 1}
    assert api.post(f"/plans/{plan['id']}/nudge").json == {"sent": 0}
    clock_box["now"] = NOW + timedelta(minutes=61)
    assert api.post(f"/plans/{plan['id']}/nudge").json == {"sent": 1}
    assert _deliver(app) == 2
    assert len(catcher.wait_for(2)) == 2
    assert api.post("/plans/nope/nudge").status_code == 404


def _rep_owns(app, plan_id, email="rep@seller.example") -> str:
    with app.app_context():
        s = session()
        row = s.get(Plan, plan_id)
        user = User(tenant_id=row.tenant_id, provider="local", crm_user_id="rep-1", email=email,
                    name="Riley Rep")
        s.add(user)
        s.flush()
        row.owner_user_id = user.id
        s.commit()
        return user.id


def test_buyer_proposal_alerts_the_rep_by_mail(app, catcher, plan, owned):
    _rep_owns(app, plan["id"])
    with app.app_context():
        s = session()
        p = plans.get_plan(s, s.get(Plan, plan["id"]).tenant_id, plan["id"])
        m = sharing.visible_milestone(p, owned)
        sharing.propose_date(s, p, m, TODAY + timedelta(days=20), "Budget freeze",
                             sharing.Buyer("Dana", "dana@buyer.example"), None, TODAY)
        s.commit()
    assert _deliver(app) == 1
    [msg] = catcher.wait_for(1)
    assert msg["to"] == ["rep@seller.example"]
    assert "Dana" in msg["subject"] and "Budget freeze" in msg["text"]


def test_buyer_completing_a_gate_milestone_alerts_the_rep(app, catcher, plan):
    _rep_owns(app, plan["id"])
    with app.app_context():
        s = session()
        p = plans.get_plan(s, s.get(Plan, plan["id"]).tenant_id, plan["id"])
        gate = next(m for m in p.milestones if m.title == "Commercial agreement")
        assert sharing.buyer_set_done(s, p, gate, True, sharing.Buyer("Dana", "dana@buyer.example"))
        s.commit()
    assert _deliver(app) == 1
    [msg] = catcher.wait_for(1)
    assert msg["to"] == ["rep@seller.example"] and "Commercial agreement" in msg["text"]


def test_a_rolled_back_buyer_action_sends_nothing(app, plan, owned):
    _rep_owns(app, plan["id"])
    with app.app_context():
        s = session()
        p = plans.get_plan(s, s.get(Plan, plan["id"]).tenant_id, plan["id"])
        sharing.add_comment(s, p, sharing.visible_milestone(p, owned), "hi", side="buyer",
                            name="Dana", email="d@b.example", actor="buyer:Dana <d@b.example>")
        s.rollback()
        assert s.scalars(select(Notification)).all() == []


def test_a_send_interrupted_before_the_mark_is_never_sent_twice(app, catcher, clock_box, owned):
    _remind(app)

    def killed(row):
        raise SystemExit("worker killed")

    with pytest.raises(SystemExit):
        _deliver(app, after_send=killed)
    assert _deliver(app) == 0  # still leased: not taken again
    clock_box["now"] = NOW + notifications.LEASE + timedelta(seconds=1)
    assert _deliver(app) == 0
    with app.app_context():
        [row] = session().scalars(select(Notification)).all()
        assert row.status == "failed" and "interrupted" in row.last_error
    assert len(catcher.snapshot()) == 1


def test_smtp_failure_is_retried_with_backoff_then_visible(app, clock_box, owned):
    app.config["SMTP_URL"] = "smtp://127.0.0.1:9"  # nothing listens there
    _remind(app)
    assert _deliver(app) == 0
    with app.app_context():
        [row] = session().scalars(select(Notification)).all()
        assert row.status == "pending" and row.attempts == 1 and row.next_attempt_at > NOW
        row.attempts = notifications.MAX_ATTEMPTS - 1
        session().commit()
    clock_box["now"] = NOW + timedelta(hours=3)
    _deliver(app)
    with app.app_context():
        assert session().scalars(select(Notification)).one().status == "failed"


class _Hook(BaseHTTPRequestHandler):
    received: typing.ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_slack_webhook_gets_the_same_alert(app, plan, owned):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []
    try:
        user_id = _rep_owns(app, plan["id"])
        with app.app_context():
            s = session()
            notifications.save_settings(s, s.get(User, user_id).tenant_id,
                                        {"slack_url": f"http://127.0.0.1:{server.server_port}/hook"},
                                        user_id=user_id)
            p = plans.get_plan(s, s.get(User, user_id).tenant_id, plan["id"])
            sharing.add_comment(s, p, sharing.visible_milestone(p, owned), "Looks good",
                                side="buyer", name="Dana", email="d@b.example",
                                actor="buyer:Dana <d@b.example>")
            s.commit()
        assert _deliver(app) == 2  # e-mail and Slack
        assert "Looks good" in _Hook.received[0]["text"]
    finally:
        server.shutdown()


def test_slack_urls_to_private_addresses_are_refused_without_the_flag(app):
    app.config["NOTIFY_ALLOW_PRIVATE_URLS"] = False
    with app.app_context():
        for url in ("http://hooks.example/x", "https://127.0.0.1/hook", "https://10.0.0.8/hook"):
            with pytest.raises(notifications.Invalid):
                notifications.check_webhook_url(url)


def test_local_mailbox_lists_messages_as_json(app, client, catcher, owned):
    assert client.get("/local/mail").status_code == 404  # no catcher registered: 404
    app.extensions["mutualplan.mail_catcher"] = catcher
    _remind(app)
    _deliver(app)
    catcher.wait_for(1)
    [msg] = client.get("/local/mail?format=json").json["messages"]
    assert set(msg) == {"to", "subject", "headers", "text", "html"}
    assert "Identify problems" in client.get("/local/mail").text


def test_preferences_page_saves_and_switches_alerts_off(app, client, sign_in, plan, owned):
    assert client.get("/app/notifications").status_code == 401  # signed out
    person = sign_in()
    page = client.get("/app/notifications")
    assert page.status_code == 200 and "daily digest" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert client.post("/app/notifications", data={"csrf": "x"}).status_code == 403
    bad = client.post("/app/notifications", data={"csrf": csrf, "timezone": "Mars/Base"})
    assert bad.status_code == 422
    saved = client.post("/app/notifications", data={"csrf": csrf, "digest": "on",
                                                     "timezone": "Europe/Berlin"})
    assert saved.status_code == 200 and "Saved" in saved.text
    with app.app_context():
        s = session()
        prefs = notifications.user_settings(s, s.get(User, person.user_id))
        assert prefs["instant"] is False and prefs["digest"] is True
        s.get(Plan, plan["id"]).owner_user_id = person.user_id
        s.commit()
        p = plans.get_plan(s, person.tenant_id, plan["id"])
        sharing.add_comment(s, p, sharing.visible_milestone(p, owned), "hi", side="buyer",
                            name="Dana", email="d@b.example", actor="buyer:Dana <d@b.example>")
        s.commit()
        assert s.scalars(select(Notification)).all() == []  # instant alerts are off


def test_digest_and_stalled_alerts_once_each(app, clock_box, plan, owned):
    _rep_owns(app, plan["id"])
    with app.app_context():
        s = session()
        p = plans.get_plan(s, s.get(Plan, plan["id"]).tenant_id, plan["id"])
        sharing.add_comment(s, p, sharing.visible_milestone(p, owned), "hi", side="buyer",
                            name="Dana", email="d@b.example", actor="buyer:Dana <d@b.example>")
        s.commit()
        s.query(Notification).delete()
        s.commit()
        assert notifications.digests(s) == 1
        assert notifications.digests(s) == 0, [(n.kind, n.key) for n in s.scalars(select(Notification))]
    clock_box["now"] = NOW + timedelta(days=15)
    with app.app_context():
        s = session()
        assert notifications.stalled_reason(s, s.get(Plan, plan["id"]), clock_box["now"])
        assert notifications.digests(s) == 1  # stalled (no digest: no activity in 24 h)
        kinds = sorted(n.kind for n in s.scalars(select(Notification)))
        assert kinds == ["digest", "stalled"]


def test_send_reminder_from_the_editor_says_how_many_went(app, client, catcher, api, plan, owned):
    from test_editor import open_editor

    page = open_editor(api, client, plan["id"])
    html = client.get(page).get_data(as_text=True)
    assert "Send reminder" in html
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    response = client.post(f"{page}/nudge", data={"csrf": csrf})
    assert response.status_code == 303 and "ok=reminders-1" in response.headers["Location"]
    notice = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Reminder sent to 1 buyer." in notice
    again = client.post(f"{page}/nudge", data={"csrf": csrf})  # within the hour: none
    assert "No reminder sent" in client.get(again.headers["Location"]).get_data(as_text=True)
