# ruff: noqa: F811 - pytest fixtures imported from test_content
"""Around the content blocks (issue 16, issue 12): deck thumbnails, per-tenant and per-plan
storage limits, the content framed by the tenant's branding and the plan owner's own contact
card, and the print view's links."""
from __future__ import annotations

import io
import re

import pytest
from conftest import make_link, path_of, snapshot
from test_content import add, s3, s3_server, upload  # noqa: F401 - fixtures

from webapp import content
from webapp.db import session
from webapp.models import ContactCard, ContentBlock, Plan

DECK = content.tiny_pdf("Security overview")
BROKEN_PDF = b"%PDF-1.4\nnot really a pdf at all\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def app_config(tmp_path):
    return {"STORAGE_URL": f"file://{tmp_path / 'files'}"}


# ---- deck thumbnails -----------------------------------------------------------------------


def test_a_deck_gets_a_first_page_thumbnail_served_from_our_origin(app, api, client, plan, tmp_path):
    deck = add(api, plan["id"], kind="deck", title="Security deck")
    assert upload(api, plan["id"], deck["id"], DECK).status_code == 200
    thumbs = list((tmp_path / "files").rglob("*.thumb.png"))
    assert len(thumbs) == 1
    png = thumbs[0].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == content.THUMB_WIDTH and 0 < height <= content.THUMB_MAX_HEIGHT
    path = path_of(make_link(api, plan["id"])["url"])
    html = client.get(path).get_data(as_text=True)
    src = re.search(r'<img class="thumb" src="([^"]+)"[^>]*loading="lazy"', html).group(1)
    assert src.startswith(f"{path}/blocks/{deck['id']}/thumb?v=")  # same origin, lazy
    got = client.get(src.replace("&amp;", "&"))
    assert got.status_code == 200 and got.mimetype == "image/png" and got.data == png
    assert "private" in got.headers["Cache-Control"]
    # a wrong link, or another plan's block, finds nothing
    assert client.get(src.replace(path, path[:-4] + "abcd")).status_code == 404


def test_a_pdf_that_cannot_be_rendered_is_stored_with_a_placeholder(app, api, client, plan, tmp_path):
    deck = add(api, plan["id"], kind="deck", title="Odd deck")
    r = upload(api, plan["id"], deck["id"], BROKEN_PDF)
    assert r.status_code == 200 and r.json["file"]["size"] == len(BROKEN_PDF)
    assert not list((tmp_path / "files").rglob("*.thumb.png"))
    html = client.get(path_of(make_link(api, plan["id"])["url"])).get_data(as_text=True)
    assert "Odd deck" in html and '<span class="ficon" aria-hidden="true">PDF</span>' in html
    assert client.get(f"{path_of(make_link(api, plan['id'])['url'])}/blocks/{deck['id']}/thumb").status_code == 404


def test_a_failing_thumbnail_store_does_not_fail_the_upload(app, api, plan, monkeypatch):
    from webapp.storage import LocalStorage

    real_put = LocalStorage.put

    def put(self, key, stream, content_type):
        if key.endswith(".thumb.png"):
            raise OSError("disk full for thumbnails")
        return real_put(self, key, stream, content_type)

    monkeypatch.setattr(LocalStorage, "put", put)
    deck = add(api, plan["id"], kind="deck", title="Deck")
    assert upload(api, plan["id"], deck["id"], DECK).status_code == 200
    with app.app_context():
        row = session().get(ContentBlock, deck["id"])
        assert row.file_key and row.thumb_key is None


def test_replacing_and_deleting_a_deck_removes_its_thumbnails(api, plan, tmp_path):
    deck = add(api, plan["id"], kind="deck", title="Deck")
    upload(api, plan["id"], deck["id"], DECK)
    upload(api, plan["id"], deck["id"], content.tiny_pdf("Version two"))
    assert len(list((tmp_path / "files").rglob("*.thumb.png"))) == 1
    assert api.delete(f"/plans/{plan['id']}/blocks/{deck['id']}").status_code == 204
    assert not [p for p in (tmp_path / "files").rglob("*") if p.is_file()]


