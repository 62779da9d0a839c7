"""The rep editor's forms in headless Chromium: a refused save keeps what was typed."""
from __future__ import annotations

from tests.browser.test_buyer_browser import demo  # noqa: F401  (the fixture)


def test_a_refused_save_keeps_every_typed_value_and_says_why_next_to_the_field(browser, demo):  # noqa: F811
    rep = browser.page()
    rep.goto(demo["editor"])
    rep.get_by_label("Why we are doing this (value summary)").fill("Typed value summary, not lost.")
    rep.get_by_label("Challenges").fill("Typed challenge one\nTyped challenge two")
    rep.get_by_label("Budget").fill("$99,000")
    rep.get_by_label("Linked resources").fill("Click me | javascript:alert(1)")
    rep.get_by_role("button", name="Save plan").click()
    rep.wait_for_selector(".notice.error")
    assert rep.get_by_label("Why we are doing this (value summary)").input_value() == "Typed value summary, not lost."
    assert rep.get_by_label("Challenges").input_value() == "Typed challenge one\nTyped challenge two"
    assert rep.get_by_label("Budget").input_value() == "$99,000"
    resources = rep.get_by_label("Linked resources")
    assert resources.input_value() == "Click me | javascript:alert(1)"
    assert resources.get_attribute("aria-invalid") == "true"
    # the message is next to the field, in plain words, and screen readers get it with the field
    message = rep.locator("#p-res-err")
    assert message.inner_text() == "“Click me | javascript:alert(1)”: only http and https links are allowed"
    assert "p-res-err" in resources.get_attribute("aria-describedby")
    assert "Value error" not in rep.content()
    # fixing the one field saves everything typed
    resources.fill("Security overview | https://example.com/security")
    rep.get_by_role("button", name="Save plan").click()
    rep.wait_for_selector(".notice.ok")
    assert rep.get_by_label("Why we are doing this (value summary)").input_value() == "Typed value summary, not lost."
    assert rep.get_by_label("Budget").input_value() == "$99,000"


def test_one_click_done_without_javascript(browser, demo):  # noqa: F811
    rep = browser.page(java_script_enabled=False)
    rep.goto(demo["editor"])
    item = rep.locator("li.ms", has=rep.locator("h4", has_text="Discovery call"))
    item.get_by_role("button", name="Mark Discovery call done").click()
    item = rep.locator("li.ms", has=rep.locator("h4", has_text="Discovery call"))
    assert "st-done" in item.get_attribute("class")
    item.get_by_role("button", name="Mark Discovery call not done").click()
    item = rep.locator("li.ms", has=rep.locator("h4", has_text="Discovery call"))
    assert "st-in_progress" in item.get_attribute("class")
