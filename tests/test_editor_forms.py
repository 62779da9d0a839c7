"""The editor's forms keep what was typed when a save is refused, one-click done/undone,
and the CRM panel (deal, stage label, gates, sync status, mismatch advice)."""
from __future__ import annotations

import html
from datetime import date, timedelta

import pytest
from conftest import milestone
from sqlalchemy import select
from test_editor import Editor, open_editor

from connector.memory import MemoryCrm
from webapp import jobs, providers
from webapp.db import session
from webapp.models import Installation, Tenant


@pytest.fixture
def editor(api, client, plan):
    return Editor(client, open_editor(api, client, plan["id"]))


PLAN_FORM = {
    "title": "Acme rollout", "value_summary": "Cut onboarding from 6 weeks to 2.",
    "challenges": "Manual provisioning\nNo SSO", "ideal_results": "Live in March",
    "deliverables": "Signed MSA", "budget": "120k EUR", "go_live_date": "2027-03-01",
    "start_date": "2026-12-01", "dates": "Board meeting | 2027-01-15",
    "resources": "Security overview | https://example.com/sec\nEvil | javascript:alert(1)",
}


def test_a_rejected_plan_save_keeps_every_typed_value_and_names_the_field(api, editor, plan):
    response = editor.do("plan", expect=422, version=str(plan["version"]), **PLAN_FORM)
    page = html.unescape(response.get_data(as_text=True))
    # every value typed is still in the form
    assert "Cut onboarding from 6 weeks to 2.</textarea>" in page
    assert "Manual provisioning\nNo SSO</textarea>" in page
    assert 'value="120k EUR"' in page and 'value="2027-03-01"' in page
    assert "Board meeting | 2027-01-15</textarea>" in page
    assert "Evil | javascript:alert(1)</textarea>" in page
    # the message sits under the resources field, in plain words, not pydantic's
    assert 'id="p-res-err">“Evil | javascript:alert(1)”: only http and https links are allowed</p>' in page
    assert 'aria-invalid="true" aria-describedby="p-res-err res-hint"' in page
    assert "Value error" not in page and "url:" not in page
    # and nothing was saved
    stored = api.get(f"/plans/{plan['id']}").json
    assert stored["value_summary"] == plan["value_summary"] and stored["version"] == plan["version"]
    # a fixed resource saves everything typed
    fixed = {**PLAN_FORM, "resources": "Security overview | https://example.com/sec"}
    editor.do("plan", version=str(plan["version"]), **fixed)
    stored = api.get(f"/plans/{plan['id']}").json
    assert stored["value_summary"] == PLAN_FORM["value_summary"]
    assert stored["constraints"]["budget"] == "120k EUR"


def test_a_rejected_milestone_edit_reopens_that_form_only(editor, plan):
    m = milestone(plan, "Define requirements and success criteria")
    other = milestone(plan, "Commercial agreement")
    response = editor.do("milestone-edit", expect=422, milestone_id=m["id"], version=str(m["version"]),
                         title="Requirements, signed off", description="typed text", due_date="not-a-date",
                         status="in_progress", risk="at_risk", owner_side="buyer", owners="",
                         stage_id="")
    page = html.unescape(response.get_data(as_text=True))
    assert 'value="Requirements, signed off"' in page and "typed text</textarea>" in page
    assert f'id="mdue-{m["id"]}-err">use a date like 2026-12-31</p>' in page
    assert page.count("<details class=\"more\" open>") == 1
    assert f'value="{other["title"]}"' in page  # other milestones show what is stored


def test_one_click_done_and_undone(api, editor, plan):
    m = milestone(plan, "Discovery call")
    editor.do("milestone-done", milestone_id=m["id"], version=str(m["version"]), done="1")
    after = milestone(api.get(f"/plans/{plan['id']}").json, "Discovery call")
    assert after["status"] == "done"
    assert 'aria-label="Mark Discovery call not done"' in editor.html()
    editor.do("milestone-done", milestone_id=m["id"], version=str(after["version"]), done="0")
    assert milestone(api.get(f"/plans/{plan['id']}").json, "Discovery call")["status"] == "in_progress"
    # a stale version is refused, not applied over someone else's change
    editor.do("milestone-done", expect=409, milestone_id=m["id"], version=str(m["version"]), done="1")


