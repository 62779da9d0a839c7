"""Settings for admins: guarded, CSRF on every form, nothing half-saved; connections,
stage mapping with preview, team roles and API keys."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from connector.memory import MemoryCrm
from webapp import jobs, providers
from webapp.auth import hash_key
from webapp.db import session
from webapp.models import (
    ApiKey,
    Branding,
    Installation,
    OutboxEntry,
    PlanTemplate,
    StageMapping,
    Tenant,
)

PAGES = ["/settings/connections", "/settings/mapping", "/settings/team", "/settings/keys"]


def test_anonymous_go_to_login_and_reps_are_refused(client, sign_in):
    for page in PAGES:
        response = client.get(page, headers={"Accept": "text/html"})
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    sign_in(role="rep")
    for page in PAGES:
        assert client.get(page, headers={"Accept": "text/html"}).status_code == 403


@pytest.fixture
def crm(app, api):
    crm = MemoryCrm()
    crm.add_deal("d1")
    crm.add_deal("d2", stage="decisionmakerboughtin")
    providers.override(app, "hubspot", connector=lambda inst, _store: crm.connector(inst.account_id))
    with app.app_context():
        s = session()
        tenant = s.scalars(select(Tenant).where(Tenant.name == "acme")).one()
        row = Installation(tenant_id=tenant.id, provider="hubspot", account_id="acct-1",
                           settings={"mode": "deal_properties"})
        s.add(row)
        s.commit()
        crm.installation_id = row.id
    for deal in ("d1", "d2"):
        assert api.post("/plans", json={"template": "enterprise", "deal": {
            "provider": "hubspot", "account_id": "acct-1", "deal_id": deal, "name": f"Deal {deal}"}}).status_code == 201
    with app.app_context():
        jobs.TASKS["relay"]()
    return crm


def test_connections_show_state_and_disconnect_needs_csrf(app, client, sign_in, crm):
    admin = sign_in(role="admin")
    page = client.get("/settings/connections").get_data(as_text=True)
    assert "HubSpot · acct-1" in page and "Connected" in page and "Deal properties only" in page
    assert 'href="/install/hubspot"' in page
    url = f"/settings/connections/{crm.installation_id}/disconnect"
    assert client.post(url, data={"csrf": "forged"}).status_code == 403
    with app.app_context():
        assert session().get(Installation, crm.installation_id).status == "active"
    response = client.post(url, data={"csrf": admin.csrf})
    assert response.status_code == 303
    with app.app_context():
        assert session().get(Installation, crm.installation_id).status == "uninstalled"
    assert "Disconnected" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_dead_letters_are_retried_from_the_page(app, client, sign_in, crm):
    admin = sign_in(role="admin")
    with app.app_context():
        s = session()
        for entry in s.scalars(select(OutboxEntry)):
            entry.status, entry.last_error = "dead", "Rejected: property does not exist"
        s.commit()
    page = client.get("/settings/connections").get_data(as_text=True)
    assert "could not be sent" in page and "property does not exist" in page
    response = client.post(f"/settings/connections/{crm.installation_id}/retry", data={"csrf": admin.csrf})
    assert response.status_code == 303
    with app.app_context():
        assert not session().scalars(select(OutboxEntry).where(OutboxEntry.status == "dead")).all()


def _mapping_form(page: str, **choices) -> dict:
    """The mapping form as the page renders it, with some gates changed by milestone title."""
    form = {}
    for i, title in re.findall(r'<label for="gate-(\d+)">([^<]+)</label>', page):
        form[f"gate-{i}"] = choices.get(title.replace("&amp;", "&"), "")
    return form


def test_stage_mapping_preview_then_save_and_refusals_save_nothing(app, client, sign_in, crm):
    admin = sign_in(role="admin")
    response = client.get("/settings/mapping")
    assert response.status_code == 302
    url = response.headers["Location"]
    page = client.get(url).get_data(as_text=True)
    assert "Qualified to buy" in page  # the CRM's labels
    assert "built-in default" in page
    form = _mapping_form(page, **{"Discovery call": "presentationscheduled"})
    # preview: d1's deal would move to "Presentation scheduled" once Discovery call is done
    preview = client.post(url, data={**form, "csrf": admin.csrf, "action": "preview"}).get_data(as_text=True)
    assert "Preview of this mapping" in preview
    with app.app_context():
        assert session().scalars(select(StageMapping)).all() == []
    # a closed stage without the admin's permission is refused next to its field
    closed = _mapping_form(page, **{"Discovery call": "closedwon"})
    refused = client.post(url, data={**closed, "csrf": admin.csrf, "action": "save"})
    assert refused.status_code == 422
    assert "closes the deal" in refused.get_data(as_text=True)
    assert client.post(url, data={**form, "csrf": "x", "action": "save"}).status_code == 403
    with app.app_context():
        assert session().scalars(select(StageMapping)).all() == []
    saved = client.post(url, data={**form, "close_milestone": "Discovery call", "csrf": admin.csrf,
                                   "action": "save"})
    assert saved.status_code == 303
    with app.app_context():
        row = session().scalars(select(StageMapping)).one()
        assert row.gates == {"Discovery call": "presentationscheduled"}
        assert row.close_milestone == "Discovery call" and row.allow_closed is False


def test_preview_says_where_each_deal_would_move(app, api, client, sign_in, crm):
    admin = sign_in(role="admin")
    plans = api.get("/plans").json["items"]
    d1 = next(p for p in plans if p["title"] == "Deal d1")
    full = api.get(f"/plans/{d1['id']}").json
    m = next(m for st in full["stages"] for m in st["milestones"] if m["title"] == "Discovery call")
    api.patch(f"/milestones/{m['id']}", json={"status": "done"})
    url = client.get("/settings/mapping").headers["Location"]
    form = _mapping_form(client.get(url).get_data(as_text=True), **{"Discovery call": "contractsent"})
    page = client.post(url, data={**form, "csrf": admin.csrf, "action": "preview"}).get_data(as_text=True)
    rows = page.split('id="preview"', 1)[1]
    d1_row = rows.split("<td>Deal d1</td>", 1)[1].split("</tr>", 1)[0]
    assert "<strong>Contract sent</strong>" in d1_row
    d2_row = rows.split("<td>Deal d2</td>", 1)[1].split("</tr>", 1)[0]
    assert "stays" in d2_row


def test_team_roles_change_and_the_last_admin_stays(app, client, sign_in):
    rep = sign_in(role="rep", name="Riley Rep")
    admin = sign_in(role="admin", name="Ada Admin")
    page = client.get("/settings/team").get_data(as_text=True)
    assert "Riley Rep" in page and "Ada Admin (you)" in page
    ok = client.post(f"/settings/team/{rep.user_id}/role", data={"csrf": admin.csrf, "role": "admin"})
    assert ok.status_code == 303
    refused = client.post(f"/settings/team/{rep.user_id}/role", data={"csrf": admin.csrf, "role": "owner"})
    assert refused.status_code == 422 and "must be one of" in refused.get_data(as_text=True)


def test_api_keys_are_shown_once_and_revoked(app, client, sign_in):
    admin = sign_in(role="admin")
    assert client.post("/settings/keys", data={"csrf": admin.csrf, "label": ""}).status_code == 422
    response = client.post("/settings/keys", data={"csrf": admin.csrf, "label": "Zapier"})
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    key = re.search(r'id="new-key" class="url" type="text" readonly value="(mp_[^"]+)"', response.get_data(as_text=True))[1]
    assert client.get("/api/v1/plans", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    listing = client.get("/settings/keys").get_data(as_text=True)
    assert key not in listing and "Zapier" in listing
    with app.app_context():
        row = session().scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).one()
    assert client.post(f"/settings/keys/{row.id}/revoke", data={"csrf": admin.csrf}).status_code == 303
    assert client.get("/api/v1/plans", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_another_tenants_rows_are_not_found(app, client, sign_in, crm):
    admin = sign_in(tenant="globex", role="admin")
    assert "acct-1" not in client.get("/settings/connections").get_data(as_text=True)
    response = client.post(f"/settings/connections/{crm.installation_id}/disconnect", data={"csrf": admin.csrf},
                           headers={"Accept": "text/html"})
    assert response.status_code == 404
    with app.app_context():
        assert session().get(Installation, crm.installation_id).status == "active"


TEMPLATE = """## Discovery
Discovery call | both | start+0
Security questionnaire | buyer | start+10 | internal
## Close
Order form signed | both | go-live-30 | close
Kickoff | both | go-live+5
"""


def test_templates_create_warn_edit_copy_delete(app, client, sign_in):
    admin = sign_in(role="admin")
    bad = client.post("/settings/templates/new", data={
        "csrf": admin.csrf, "name": "Mid-market", "description": "typed", "default_go_live_days": "60",
        "stages": TEMPLATE + "Typo line | vendor | start+3\n"})
    page = bad.get_data(as_text=True)
    assert bad.status_code == 422
    assert "line 7: the owner side is buyer, seller or both, not “vendor”" in page.replace("&#34;", '"')
    assert "Typo line | vendor | start+3" in page and 'value="Mid-market"' in page
    with app.app_context():
        assert session().scalars(select(PlanTemplate)).all() == []
    ok = client.post("/settings/templates/new", data={
        "csrf": admin.csrf, "name": "Mid-market", "description": "", "default_go_live_days": "60",
        "stages": TEMPLATE})
    assert ok.status_code == 303
    listing = client.get(ok.headers["Location"]).get_data(as_text=True)
    assert "4 milestones: plans with fewer than 6" in listing  # the size warning
    with app.app_context():
        row = session().scalars(select(PlanTemplate)).one()
        assert row.stages[0]["milestones"][1] == {
            "title": "Security questionnaire", "owner_side": "buyer", "anchor": "start", "days": 10,
            "description": "", "internal": True}
        assert row.stages[1]["milestones"][0]["close"] is True
    copy = client.get(f"/settings/templates/new?copy={row.id}").get_data(as_text=True)
    assert 'value="Copy of Mid-market"' in copy and "Order form signed | both | go-live-30 | close" in copy
    builtin = client.get("/settings/templates/new?copy=enterprise").get_data(as_text=True)
    assert "Commercial agreement | both | go-live-45 | close" in builtin
    assert client.post(f"/settings/templates/{row.id}/delete", data={"csrf": "x"}).status_code == 403
    assert client.post(f"/settings/templates/{row.id}/delete", data={"csrf": admin.csrf}).status_code == 303
    with app.app_context():
        assert session().scalars(select(PlanTemplate)).all() == []


def test_a_tenant_template_dates_a_plan_from_its_start_and_go_live(app, api, client, sign_in, plan):
    from test_editor import Editor, open_editor
    admin = sign_in(role="admin")
    client.post("/settings/templates/new", data={
        "csrf": admin.csrf, "name": "Mid-market", "default_go_live_days": "60", "stages": TEMPLATE})
    with app.app_context():
        template_id = session().scalars(select(PlanTemplate.id)).one()
    fresh = api.post("/plans", json={"title": "Relative dates", "start_date": "2027-01-04",
                                     "go_live_date": "2027-04-01"}).json
    editor = Editor(client, open_editor(api, client, fresh["id"]))
    assert "Mid-market (2 stages, 4 milestones)" in editor.html()
    editor.do("template", template=template_id)
    got = {m["title"]: (m["due_date"], m["internal"]) for st in api.get(f"/plans/{fresh['id']}").json["stages"]
           for m in st["milestones"]}
    assert got == {"Discovery call": ("2027-01-04", False), "Security questionnaire": ("2027-01-14", True),
                   "Order form signed": ("2027-03-02", False), "Kickoff": ("2027-04-06", False)}
    # another tenant cannot apply it
    other = sign_in(tenant="globex", role="admin")
    assert other and template_id not in client.get("/settings/templates").get_data(as_text=True)


def test_contrast_is_computed_as_wcag_says():
    from webapp.branding import contrast
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48  # the classic just-fails grey
    assert round(contrast("#1d4ed8", "#ffffff"), 2) == 6.7


def test_branding_refuses_a_low_contrast_accent_and_shows_on_the_buyer_page(app, api, client, sign_in, plan):
    from conftest import make_link, path_of
    admin = sign_in(role="admin")
    form = {"csrf": admin.csrf, "company_name": "Seller Inc", "accent": "#7dd3fc",
            "contact_name": "Riley Chen", "contact_title": "Account executive",
            "contact_email": "riley@seller.example"}
    refused = client.post("/settings/branding", data=form)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "contrast of 1.67:1" in page and "at least 4.5:1" in page
    assert 'value="Riley Chen"' in page  # kept
    with app.app_context():
        assert session().get(Branding, admin.tenant_id) is None
    assert client.post("/settings/branding", data={**form, "accent": "#0f766e"}).status_code == 303
    link = make_link(api, plan["id"])
    buyer = client.get(path_of(link["url"])).get_data(as_text=True)
    assert "Seller Inc · Mutual action plan" in buyer and "Riley Chen" in buyer
    css = next(h for h in re.findall(r'href="(/brand/[^"]+\.css)"', buyer))
    response = client.get(css)
    assert response.status_code == 200 and "--brand: #0f766e" in response.get_data(as_text=True)
    assert "immutable" in response.headers["Cache-Control"]
    # a page rendered (and cached) before a change of branding shows the new one at once
    client.post("/settings/branding", data={**form, "accent": "#0f766e", "company_name": "Seller Group"})
    assert "Seller Group · Mutual action plan" in client.get(path_of(link["url"])).get_data(as_text=True)


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
CLEAN_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="10" height="10" fill="#0f766e"/></svg>'
BAD_SVGS = {
    b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>': "<script>",
    b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>': "event handlers",
    b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink"><a x:href="https://evil.example">x</a></svg>': "links",
    b'<!DOCTYPE svg [<!ENTITY x "y">]><svg xmlns="http://www.w3.org/2000/svg"/>': "DOCTYPE",
    b'<svg xmlns="http://www.w3.org/2000/svg"><rect style="fill:url(https://evil.example/x)"/></svg>': "references",
}


def test_images_are_typed_by_content_and_svg_with_active_content_is_refused():
    from webapp.branding import MAX_IMAGE, image_type
    assert image_type(PNG) == "image/png"
    assert image_type(b"\xff\xd8\xff\xe0" + b"\x00" * 20) == "image/jpeg"
    assert image_type(CLEAN_SVG) == "image/svg+xml"
    for svg, words in BAD_SVGS.items():
        with pytest.raises(ValueError, match=re.escape(words)):
            image_type(svg)
    with pytest.raises(ValueError, match="PNG, JPEG or SVG"):
        image_type(b"<html><script>alert(1)</script></html>")  # whatever the file's name said
    with pytest.raises(ValueError, match="at most 200 KB"):
        image_type(PNG + b"\x00" * MAX_IMAGE)


def test_logo_upload_is_checked_kept_out_when_refused_and_served_safely(app, api, client, sign_in, plan):
    import io

    from conftest import make_link, path_of
    admin = sign_in(role="admin")
    base = {"csrf": admin.csrf, "company_name": "Seller Inc", "accent": "", "contact_name": "Riley",
            "contact_title": "", "contact_email": ""}
    refused = client.post("/settings/branding", content_type="multipart/form-data", data={
        **base, "logo": (io.BytesIO(next(iter(BAD_SVGS))), "logo.svg")})
    assert refused.status_code == 422 and "scripts and external content are refused" in refused.get_data(as_text=True)
    with app.app_context():
        assert session().get(Branding, admin.tenant_id) is None  # nothing half-saved
    ok = client.post("/settings/branding", content_type="multipart/form-data", data={
        **base, "logo": (io.BytesIO(CLEAN_SVG), "logo.svg"), "photo": (io.BytesIO(PNG), "me.png")})
    assert ok.status_code == 303
    buyer = client.get(path_of(make_link(api, plan["id"])["url"])).get_data(as_text=True)
    logo = re.search(r'class="brand-logo" src="([^"]+)"', buyer)[1]
    photo = re.search(r'class="contact-photo" src="([^"]+)"', buyer)[1]
    served = client.get(logo)
    assert served.status_code == 200 and served.mimetype == "image/svg+xml" and served.data == CLEAN_SVG
    assert "sandbox" in served.headers["Content-Security-Policy"]
    assert client.get(photo).mimetype == "image/png"
    assert client.get(logo.replace(".svg", ".png")).status_code == 404


def test_api_keys_show_when_they_were_last_used_written_at_most_once_a_minute(app, client, sign_in):
    from datetime import UTC, datetime, timedelta
    times = iter([datetime(2026, 11, 29, 9, 0, tzinfo=UTC), datetime(2026, 11, 29, 9, 0, 30, tzinfo=UTC),
                  datetime(2026, 11, 29, 9, 2, tzinfo=UTC)])
    admin = sign_in(role="admin")
    response = client.post("/settings/keys", data={"csrf": admin.csrf, "label": "Zapier"})
    key = re.search(r'value="(mp_[^"]+)"', response.get_data(as_text=True))[1]
    assert "Never" in client.get("/settings/keys").get_data(as_text=True)
    bearer = {"Authorization": f"Bearer {key}"}

    def used_after_call():
        moment = next(times)
        app.config["CLOCK"] = lambda: moment
        try:
            client.get("/api/v1/plans", headers=bearer)
        finally:
            app.config.pop("CLOCK")
        with app.app_context():
            return session().scalars(select(ApiKey.last_used_at).where(ApiKey.key_hash == hash_key(key))).one()

    first = used_after_call()
    assert first.replace(tzinfo=UTC) == datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    assert used_after_call() == first  # 30 s later: not written again
    assert used_after_call().replace(tzinfo=UTC) - first.replace(tzinfo=UTC) == timedelta(minutes=2)
    assert "29 Nov 2026 09:02 UTC" in client.get("/settings/keys").get_data(as_text=True)


def test_hand_off_to_onboarding_is_set_on_the_mapping_page(app, client, sign_in, crm):
    admin = sign_in(role="admin")
    url = client.get("/settings/mapping").headers["Location"]
    page = client.get(url).get_data(as_text=True)
    assert "After the deal closes won: onboarding" in page and 'id="ho-template"' in page
    bad = client.post(url, data={"csrf": admin.csrf, "action": "hand_off", "template": "quick",
                                 "cs_owner_field": "cs_owner_email", "cs_owner_default": "not an email"})
    text = bad.get_data(as_text=True)
    assert bad.status_code == 422
    assert 'id="ho-default-err">an e-mail address' in text and 'value="cs_owner_email"' in text
    with app.app_context():
        assert "hand_off" not in (session().get(Installation, crm.installation_id).settings or {})
    assert client.post(url, data={"csrf": "x", "action": "hand_off", "template": "quick"}).status_code == 403
    saved = client.post(url, data={"csrf": admin.csrf, "action": "hand_off", "template": "quick",
                                   "cs_owner_field": "", "cs_owner_default": "cs@seller.example"})
    assert saved.status_code == 303 and saved.headers["Location"].endswith("#hand-off")
    with app.app_context():
        settings = session().get(Installation, crm.installation_id).settings
        assert settings["hand_off"]["default"] == {"template": "quick", "cs_owner_field": None,
                                                   "cs_owner_default": "cs@seller.example"}
        assert session().scalars(select(StageMapping)).all() == []  # the gates stay the default
    page = client.get(url).get_data(as_text=True)
    assert '<option value="quick" selected>' in page and 'value="cs@seller.example"' in page
