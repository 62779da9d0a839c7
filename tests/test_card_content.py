# ruff: noqa: F811 - pytest fixtures imported from test_hubspot
"""The HubSpot card around content and templates: the content block count with a link to the
editor's content page, and the template preselected for the deal's own pipeline (issue 16,
issue 12), against the HubSpot sandbox over HTTP."""
from __future__ import annotations

import pytest
from conftest import path_of
from test_hubspot import ENT, PUBLIC, SECRET, deal_id, installed, sb, served  # noqa: F401 - fixtures

from webapp import content
from webapp.db import session
from webapp.models import Installation, PlanTemplate


def _fetch(sb, served, method, path, body=None):
    return sb.card_fetch(served + path, method, json_body=body, portal_id=ENT, retry_once=False)


def _template(app, installation_id, name, pipeline):
    with app.app_context():
        s = session()
        row = s.get(Installation, installation_id)
        t = PlanTemplate(tenant_id=row.tenant_id, name=name, default_for_pipeline=pipeline,
                         default_go_live_days=30, stages=[{"name": "One", "milestones": [
                             {"title": f"{name} kickoff", "owner_side": "both", "anchor": "start",
                              "days": 0, "description": ""}]}])
        s.add(t)
        s.commit()
        return t.id


def test_the_card_preselects_the_template_of_the_deals_own_pipeline(app, client, sb, served):
    installation_id, _ = installed(app, client, sb, ENT)
    sb.add_pipeline(ENT, "renewals", "Renewals", [
        ("r1", "Renewal due", "0.3", "false"), ("won", "Renewed", "1.0", "true")])
    renewal = sb.create_deal(ENT, {"dealname": "Acme renewal", "pipeline": "renewals"})["id"]
    new_business = deal_id(sb, ENT)
    default_key = _template(app, installation_id, "New business", "default")
    renewal_key = _template(app, installation_id, "Renewal", "renewals")

    def preselected(deal):
        answer = _fetch(sb, served, "GET", f"/hubspot/card/deals/{deal}/plan")
        assert answer.status == 200, answer.body
        return [t["key"] for t in answer.json()["templates"] if t["default"]]

    before = len(sb.calls(ENT))
    assert preselected(renewal) == [renewal_key]
    assert [c for c in sb.calls(ENT)[before:] if f"/objects/deals/{renewal}" in c["path"]]
    assert preselected(new_business) == [default_key]
    # a deal HubSpot does not know (or a HubSpot that does not answer): the default pipeline's
    assert preselected("999999999") == [default_key]
    # once the plan exists, the card reads no deal from HubSpot for it
    made = _fetch(sb, served, "POST", f"/hubspot/card/deals/{renewal}/plan", {"template": renewal_key})
    assert made.status == 201 and made.json()["plan"]["title"]
    calls = len(sb.calls(ENT))
    again = _fetch(sb, served, "GET", f"/hubspot/card/deals/{renewal}/plan")
    assert again.status == 200
    assert not [c for c in sb.calls(ENT)[calls:] if f"/objects/deals/{renewal}" in c["path"]]


def test_the_card_counts_content_and_links_to_the_content_page(app, client, sb, served):
    _, api = installed(app, client, sb, ENT)
    deal = deal_id(sb, ENT)
    made = _fetch(sb, served, "POST", f"/hubspot/card/deals/{deal}/plan", {"template": "quick"})
    assert made.status == 201
    plan = made.json()["plan"]
    assert plan["content"] == {"count": 0, "shared": 0, "files": 0}
    pid = plan["id"]
    for body in ({"kind": "link", "title": "Story", "url": "https://example.com/s"},
                 {"kind": "notes", "title": "Floor", "body": "18%", "internal": True}):
        assert api.post(f"/plans/{pid}/blocks", json=body).status_code == 201
    deck = api.post(f"/plans/{pid}/blocks", json={"kind": "deck", "title": "Deck"}).json
    assert api.put(f"/plans/{pid}/blocks/{deck['id']}/file?name=d.pdf",
                   data=content.tiny_pdf("Deck")).status_code == 200
    got = _fetch(sb, served, "GET", f"/hubspot/card/deals/{deal}/plan").json()["plan"]["content"]
    assert got == {"count": 3, "shared": 2, "files": 1}

    link = _fetch(sb, served, "POST", f"/hubspot/card/plans/{pid}/editor-link", {"page": "content"})
    assert link.status == 200, link.body
    rep = app.test_client()
    opened = rep.get(path_of(link.json()["url"]))
    assert opened.status_code == 303 and opened.headers["Location"].endswith(f"/editor/plans/{pid}/content")
    assert "Story" in rep.get(f"/editor/plans/{pid}/content").get_data(as_text=True)
    plain = _fetch(sb, served, "POST", f"/hubspot/card/plans/{pid}/editor-link", {})
    landing = app.test_client().get(path_of(plain.json()["url"])).headers["Location"]
    assert landing.endswith(f"/editor/plans/{pid}")
    bad = _fetch(sb, served, "POST", f"/hubspot/card/plans/{pid}/editor-link", {"page": "settings"})
    assert bad.status == 422


@pytest.fixture
def app_config(sb, tmp_path):  # test_hubspot's settings plus a storage folder
    return {"HUBSPOT_CLIENT_ID": "sandbox-client-id", "HUBSPOT_CLIENT_SECRET": SECRET,
            "HUBSPOT_APP_ID": "1000001", "HUBSPOT_API_BASE": sb.server.url,
            "HUBSPOT_AUTH_BASE": sb.server.url, "PUBLIC_BASE_URL": PUBLIC,
            "HUBSPOT_RETRY_SLEEP": lambda seconds: None, "HUBSPOT_TIMEOUT": (2.0, 5.0),
            "STORAGE_URL": f"file://{tmp_path / 'files'}"}
