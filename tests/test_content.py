"""Content blocks (webapp/content.py): the API, video URLs, notes, file types by content,
storage (local folder and S3 through a local moto server over HTTP), the buyer page, buyer
uploads, the rep's content page and engagement."""
from __future__ import annotations

import io
import re
import socket
import zipfile

import pytest
from conftest import CSRF, make_link, milestone, path_of, snapshot

from webapp import content
from webapp.errors import Invalid

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def ooxml(main: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", f'<Types><Override ContentType="{main}"/></Types>')
        z.writestr("word/document.xml", "<w/>")
    return buf.getvalue()


DOCX = ooxml("application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml")


# ---- pure rules ------------------------------------------------------------------------


@pytest.mark.parametrize("pasted, embed", [
    ("https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=4", "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"),
    ("https://youtu.be/dQw4w9WgXcQ", "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"),
    ("https://www.youtube.com/shorts/dQw4w9WgXcQ", "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"),
    ("https://vimeo.com/76979871", "https://player.vimeo.com/video/76979871?dnt=1"),
    ("https://vimeo.com/76979871/abcdef1234", "https://player.vimeo.com/video/76979871?dnt=1&h=abcdef1234"),
    ("https://www.loom.com/share/0123456789abcdef0123456789abcdef",
     "https://www.loom.com/embed/0123456789abcdef0123456789abcdef"),
    ("https://acme.wistia.com/medias/abcde12345", "https://fast.wistia.net/embed/iframe/abcde12345?doNotTrack=true"),
])
def test_video_share_urls_become_privacy_enhanced_players(pasted, embed):
    assert content.video_embed(pasted) == embed
    assert embed.startswith(content.VIDEO_HOSTS)


@pytest.mark.parametrize("bad", ["https://example.com/watch?v=dQw4w9WgXcQ", "javascript:alert(1)",
                                 "https://www.youtube.com/watch?v=<script>", "https://vimeo.com/about"])
def test_other_urls_are_not_videos(bad):
    with pytest.raises(Invalid):
        content.video_embed(bad)


def test_notes_are_markdown_without_raw_html():
    html = content.render_notes("# Call\n\n**Agreed**: pilot\n\n<script>alert(1)</script>\n\n"
                                "<img src=x onerror=alert(1)>\n\n[x](javascript:alert(1)) [ok](https://a.example)")
    assert "<strong>Agreed</strong>" in html and "<h1>Call</h1>" in html
    assert "<script" not in html and "<img" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;" in html  # shown as text, never run
    assert 'href="https://a.example"' in html


def test_type_is_read_from_the_bytes_not_the_name():
    assert content.sniff(io.BytesIO(PDF)) == ("application/pdf", "pdf")
    assert content.sniff(io.BytesIO(PNG))[0] == "image/png"
    assert content.sniff(io.BytesIO(DOCX))[1] == "docx"
    for other in (b"MZ\x90\x00 an exe", b"<html>", ooxml("application/x-other")):
        with pytest.raises(Invalid):
            content.sniff(io.BytesIO(other))


def test_spool_stops_past_the_limit():
    with pytest.raises(Invalid):
        content.spool(iter([b"x" * 600, b"x" * 600]), 1000)
    with content.spool(iter([b"ab", b"cd"]), 1000) as f:
        assert f.read() == b"abcd"


# ---- the API ---------------------------------------------------------------------------


@pytest.fixture
def app_config(tmp_path):
    return {"STORAGE_URL": f"file://{tmp_path / 'files'}"}


def add(api, plan_id, **body):
    response = api.post(f"/plans/{plan_id}/blocks", json=body)
    assert response.status_code == 201, response.json
    return response.json


def upload(api, plan_id, block_id, data: bytes, name="deck.pdf"):
    return api.put(f"/plans/{plan_id}/blocks/{block_id}/file?name={name}", data=data,
                   headers={"Content-Type": "application/octet-stream"})


def test_blocks_crud_reorder_and_tenancy(api, other_api, plan):
    pid = plan["id"]
    video = add(api, pid, kind="video", title="Demo", url="https://youtu.be/dQw4w9WgXcQ")
    assert video["embed_url"] == "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"
    notes = add(api, pid, kind="notes", title="Kick-off notes", body="- one\n- two", internal=True)
    link = add(api, pid, kind="link", title="Pricing", url="https://example.com/pricing", position=0)
    items = api.get(f"/plans/{pid}/blocks").json["items"]
    assert [b["id"] for b in items] == [link["id"], video["id"], notes["id"]]

    r = api.put(f"/plans/{pid}/blocks/order", json={"ids": [notes["id"], video["id"], link["id"]]})
    assert r.status_code == 200 and [b["title"] for b in r.json["items"]] == ["Kick-off notes", "Demo", "Pricing"]
    assert api.put(f"/plans/{pid}/blocks/order", json={"ids": [notes["id"]]}).status_code == 422

    r = api.patch(f"/plans/{pid}/blocks/{notes['id']}", json={"internal": False, "title": "Notes"})
    assert r.status_code == 200 and r.json["internal"] is False and r.json["title"] == "Notes"
    assert api.post(f"/plans/{pid}/blocks", json={"kind": "video", "title": "x",
                                                  "url": "https://example.com/v"}).status_code == 422
    assert api.post(f"/plans/{pid}/blocks", json={"kind": "link", "title": "x",
                                                  "url": "javascript:alert(1)"}).status_code == 422
    # another tenant sees nothing
    assert other_api.get(f"/plans/{pid}/blocks").status_code == 404
    assert other_api.delete(f"/plans/{pid}/blocks/{link['id']}").status_code == 404
    assert api.delete(f"/plans/{pid}/blocks/{link['id']}").status_code == 204
    assert len(api.get(f"/plans/{pid}/blocks").json["items"]) == 2


def test_block_limit_per_plan(app, api, plan, monkeypatch):
    monkeypatch.setitem(content.LIMITS, "blocks_per_plan", 2)
    for i in range(2):
        add(api, plan["id"], kind="link", title=f"L{i}", url="https://example.com")
    before = snapshot(app)
    r = api.post(f"/plans/{plan['id']}/blocks", json={"kind": "link", "title": "L", "url": "https://e.com"})
    assert r.status_code == 422 and r.json["limit"] == "blocks_per_plan"
    assert snapshot(app) == before


def test_upload_checks_content_and_a_renamed_file_is_refused(app, api, plan):
    pid = plan["id"]
    deck = add(api, pid, kind="deck", title="Security deck")
    before = snapshot(app)
    r = upload(api, pid, deck["id"], b"MZ this is an exe renamed", name="security.pdf")
    assert r.status_code == 422 and "content" in r.json["detail"]
    r = upload(api, pid, deck["id"], DOCX, name="security.pdf")  # a real docx, but a deck is a PDF
    assert r.status_code == 422
    assert snapshot(app) == before
    r = upload(api, pid, deck["id"], PDF, name="Security overview.pdf")
    assert r.status_code == 200, r.json
    assert r.json["file"] == {"name": "Security overview.pdf", "type": "application/pdf", "size": len(PDF)}
    # the rep downloads it through a short-lived signed URL, never a public one
    r = api.get(f"/plans/{pid}/blocks/{deck['id']}/file")
    assert r.status_code == 303 and r.headers["Location"].startswith("/files/")
    got = api.client.get(r.headers["Location"])
    assert got.status_code == 200 and got.data == PDF and got.mimetype == "application/pdf"
    assert api.client.get(r.headers["Location"][:-3] + "abc").status_code == 410


def test_file_size_limit(api, plan, monkeypatch):
    monkeypatch.setitem(content.LIMITS, "file_bytes", 1000)
    f = add(api, plan["id"], kind="file", title="Big")
    r = upload(api, plan["id"], f["id"], PDF + b"x" * 2000)
    assert r.status_code in (413, 422)


def test_deleting_a_plan_deletes_its_files(app, api, plan, tmp_path):
    deck = add(api, plan["id"], kind="deck", title="Deck")
    assert upload(api, plan["id"], deck["id"], PDF).status_code == 200
    files = list((tmp_path / "files").rglob("*.pdf"))
    assert len(files) == 1
    assert api.delete(f"/plans/{plan['id']}").status_code == 204
    assert not list((tmp_path / "files").rglob("*.pdf"))


def test_replacing_a_file_deletes_the_old_one(api, plan, tmp_path):
    deck = add(api, plan["id"], kind="deck", title="Deck")
    upload(api, plan["id"], deck["id"], PDF)
    upload(api, plan["id"], deck["id"], PDF + b"% v2\n")
    files = list((tmp_path / "files").rglob("*.pdf"))
    assert len(files) == 1 and files[0].read_bytes().endswith(b"% v2\n")


# ---- the buyer page --------------------------------------------------------------------


def buyer_page(api, plan):
    return path_of(make_link(api, plan["id"])["url"])


def test_buyer_page_shows_shared_blocks_and_never_internal_ones(api, client, plan):
    pid = plan["id"]
    add(api, pid, kind="video", title="Product demo", url="https://vimeo.com/76979871")
    add(api, pid, kind="notes", title="Discovery notes", body="We agreed on **SSO**.")
    add(api, pid, kind="notes", title="Secret pricing floor", body="floor is 42k", internal=True)
    add(api, pid, kind="link", title="Internal battlecard", url="https://example.com/battle", internal=True)
    path = buyer_page(api, plan)
    response = client.get(path)
    html = response.get_data(as_text=True)
    assert "Product demo" in html and "<strong>SSO</strong>" in html
    assert "Secret pricing floor" not in html and "floor is 42k" not in html
    assert "battlecard" not in html and "example.com/battle" not in html
    # the player is not in the HTML: a placeholder link and the embed URL as data only
    assert "<iframe" not in html
    assert 'data-video="https://player.vimeo.com/video/76979871?dnt=1"' in html
    csp = response.headers["Content-Security-Policy"]
    frame_src = re.search(r"frame-src ([^;]+)", csp).group(1).split()
    assert frame_src == list(content.VIDEO_HOSTS)


def test_buyer_uploads_to_their_milestone_and_the_rep_downloads_it(app, api, client, plan):
    from test_buyer import identify

    path = buyer_page(api, plan)
    token = identify(client, path)
    ms = next(m for s in plan["stages"] for m in s["milestones"] if m["owner_side"] == "buyer")
    seller = next(m for s in plan["stages"] for m in s["milestones"] if m["owner_side"] == "seller")
    renamed = client.post(f"{path}/m/{ms['id']}/upload", data={
        "csrf": token, "file": (io.BytesIO(b"GIF89a not a pdf"), "questionnaire.pdf")},
        content_type="multipart/form-data")
    assert renamed.status_code == 422 and "content is not" in renamed.get_data(as_text=True)
    refused = client.post(f"{path}/m/{seller['id']}/upload", data={
        "csrf": token, "file": (io.BytesIO(PDF), "q.pdf")}, content_type="multipart/form-data")
    assert refused.status_code == 422
    r = client.post(f"{path}/m/{ms['id']}/upload", data={
        "csrf": token, "file": (io.BytesIO(PDF), "Signed questionnaire.pdf")},
        content_type="multipart/form-data")
    assert r.status_code == 303, r.get_data(as_text=True)
    blocks = api.get(f"/plans/{plan['id']}/blocks").json["items"]
    assert len(blocks) == 1 and blocks[0]["side"] == "buyer" and blocks[0]["milestone_id"] == ms["id"]
    r = api.get(f"/plans/{plan['id']}/blocks/{blocks[0]['id']}/file")
    assert client.get(r.headers["Location"]).data == PDF


def test_upload_without_identity_or_csrf_is_refused(app, api, client, plan):
    path = buyer_page(api, plan)
    token = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    ms = next(m for s in plan["stages"] for m in s["milestones"] if m["owner_side"] == "buyer")
    before = snapshot(app)
    r = client.post(f"{path}/m/{ms['id']}/upload", data={
        "csrf": token, "file": (io.BytesIO(PDF), "q.pdf")}, content_type="multipart/form-data")
    assert r.status_code == 400
    r = client.post(f"{path}/m/{ms['id']}/upload", data={
        "csrf": "nope", "file": (io.BytesIO(PDF), "q.pdf")}, content_type="multipart/form-data")
    assert r.status_code == 403
    assert snapshot(app) == before


def test_engagement_reaches_the_reps_content_page(app, api, client, plan):
    from test_buyer import identify
    from test_editor import open_editor

    pid = plan["id"]
    deck = add(api, pid, kind="deck", title="the security deck")
    upload(api, pid, deck["id"], PDF)
    internal = add(api, pid, kind="link", title="Battlecard", url="https://e.com", internal=True)
    path = buyer_page(api, plan)
    identify(client, path, name="Dana")
    for _ in range(2):
        r = client.get(f"{path}/blocks/{deck['id']}/open")
        assert r.status_code == 303 and r.headers["Location"].startswith("/files/")
    assert client.get(f"{path}/blocks/{internal['id']}/open").status_code == 404
    rep = app.test_client()
    page = open_editor(api, rep, pid)
    html = rep.get(page + "/content").get_data(as_text=True)
    assert "Dana opened the security deck twice" in html
    assert "Battlecard" in html  # the rep sees internal blocks


def test_rep_manages_blocks_on_the_content_page(app, api, plan):
    from test_editor import open_editor

    rep = app.test_client()
    page = open_editor(api, rep, plan["id"]) + "/content"
    html = rep.get(page).get_data(as_text=True)
    token = CSRF.search(html).group(1)
    r = rep.post(page + "/do", data={"csrf": token, "op": "add", "kind": "deck", "title": "Deck",
                                     "file": (io.BytesIO(b"not a pdf"), "d.pdf")},
                 content_type="multipart/form-data")
    assert r.status_code == 422
    r = rep.post(page + "/do", data={"csrf": token, "op": "add", "kind": "deck", "title": "Deck",
                                     "file": (io.BytesIO(PDF), "d.pdf")},
                 content_type="multipart/form-data")
    assert r.status_code == 303
    r = rep.post(page + "/do", data={"csrf": token, "op": "add", "kind": "link", "title": "Site",
                                     "url": "https://example.com"})
    assert r.status_code == 303
    items = api.get(f"/plans/{plan['id']}/blocks").json["items"]
    assert [b["title"] for b in items] == ["Deck", "Site"]
    rep.post(page + "/do", data={"csrf": token, "op": "move", "block_id": items[1]["id"], "dir": "up"})
    rep.post(page + "/do", data={"csrf": token, "op": "internal", "block_id": items[0]["id"],
                                 "internal": "1"})
    items = api.get(f"/plans/{plan['id']}/blocks").json["items"]
    assert [b["title"] for b in items] == ["Site", "Deck"] and items[1]["internal"] is True
    assert rep.get(f"{page}/{items[1]['id']}/file").status_code == 303
    # the small link from the editor page
    assert "/content" in rep.get(page.removesuffix("/content")).get_data(as_text=True)
    assert app.test_client().get(page).status_code == 401


# ---- S3 through a local S3 server over HTTP (moto's server mode) -------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    moto_server = pytest.importorskip("moto.server")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    import boto3

    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(k, v)
    bucket = f"mp-{socket.gethostname().lower()[:8]}-{id(monkeypatch)}"
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    return client, bucket, f"s3://{bucket}?endpoint_url={s3_server}&region=us-east-1"


def test_s3_store_upload_download_and_plan_deletion(app, api, plan, s3):
    import requests

    client, bucket, url = s3
    app.config["STORAGE_URL"] = url
    app.extensions.pop("mutualplan.storage", None)
    deck = add(api, plan["id"], kind="deck", title="Deck")
    assert upload(api, plan["id"], deck["id"], PDF, name="deck.pdf").status_code == 200
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == 1 and f"/{plan['id']}/{deck['id']}/" in keys[0]
    signed = api.get(f"/plans/{plan['id']}/blocks/{deck['id']}/file").headers["Location"]
    assert "X-Amz-Signature" in signed and "X-Amz-Expires=60" in signed
    got = requests.get(signed, timeout=10)
    assert got.status_code == 200 and got.content == PDF
    # the object is not public
    assert requests.get(signed.split("?")[0], timeout=10).status_code == 403
    assert api.delete(f"/plans/{plan['id']}").status_code == 204
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_openapi_documents_the_block_endpoints(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert {"get", "post"} <= set(paths["/plans/{plan_id}/blocks"])
    assert "application/octet-stream" in paths["/plans/{plan_id}/blocks/{block_id}/file"]["put"][
        "requestBody"]["content"]


def test_milestone_id_must_be_of_the_plan(api, plan):
    ms = milestone(plan, plan["stages"][0]["milestones"][0]["title"])
    assert add(api, plan["id"], kind="link", title="x", url="https://e.com",
               milestone_id=ms["id"])["milestone_id"] == ms["id"]
    r = api.post(f"/plans/{plan['id']}/blocks", json={"kind": "link", "title": "x",
                                                     "url": "https://e.com", "milestone_id": "0" * 36})
    assert r.status_code == 422


def test_blocks_of_an_internal_milestone_stay_internal(api, client, plan):
    secret = api.post(f"/plans/{plan['id']}/milestones", json={
        "stage_id": plan["stages"][0]["id"], "title": "Discount approval", "internal": True}).json
    add(api, plan["id"], kind="link", title="Approval memo", url="https://e.com/memo",
        milestone_id=secret["id"])
    html = client.get(buyer_page(api, plan)).get_data(as_text=True)
    assert "Approval memo" not in html and "e.com/memo" not in html
