"""A buyer opens a "verified e-mail" link in headless Chromium on a phone-sized screen: the gate
shows no plan data, the code arrives over real SMTP in the local catcher (read from
/local/mail?format=json), and entering it opens the plan for this device only."""
from __future__ import annotations

import json
import re

import pytest

from webapp import notifications, sharing
from webapp.db import session
from webapp.models import Plan


@pytest.fixture
def app_config(catcher):
    return {"SMTP_URL": catcher.url, "MAIL_FROM": "Acme <mail@acme.example>"}


@pytest.fixture
def gated(app, plan, live_server, catcher):
    app.extensions["mutualplan.mail_catcher"] = catcher  # /local/mail lists what it caught
    with app.app_context():
        s = session()
        p = s.get(Plan, plan["id"])
        _, url = sharing.create_link(s, p, "tests", sharing.Keys.from_config(app.config),
                                     access_mode="verified", allowed_domains=["acme.example"])
        s.commit()
    return url


def test_verified_email_flow_with_the_code_from_the_local_mailbox(app, browser, plan, gated, live_server):
    page = browser.page(viewport={"width": 390, "height": 844})
    page.goto(gated)
    assert plan["title"] not in page.content()
    assert page.get_by_role("heading", name="Who are you?").is_visible()
    page.get_by_label("Your name").fill("Dana Whitfield")
    page.get_by_label("Work e-mail").fill("dana@elsewhere.example")
    page.get_by_role("button", name="E-mail me a code").click()
    assert "acme.example only" in page.locator("#error").inner_text()
    page.get_by_label("Work e-mail").fill("dana@acme.example")
    page.get_by_role("button", name="E-mail me a code").click()
    page.get_by_role("heading", name="Enter your code").wait_for()
    assert "d***@acme.example" in page.content() and plan["title"] not in page.content()

    with app.app_context():  # the worker's round (JOBS_MODE=manual in tests)
        assert notifications.deliver(session()) == 1
    mailbox = browser.page()
    mailbox.goto(f"{live_server}/local/mail?format=json")
    [message] = json.loads(mailbox.locator("body").inner_text())["messages"]
    assert message["to"] == ["dana@acme.example"]
    code = re.search(r"Your code is (\d{6})", message["text"]).group(1)

    page.get_by_role("textbox", name="Code").fill("000000" if code != "000000" else "111111")
    page.get_by_role("button", name="Open the plan").click()
    assert "attempts left" in page.locator("#error").inner_text()
    page.get_by_role("textbox", name="Code").fill(code)
    page.get_by_role("button", name="Open the plan").click()
    page.wait_for_selector(".notice.ok")
    assert page.get_by_role("heading", name=plan["title"]).is_visible()
    assert "You are Dana Whitfield" in page.content()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling

    other = browser.page()  # another device (browser context): asked again
    other.goto(gated)
    assert plan["title"] not in other.content()