def test_a_file_block_gets_no_thumbnail(api, plan, tmp_path):
    f = add(api, plan["id"], kind="file", title="Terms")
    assert upload(api, plan["id"], f["id"], DECK).status_code == 200
    assert not list((tmp_path / "files").rglob("*.thumb.png"))


def test_s3_thumbnail_is_stored_and_read_back_through_the_store(app, api, client, plan, s3):
    client_s3, bucket, url = s3
    app.config["STORAGE_URL"] = url
    app.extensions.pop("mutualplan.storage", None)
    deck = add(api, plan["id"], kind="deck", title="Deck")
    assert upload(api, plan["id"], deck["id"], DECK).status_code == 200
    keys = sorted(o["Key"] for o in client_s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert len(keys) == 2 and keys[1].endswith(".thumb.png")
    path = path_of(make_link(api, plan["id"])["url"])
    got = client.get(f"{path}/blocks/{deck['id']}/thumb")
    assert got.status_code == 200 and got.data.startswith(b"\x89PNG")
    assert api.delete(f"/plans/{plan['id']}").status_code == 204
    assert client_s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


# ---- storage limits: per plan and per tenant -------------------------------------------------


def test_files_per_plan_limit_refuses_and_changes_nothing(app, api, plan, monkeypatch):
    monkeypatch.setitem(content.LIMITS, "files_per_plan", 2)
    for i in range(2):
        f = add(api, plan["id"], kind="file", title=f"F{i}")
        assert upload(api, plan["id"], f["id"], DECK).status_code == 200
    extra = add(api, plan["id"], kind="file", title="One too many")
    before = snapshot(app)
    r = upload(api, plan["id"], extra["id"], DECK)
    assert r.status_code == 422 and r.json["limit"] == "files_per_plan"
    assert snapshot(app) == before
    # replacing a file of a full plan is not one more file
    first = api.get(f"/plans/{plan['id']}/blocks").json["items"][0]
    assert upload(api, plan["id"], first["id"], content.tiny_pdf("v2")).status_code == 200


def test_tenant_bytes_limit_counts_every_plan_of_the_tenant(app, api, other_api, plan, monkeypatch):
    monkeypatch.setitem(content.LIMITS, "tenant_bytes", len(DECK) * 2 + 10)
    second = api.post("/plans", json={"title": "Second", "template": "quick"}).json
    for p in (plan, second):
        f = add(api, p["id"], kind="file", title="F")
        assert upload(api, p["id"], f["id"], DECK).status_code == 200
    third = add(api, second["id"], kind="file", title="Full")
    before = snapshot(app)
    r = upload(api, second["id"], third["id"], DECK)
    assert r.status_code == 422 and "storage is full" in r.json["detail"]
    assert snapshot(app) == before
    # another tenant has its own allowance
    theirs = other_api.post("/plans", json={"title": "Theirs", "template": "quick"}).json
    f = add(other_api, theirs["id"], kind="file", title="F")
    assert upload(other_api, theirs["id"], f["id"], DECK).status_code == 200


def test_tenant_file_count_limit(app, api, plan, monkeypatch):
    monkeypatch.setitem(content.LIMITS, "tenant_files", 1)
    second = api.post("/plans", json={"title": "Second", "template": "quick"}).json
    f = add(api, plan["id"], kind="file", title="F")
    assert upload(api, plan["id"], f["id"], DECK).status_code == 200
    g = add(api, second["id"], kind="file", title="G")
    r = upload(api, second["id"], g["id"], DECK)
    assert r.status_code == 422 and "at most 1 files" in r.json["detail"]


def test_buyer_upload_respects_the_plan_limit(app, api, client, plan, monkeypatch):
    from test_buyer import identify

    monkeypatch.setitem(content.LIMITS, "files_per_plan", 0)
    path = path_of(make_link(api, plan["id"])["url"])
    token = identify(client, path)
    ms = next(m for s in plan["stages"] for m in s["milestones"] if m["owner_side"] == "buyer")
    before = snapshot(app)
    r = client.post(f"{path}/m/{ms['id']}/upload", data={
        "csrf": token, "file": (io.BytesIO(DECK), "q.pdf")}, content_type="multipart/form-data")
    assert r.status_code == 422
    assert snapshot(app) == before


# ---- the frame: branding, the owner's contact card, print links --------------------------------


def _brand(client, admin, **extra):
    form = {"csrf": admin.csrf, "company_name": "Seller Inc", "accent": "#0f766e",
            "contact_name": "Team Seller", "contact_title": "Sales team",
            "contact_email": "team@seller.example", **extra}
    assert client.post("/settings/branding", data=form).status_code == 303


def _own(app, plan_id, user_id):
    from webapp import users

    with app.app_context():
        s = session()
        users.claim_plan(s, s.get(Plan, plan_id), s.get(users.User, user_id), "t")
        s.commit()


def test_content_is_framed_by_the_accent_and_the_tenant_card(app, api, client, sign_in, plan):
    admin = sign_in(role="admin")
    _brand(client, admin)
    add(api, plan["id"], kind="link", title="Customer story", url="https://example.com/story")
    html = client.get(path_of(make_link(api, plan["id"])["url"])).get_data(as_text=True)
    section = html[html.index('class="card content-blocks"'):]
    section = section[:section.index("</section>")]
    assert "Shared with you by Seller Inc" in section
    assert 'class="frame with-contact"' in section and "Team Seller" in section
    assert html.count("Team Seller") == 1  # the card frames the content instead of the top
    assert re.search(r'href="/brand/[^"]+\.css"', html)  # the accent's stylesheet
    css = client.get("/static/mutualplan.css").get_data(as_text=True)
    assert ".content-blocks { border-top: 4px solid var(--brand); }" in css


def test_without_content_the_card_stays_at_the_top(app, api, client, sign_in, plan):
    _brand(client, sign_in(role="admin"))
    html = client.get(path_of(make_link(api, plan["id"])["url"])).get_data(as_text=True)
    assert 'section class="card contact-card"' in html and "Team Seller" in html
    assert "content-blocks" not in html


def test_print_view_lists_every_block_as_a_link(app, api, client, plan):
    deck = add(api, plan["id"], kind="deck", title="Deck")
    upload(api, plan["id"], deck["id"], DECK)
    add(api, plan["id"], kind="video", title="Demo", url="https://vimeo.com/76979871")
    path = path_of(make_link(api, plan["id"])["url"])
    html = client.get(path).get_data(as_text=True)
    urls = re.findall(r'<span class="print-url">([^<]+)</span>', html)
    base = app.config.get("PUBLIC_BASE_URL", "http://localhost").rstrip("/")
    assert "https://vimeo.com/76979871" in urls
    assert any(u.startswith("http") and u.endswith(f"{path}/blocks/{deck['id']}/open") for u in urls), (urls, base)
    css = client.get("/static/mutualplan.css").get_data(as_text=True)
    assert ".print-url { display: inline;" in css


# ---- each rep's own contact card (issue 12) ------------------------------------------------------


def test_a_rep_edits_their_card_and_the_buyer_sees_the_owners_card(app, api, client, sign_in, plan):
    admin = sign_in(role="admin")
    _brand(client, admin)
    rep_client = app.test_client()
    from conftest import signed_in

    rep = signed_in(rep_client, role="rep", name="Dana Rep", email="dana@seller.example")
    page = rep_client.get("/app/profile").get_data(as_text=True)
    assert 'value="Dana Rep"' in page and 'value="dana@seller.example"' in page  # from the CRM
    before = snapshot(app)
    bad = rep_client.post("/app/profile", data={"csrf": rep.csrf, "name": "Dana Lee",
                                                 "title": "AE", "email": "not-an-email"})
    assert bad.status_code == 422 and 'value="Dana Lee"' in bad.get_data(as_text=True)
    assert snapshot(app) == before
    assert rep_client.post("/app/profile", data={"csrf": "nope", "name": "X"}).status_code == 403
    _own(app, plan["id"], rep.user_id)
    link = path_of(make_link(api, plan["id"])["url"])
    assert "Team Seller" in client.get(link).get_data(as_text=True)  # no card of their own yet
    ok = rep_client.post("/app/profile", data={
        "csrf": rep.csrf, "name": "Dana Lee", "title": "Account executive",
        "email": "dana.lee@seller.example", "photo": (io.BytesIO(PNG), "me.png")},
        content_type="multipart/form-data")
    assert ok.status_code == 303
    html = client.get(link).get_data(as_text=True)  # the cached page is not served stale
    assert "Dana Lee" in html and "Account executive" in html and "dana.lee@seller.example" in html
    assert "Team Seller" not in html
    photo = re.search(r'<img class="contact-photo" src="([^"]+)"', html).group(1)
    got = client.get(photo)
    assert got.status_code == 200 and got.data == PNG and got.mimetype == "image/png"
    assert client.get(photo.replace(rep.tenant_id, admin.tenant_id[:-1] + "x")).status_code == 404
    # an empty name means "use the team's card" again
    rep_client.post("/app/profile", data={"csrf": rep.csrf, "name": "", "title": "", "email": ""})
    assert "Team Seller" in client.get(link).get_data(as_text=True)


def test_a_card_refuses_a_bad_photo_and_anonymous_visits_go_to_login(app, client, sign_in):
    rep = sign_in(role="rep")
    r = client.post("/app/profile", data={
        "csrf": rep.csrf, "name": "Dana", "photo": (io.BytesIO(b"GIF89a"), "me.gif")},
        content_type="multipart/form-data")
    assert r.status_code == 422 and "PNG, JPEG or SVG" in r.get_data(as_text=True)
    with app.app_context():
        assert session().get(ContactCard, rep.user_id) is None
    anonymous = app.test_client().get("/app/profile", headers={"Accept": "text/html"})
    assert anonymous.status_code in (302, 303) and "/login" in anonymous.headers["Location"]


# ---- block engagement in the editor and in analytics ------------------------------------------


def test_block_engagement_reaches_the_editor_and_the_analytics(app, api, other_api, client, plan):
    from test_buyer import identify
    from test_editor import open_editor

    from webapp import analytics

    pid = plan["id"]
    deck = add(api, pid, kind="deck", title="the security deck")
    upload(api, pid, deck["id"], DECK)
    story = add(api, pid, kind="link", title="the customer story", url="https://example.com/s")
    path = path_of(make_link(api, pid)["url"])
    identify(client, path, name="Dana")
    for _ in range(2):
        assert client.get(f"{path}/blocks/{deck['id']}/open").status_code == 303
    assert client.get(f"{path}/blocks/{story['id']}/open").status_code == 303
    # the rep's editor, not only its content page
    rep = app.test_client()
    html = rep.get(open_editor(api, rep, pid)).get_data(as_text=True)
    assert "Dana opened the security deck twice" in html
    assert "Dana opened the customer story once" in html
    # the analytics API, per plan, for this tenant only
    got = api.get("/analytics/content")
    assert got.status_code == 200
    [row] = got.json["plans"]
    assert row["plan_id"] == pid and (row["opened"], row["played"], row["downloaded"]) == (3, 0, 0)
    assert other_api.get("/analytics/content").json == {"plans": []}
    assert api.client.get("/api/v1/analytics/content").status_code == 401
    # and the plan's engagement figures carry the same counts
    with app.app_context():
        s = session()
        tenant_id = s.get(Plan, pid).tenant_id
        figures = analytics.engagement(s, tenant_id, pid)
    assert figures["content"]["opened"] == 3 and figures["content"]["downloaded"] == 0
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert "get" in paths["/analytics/content"]


def test_the_company_names_the_content_even_without_a_contact_card(app, api, client, sign_in, plan):
    _brand(client, sign_in(role="admin"), contact_name="", contact_title="", contact_email="")
    add(api, plan["id"], kind="link", title="Customer story", url="https://example.com/story")
    html = client.get(path_of(make_link(api, plan["id"])["url"])).get_data(as_text=True)
    assert "Shared with you by Seller Inc" in html
    assert 'class="frame"' in html and "contact-card" not in html
