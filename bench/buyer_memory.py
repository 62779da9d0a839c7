"""Memory of one process under the edit/view attack on the buyer page (issue 10, F2).

    .venv/bin/python bench/buyer_memory.py      # PostgreSQL if reachable, else SQLite

One process, one big plan: 100 milestones (the per-plan limit) with 10,000-character
descriptions (the text limit), so each rendered buyer page is about 1 MB. Then
BENCH_ROUNDS (default 500) rounds of "PATCH the plan's title through the API, GET the
buyer page": every round is a new plan version, so every view renders and caches a new
page. Prints the process's RSS at the start (after a first view) and at the end, and
what the page cache holds. The goal is an end within 50 MiB of the start: the cache is
bounded in bytes (BUYER_PAGE_CACHE_BYTES, default 32 MiB) and keeps one version of a
link's page, not one per edit.
"""
from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench._setup import make_app

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "500"))
MILESTONES = 100
TEXT = 10_000


def rss_mib() -> float:
    """Resident set size now (Linux /proc), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run() -> int:
    from webapp.blueprints.buyer import page_cache
    from webapp.db import session

    app, url = make_app(PUBLIC_BASE_URL="http://bench.local")
    key = _api_key(app)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    plan = client.post("/api/v1/plans", json={"title": "Big plan", "template": "enterprise"},
                       headers=headers).json
    stages = [st["id"] for st in plan["stages"]]
    text = ("Each step names its owner, its date and what done looks like. " * 200)[:TEXT]
    have = sum(len(st["milestones"]) for st in plan["stages"])
    for i in range(MILESTONES - have):
        r = client.post(f"/api/v1/plans/{plan['id']}/milestones", headers=headers,
                        json={"stage_id": stages[i % len(stages)], "title": f"Step {i}",
                              "description": text, "owner_side": "buyer"})
        assert r.status_code == 201, r.json
    link = client.post(f"/api/v1/plans/{plan['id']}/share-links", json={}, headers=headers).json
    path = urlsplit(link["url"]).path
    first = client.get(path)
    assert first.status_code == 200
    page_bytes = len(first.data)
    gc.collect()
    start = rss_mib()
    version = client.get(f"/api/v1/plans/{plan['id']}", headers=headers).json["version"]
    for i in range(ROUNDS):
        r = client.patch(f"/api/v1/plans/{plan['id']}", json={"title": f"Big plan, take {i}"},
                         headers={**headers, "If-Match": f'"{version}"'})
        assert r.status_code == 200, r.json
        version = r.json["version"]
        assert client.get(path).status_code == 200
    gc.collect()
    end = rss_mib()
    with app.app_context():
        cache = page_cache()
        entries = len(cache.items)
        held = sum(len(page) for page in cache.items.values())
        session().close()
    print(f"buyer page memory, one process, {url.split(':', 1)[0]}: {MILESTONES} milestones with "
          f"{TEXT:,}-character descriptions, {page_bytes / 1e6:.2f} MB of HTML per page")
    print(f"  RSS after the first view      {start:8.1f} MiB")
    print(f"  RSS after {ROUNDS} edit/view rounds {end:8.1f} MiB   (+{end - start:.1f} MiB; "
          f"goal: within 50 MiB)")
    print(f"  page cache: {entries} page(s), {held / 2**20:.1f} MiB "
          f"(budget {app.config.get('BUYER_PAGE_CACHE_BYTES') or 32 * 2**20} bytes per process)")
    return 0 if end - start <= 50 else 1


def _api_key(app) -> str:
    from webapp.auth import create_key, ensure_tenant
    from webapp.db import session

    with app.app_context():
        s = session()
        key = create_key(s, ensure_tenant(s, "bench"), "bench")
        s.commit()
    return key


if __name__ == "__main__":
    sys.exit(run())