def test_a_new_plan_is_named_like_its_deal(api):
    body = {"template": "quick", "deal": {"provider": "hubspot", "account_id": "a", "deal_id": "9",
                                          "name": "Globex renewal"}}
    assert api.post("/plans", json=body).json["title"] == "Globex renewal"
    body["deal"] = {**body["deal"], "deal_id": "10"}
    assert api.post("/plans", json={**body, "title": "Typed"}).json["title"] == "Typed"


@pytest.fixture
def crm(app, api):
    crm = MemoryCrm()
    crm.add_deal("d1", stage="decisionmakerboughtin")  # already well along
    providers.override(app, "hubspot", connector=lambda inst, _store: crm.connector(inst.account_id))
    with app.app_context():
        s = session()
        tenant = s.scalars(select(Tenant).where(Tenant.name == "acme")).one()
        s.add(Installation(tenant_id=tenant.id, provider="hubspot", account_id="acct-1", settings={}))
        s.commit()
    return crm


def test_crm_panel_on_a_deal_further_along_advises_marking_done(app, api, client, crm):
    plan = api.post("/plans", json={"template": "enterprise", "deal": {
        "provider": "hubspot", "account_id": "acct-1", "deal_id": "d1", "name": "Acme expansion"}}).json
    with app.app_context():
        jobs.TASKS["relay"]()
    assert crm.deals["d1"]["stage"] == "decisionmakerboughtin"
    status = api.get(f"/plans/{plan['id']}/sync").json
    assert status["mismatch"]["kind"] == "ahead" and status["mismatch"]["expected_stage"] is None
    page = html.unescape(Editor(client, open_editor(api, client, plan["id"])).html())
    panel = page.split('id="crm"', 1)[1].split("</section>", 1)[0]
    assert "Acme expansion" in panel
    assert 'href="https://app.hubspot.com/contacts/acct-1/record/0-3/d1"' in panel
    assert "Decision maker bought-in" in panel  # the stage's label, not its id
    assert "already at “Decision maker bought-in”" in panel and "mark them done" in panel
    assert "move the deal back" not in panel and "None" not in panel
    assert "Define requirements and success criteria</a> → " in panel  # which milestone moves which stage
    assert "In sync" in panel


def _edit_form(m: dict, **extra) -> dict:
    return {"milestone_id": m["id"], "version": str(m["version"]), "title": m["title"],
            "description": m["description"], "due_date": m["due_date"] or "", "status": m["status"],
            "risk": m["risk"], "owner_side": m["owner_side"], "owners": "", "stage_id": m["stage_id"],
            "dependencies": "1", **extra}


def test_the_milestone_form_sets_prerequisites_and_names_a_cycle_next_to_the_field(api, editor, plan):
    a = milestone(plan, "Discovery call")
    b = milestone(plan, "Identify problems to solve")
    editor.do("milestone-edit", **_edit_form(b, depends_on=[a["id"]], dep_days="4", dep_after="due"))
    b = api.get(f"/milestones/{b['id']}").json
    assert b["depends_on"] == [{"milestone_id": a["id"], "days": 4, "after": "due"}]
    assert b["due_date"] == (date.fromisoformat(a["due_date"]) + timedelta(days=4)).isoformat()
    page = editor.html()
    assert f'<option value="{a["id"]}" selected>Discovery call</option>' in page

    # a waiting on b, which waits on a: refused, said next to the prerequisites, nothing saved
    a = api.get(f"/milestones/{a['id']}").json
    response = editor.do("milestone-edit", expect=422, **_edit_form(a, depends_on=[b["id"]], dep_days="1"))
    page = html.unescape(response.get_data(as_text=True))
    assert f'<p class="err" id="mdep-{a["id"]}-err">this would make a cycle: “Discovery call” → ' \
           '“Identify problems to solve” → “Discovery call”' in page
    assert f'id="mdep-{a["id"]}" name="depends_on" multiple size="4" aria-invalid="true"' in page
    assert f'<option value="{b["id"]}" selected>Identify problems to solve</option>' in page  # kept
    assert api.get(f"/milestones/{a['id']}").json["depends_on"] == []
    response = editor.do("milestone-edit", expect=422, **_edit_form(a, depends_on=[b["id"]], dep_days="soon"))
    assert f'id="mdd-{a["id"]}-err">a whole number of days' in response.get_data(as_text=True)
    # no prerequisite picked: the dependency is removed, the date stays
    editor.do("milestone-edit", **_edit_form(b, version=str(b["version"])))
    assert api.get(f"/milestones/{b['id']}").json["depends_on"] == []
