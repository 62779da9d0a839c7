"""The analytics page in Chromium: charts render, each chart's bars match its table, the CSV
downloads, and axe-core finds no serious violations."""
from __future__ import annotations

import csv
import io

import pytest
from conftest import signed_in

from webapp import history, users
from webapp.auth import ensure_tenant
from webapp.db import session


@pytest.fixture
def analytics_page(app, client, live_server):
    with app.app_context():
        s = session()
        tenant = ensure_tenant(s, "acme")
        history.seed(s, tenant.id, closed=80, open_plans=10, seed=9)
        s.commit()
    who = signed_in(client, "acme", "admin")
    return {"base": live_server, "token": who.token}


def _page(browser, analytics_page, **options):
    ctx = browser.context(accept_downloads=True, **options)
    ctx.add_cookies([{"name": users.COOKIE, "value": analytics_page["token"],
                      "url": analytics_page["base"]}])
    page = ctx.new_page()
    page.goto(analytics_page["base"] + "/analytics")
    return page


def test_charts_render_and_match_their_tables(browser, analytics_page):
    page = _page(browser, analytics_page)
    for chart in ("funnel", "win-rates", "durations", "slips", "engagement"):
        svg = page.locator(f"svg#chart-{chart}")
        assert svg.is_visible()
        box = svg.bounding_box()
        assert box["width"] > 300 and box["height"] > 50
    # the funnel's bars carry the table's numbers, row for row
    bars = page.locator("svg#chart-funnel rect.bar").evaluate_all(
        "rs => rs.map(r => Number(r.dataset.value))")
    cells = page.locator("table#table-funnel tbody tr td").all_inner_texts()
    assert bars == [int(c) for c in cells] and len(bars) >= 8
    rates = page.locator("svg#chart-win-rates rect.bar").evaluate_all(
        "rs => rs.map(r => Math.round(Number(r.dataset.value) * 100))")
    shown = [c for c in page.locator("table#table-win-rates tbody tr td:last-child")
             .all_inner_texts() if c != "—"]
    assert [f"{r}%" for r in rates] == shown
    assert page.evaluate("document.querySelectorAll('script').length") == 0


def test_csv_downloads(browser, analytics_page):
    page = _page(browser, analytics_page)
    with page.expect_download() as info:
        page.locator("#table-slips a.csv").click()
    download = info.value
    assert download.suggested_filename == "mutualplan-slips.csv"
    with open(download.path(), encoding="utf-8") as fh:
        rows = list(csv.DictReader(io.StringIO(fh.read())))
    titles = page.locator("table#table-slips tbody th").all_inner_texts()
    assert [r["title"] for r in rows] == titles


def test_axe_finds_no_serious_violations(browser, analytics_page):
    from axe_playwright_python.sync_playwright import Axe

    page = _page(browser, analytics_page)
    results = Axe().run(page)
    serious = [(v["id"], [n["target"] for n in v["nodes"]][:3])
               for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == []
