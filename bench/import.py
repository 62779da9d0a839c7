"""Spreadsheet import: a 200-row XLSX through the API, time to preview and to import.

    .venv/bin/python bench/import.py        # PostgreSQL when reachable (bench/_setup.py)

Builds a 200-row workbook in the layout export writes (ten stages, due dates, owners),
then ROUNDS times: POST /api/v1/plans/import?dry_run=true (parse, map, check every row,
write nothing) and POST /api/v1/plans/import?mode=valid_only (the same, then create the
plan and write the 100 rows the per-plan limit allows, one transaction), in-process
(Flask test client: routing, openpyxl, the database; no network). Goal (issue 15): < 1 s each.
"""
from __future__ import annotations

import io
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _setup import make_app
from openpyxl import Workbook

from webapp.auth import create_key, ensure_tenant
from webapp.db import session
from webapp.spreadsheets import COLUMNS, XLSX_TYPE

ROWS, ROUNDS = 200, 7


def workbook() -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append([header for _, header in COLUMNS])
    for i in range(ROWS):
        sheet.append([f"Milestone {i}", f"Stage {i // 20}", f"Owner {i}", f"owner{i}@example.com",
                      "buyer" if i % 2 else "seller", date(2027, 1, 1) + timedelta(days=i),
                      ("Not started", "In progress", "Done")[i % 3], "On track",
                      "Notes " * 10, "no"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def timed(client, url, body, headers, status) -> float:
    start = time.perf_counter()
    response = client.post(url, data=body, headers=headers)
    elapsed = time.perf_counter() - start
    assert response.status_code == status, response.json
    return elapsed


def main() -> None:
    app, url = make_app()
    with app.app_context():
        s = session()
        key = create_key(s, ensure_tenant(s, "bench"), "bench")
        s.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": XLSX_TYPE}
    body = workbook()
    preview, imports = [], []
    for _ in range(ROUNDS):
        preview.append(timed(client, "/api/v1/plans/import?dry_run=true", body, headers, 200))
        imports.append(timed(client, "/api/v1/plans/import?mode=valid_only", body, headers, 201))
    print(f"database: {url.split('://')[0]}; {ROWS}-row XLSX, {len(body):,} bytes; {ROUNDS} rounds")
    for name, times in (("preview (dry_run)", preview), ("import (100 rows written)", imports)):
        print(f"{name:28} median {statistics.median(times) * 1000:6.0f} ms   "
              f"max {max(times) * 1000:6.0f} ms   (goal < 1000 ms)")


if __name__ == "__main__":
    main()
