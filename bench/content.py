"""Content figures (issue 16): the weight of a content-rich buyer page before any click, and a
20 MB upload end to end through the S3 path with the web process's peak memory.

    .venv/bin/python bench/content.py

1. The demo plan with 3 videos, 2 PDF decks, notes, a link and an internal block, served on
   a free port, loaded in headless Chromium (/usr/bin/chromium): every request before any
   click is counted; printed are the requests, the HTML + CSS (+ JS) bytes and how many went
   to another host (goal: none, and under 60 KB), and the decks' thumbnails (lazy images
   from our origin) that loaded.
2. A web process of its own (the app under Werkzeug, STORAGE_URL pointing at a moto S3 server
   in another process, over HTTP) receives a 20 MB PDF as the raw body of
   PUT /api/v1/plans/{id}/blocks/{id}/file. Printed: the time, and the growth of the web
   process's peak resident memory (VmHWM in /proc) over a 1 MB warm-up upload (goal: flat,
   under +30 MiB: the body is streamed to a spooled file, then to S3 in multipart parts); then
   the same 20 MB as a deck, whose first page PDFium renders for the thumbnail.
Uses SQLite files of its own (the upload part must share its database across processes).
"""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from webapp import content, create_app, migrate, sharing
from webapp.blueprints.content import store_of
from webapp.cli import seed_demo
from webapp.db import make_engine, session

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_on(db_url: str, **config):
    migrate.upgrade(make_engine(db_url))
    return create_app({"DATABASE_URL": db_url, "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING",
                       "JOBS_MODE": "manual", "TODAY": lambda: date(2026, 11, 26), **config})


def seed(app) -> tuple[str, str, str]:
    with app.app_context():
        s = session()
        key, plan = seed_demo(s)
        content.seed_demo(s, plan, store_of(app))
        _, link = sharing.create_link(s, plan, "bench", sharing.Keys.from_config(app.config))
        s.commit()
        return key, plan.id, link


def page_weight() -> None:
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    tmp = tempfile.mkdtemp()
    app = app_on(f"sqlite:///{tmp}/page.db", STORAGE_URL=f"file://{tmp}/files")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app.config["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _, _, link = seed(app)
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()

        def done(response):
            body = response.body() if response.status < 300 else b""
            requests.append((urlsplit(response.url).hostname, response.request.resource_type,
                             len(body)))
        page.on("response", done)
        page.on("requestfailed", lambda r: requests.append((urlsplit(r.url).hostname, "failed", 0)))
        page.goto(link)
        page.wait_for_load_state("networkidle")
        browser.close()
    server.shutdown()
    third = [r for r in requests if r[0] != "127.0.0.1"]
    by_type: dict[str, int] = {}
    for _host, kind, size in requests:
        by_type[kind] = by_type.get(kind, 0) + size
    html_css = by_type.get("document", 0) + by_type.get("stylesheet", 0)
    print("buyer page with 3 videos, 2 decks, notes (before any click)")
    print(f"  requests: {len(requests)}  third-party: {len(third)}")
    print(f"  HTML + CSS: {html_css / 1024:.1f} KB  (HTML {by_type.get('document', 0) / 1024:.1f} KB,"
          f" CSS {by_type.get('stylesheet', 0) / 1024:.1f} KB; JS {by_type.get('script', 0) / 1024:.1f} KB)"
          f"  goal: no third party, < 60 KB")
    images = [r for r in requests if r[1] == "image"]
    print(f"  images (lazy deck thumbnails, our origin): {len(images)} loaded before any click,"
          f" {sum(r[2] for r in images) / 1024:.1f} KB")


WEB = """
import sys
from werkzeug.serving import make_server
sys.path.insert(0, {root!r})
from webapp import create_app
app = create_app({{"DATABASE_URL": {db!r}, "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING",
                   "JOBS_MODE": "manual", "STORAGE_URL": {storage!r}}})
make_server("127.0.0.1", {port}, app, threaded=True).serve_forever()
"""


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def wait_port(port: int) -> None:
    for _ in range(300):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def put(port: int, key: str, path: str, size: int, name: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.putrequest("PUT", f"{path}?name={name}")
    conn.putheader("Authorization", f"Bearer {key}")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    head = content.tiny_pdf("bench")
    conn.send(head)
    left, chunk = size - len(head), b"%" + b"0" * (MB - 2) + b"\n"
    while left > 0:
        conn.send(chunk[:left])
        left -= min(left, len(chunk))
    status = conn.getresponse().status
    conn.close()
    return status


def upload_through_s3() -> None:
    import boto3

    tmp = tempfile.mkdtemp()
    db = f"sqlite:///{tmp}/upload.db"
    s3_port, web_port = free_port(), free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(s3_port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    web = None
    try:
        wait_port(s3_port)
        endpoint = f"http://127.0.0.1:{s3_port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench").create_bucket(
            Bucket="bench")
        storage_url = f"s3://bench?endpoint_url={endpoint}&region=us-east-1"
        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
        app = app_on(db, STORAGE_URL=storage_url)
        key, plan_id, _ = seed(app)
        with app.app_context():
            from types import SimpleNamespace

            from webapp import plans

            s = session()
            plan = plans.get_plan(s, app_tenant(s, plan_id), plan_id)
            blocks = [content.add_block(s, plan, SimpleNamespace(
                kind=kind, title=t, url=None, body="", internal=False, milestone_id=None,
                position=None), "bench") for kind, t in (("file", "warm-up"), ("file", "big"),
                                                         ("deck", "big deck"))]
            s.commit()
            warm, big, deck = blocks[0].id, blocks[1].id, blocks[2].id
        web = subprocess.Popen([sys.executable, "-c", WEB.format(
            root=str(ROOT), db=db, storage=storage_url, port=web_port)], env=env)
        wait_port(web_port)
        base = f"/api/v1/plans/{plan_id}/blocks"
        assert put(web_port, key, f"{base}/{warm}/file", MB, "warm.pdf") == 200
        before = peak_rss(web.pid)
        started = time.perf_counter()
        status = put(web_port, key, f"{base}/{big}/file", 20 * MB, "big.pdf")
        elapsed = time.perf_counter() - started
        growth = peak_rss(web.pid) - before
        print("upload of a 20 MB file through the S3 path (moto server over HTTP)")
        print(f"  status {status}, {elapsed:.2f} s ({20 / elapsed:.1f} MB/s)")
        print(f"  web process peak RSS: {before / MB:.0f} MiB after warm-up, "
              f"+{growth / MB:.1f} MiB during the upload  goal: < +30 MiB")
        # the same 20 MB as a deck: its first page is rendered (PDFium) for the thumbnail
        before = peak_rss(web.pid)
        started = time.perf_counter()
        status = put(web_port, key, f"{base}/{deck}/file", 20 * MB, "deck.pdf")
        elapsed = time.perf_counter() - started
        growth = peak_rss(web.pid) - before
        with app.app_context():
            from webapp.models import ContentBlock

            thumb = session().get(ContentBlock, deck).thumb_key is not None
        print(f"  as a deck (with its first-page thumbnail: {'made' if thumb else 'not made'}): "
              f"status {status}, {elapsed:.2f} s, peak RSS +{growth / MB:.1f} MiB")
    finally:
        for proc in (web, moto):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)


def app_tenant(s, plan_id: str) -> str:
    from webapp.models import Plan

    return s.get(Plan, plan_id).tenant_id


if __name__ == "__main__":
    if os.access(CHROMIUM, os.X_OK):
        page_weight()
    else:
        print(f"(no Chromium at {CHROMIUM}: page weight skipped)")
    upload_through_s3()
