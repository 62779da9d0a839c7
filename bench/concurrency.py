"""Optimistic locking under real concurrency: 20 writers send the same PATCH with the same
If-Match at once, over HTTP, to a threaded server (one database connection per request).
Prints the writers answered 200 per resource and round (goal: exactly 1) and the codes seen.

    .venv/bin/python bench/concurrency.py [rounds]      (PostgreSQL when available)
"""
from __future__ import annotations

import logging
import sys
import threading
from collections import Counter

import requests
from _setup import make_app
from werkzeug.serving import make_server

from webapp.auth import create_key, ensure_tenant
from webapp.db import session

WRITERS = 20


def race(base: str, key: str, path: str, version: int, field: str, tag: str) -> Counter:
    barrier = threading.Barrier(WRITERS)
    codes: Counter = Counter()

    def writer(i: int) -> None:
        with requests.Session() as http:
            barrier.wait()
            codes[http.patch(f"{base}/api/v1{path}", json={field: f"{tag} writer {i}"}, timeout=60,
                             headers={"Authorization": f"Bearer {key}",
                                      "If-Match": f'"{version}"'}).status_code] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def main(rounds: int) -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    app, url = make_app()
    print(f"database: {url.split('://')[0]}; {WRITERS} writers per round, {rounds} rounds")
    with app.app_context():
        s = session()
        key = create_key(s, ensure_tenant(s, "bench-concurrency"), "bench")
        s.commit()
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_port}"
    auth = {"Authorization": f"Bearer {key}"}
    plan = requests.post(f"{base}/api/v1/plans", headers=auth,
                         json={"title": "Race", "template": "quick"}).json()
    person = requests.post(f"{base}/api/v1/plans/{plan['id']}/stakeholders", headers=auth,
                           json={"name": "Dana", "side": "buyer"}).json()
    stage = plan["stages"][0]
    targets = {"plan": (f"/plans/{plan['id']}", "title"),
               "stage": (f"/stages/{stage['id']}", "name"),
               "milestone": (f"/milestones/{stage['milestones'][0]['id']}", "title"),
               "stakeholder": (f"/stakeholders/{person['id']}", "title")}
    for kind, (path, field) in targets.items():
        winners, seen = [], Counter()
        for r in range(rounds):  # a new value each round: an unchanged value is a no-op 200
            doc = requests.get(f"{base}/api/v1/plans/{plan['id']}", headers=auth).json()
            version = {"plan": doc["version"],
                       "stage": next(st["version"] for st in doc["stages"] if st["id"] == stage["id"]),
                       "milestone": doc["stages"][0]["milestones"][0]["version"],
                       "stakeholder": doc["stakeholders"][0]["version"]}[kind]
            codes = race(base, key, path, version, field, f"round {r}")
            winners.append(codes[200])
            seen.update(codes)
        print(f"{kind:12} winners per round of {WRITERS}: {winners}  codes: {dict(sorted(seen.items()))}")
    srv.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
