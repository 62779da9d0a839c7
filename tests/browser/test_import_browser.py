"""The editor's spreadsheet import in headless Chromium: upload, correct the column mapping,
read every row's problems, import the valid rows (webapp/blueprints/editor.py)."""
from __future__ import annotations

from tests.browser.test_buyer_browser import demo  # noqa: F401  (the fixture)

SHEET = ("What,Phase,Who,When,Waits for,Lag\n"
         "Security questionnaire,Due diligence,Ana,2027-02-01,,\n"
         "Legal review,Due diligence,Bo,,Security questionnaire,2\n"
         "Pilot sign-off,Pilot,Cy,someday,,\n").encode()


def test_map_the_columns_read_the_problems_and_import_the_valid_rows(browser, demo, api):  # noqa: F811
    rep = browser.page()
    rep.goto(demo["editor"])
    rep.goto(rep.url.split("#")[0].split("?")[0] + "/import")  # the editor's page, then its import
    rep.get_by_label("Spreadsheet").set_input_files(
        files=[{"name": "map.csv", "mimeType": "text/csv", "buffer": SHEET}])
    rep.get_by_role("button", name="Preview").click()
    # "What" is not a header we know: nothing is ready until the rep maps it
    assert "No column holds the milestone titles" in rep.locator("#file-problems").inner_text()
    assert rep.get_by_label("Title", exact=True).input_value() == ""
    assert rep.get_by_label("Stage", exact=True).input_value() == "Phase"  # guessed from the header
    rep.get_by_label("Title", exact=True).select_option("What")
    rep.get_by_label("Owner name", exact=True).select_option("Who")
    rep.get_by_label("Due date", exact=True).select_option("When")
    rep.get_by_label("Depends on", exact=True).select_option("Waits for")
    rep.get_by_label("Days after", exact=True).select_option("Lag")
    rep.get_by_role("button", name="Update the preview").click()
    bad = rep.locator('#preview tr[data-row="4"]')
    assert "'someday' is not a date" in bad.inner_text()
    assert "bad" in bad.get_attribute("class")
    assert "Security questionnaire (+2 d)" in rep.locator('#preview tr[data-row="3"]').inner_text()
    assert "2 ready" in rep.locator("#rows-h").inner_text()
    # all or nothing refuses, and says so; then the valid rows only
    rep.get_by_role("button", name="Import", exact=True).click()
    assert "Not imported." in rep.locator(".notice.error").inner_text()
    assert rep.get_by_label("Title", exact=True).input_value() == "What"  # the mapping is kept
    rep.get_by_label("Import the 2 valid rows and skip the others").check()
    rep.get_by_role("button", name="Import", exact=True).click()
    rep.wait_for_selector(".notice.ok")
    assert "Spreadsheet imported" in rep.locator(".notice.ok").inner_text()
    plan = api.get(f"/plans/{demo['plan']['id']}").json
    titles = {m["title"]: m for st in plan["stages"] for m in st["milestones"]}
    assert "Pilot sign-off" not in titles
    assert titles["Legal review"]["due_date"] == "2027-02-03"  # two days after its prerequisite
    assert titles["Legal review"]["depends_on"][0]["milestone_id"] == titles["Security questionnaire"]["id"]
