"""Plans as spreadsheets: export, import (preview, all-or-nothing, valid rows only), round trip."""
import io
import re
from datetime import date, timedelta

import pytest
from conftest import milestones_of, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

from webapp.spreadsheets import XLSX_TYPE, guess_mapping, parse_date

CSV = {"Content-Type": "text/csv"}


@pytest.fixture
def app_config():
    """The property test sends hundreds of requests a minute for one tenant."""
    return {"API_RATE_LIMIT": 100_000}
XLSX = {"Content-Type": XLSX_TYPE}


def xlsx(rows) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_of(*lines) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def comparable(plan: dict) -> list:
    """What a round trip keeps: stages in order with their milestones' fields, and each
    milestone's prerequisites by their place in the plan (ids differ, titles may repeat)."""
    keep = ("title", "description", "owner_side", "owners", "due_date", "status", "risk", "internal")
    place = {m["id"]: i for i, m in enumerate(milestones_of(plan))}
    return [(s["name"], [{**{k: m[k] for k in keep},
                          "depends_on": [(place[d["milestone_id"]], d["days"], d["after"])
                                         for d in m.get("depends_on", [])]}
                         for m in s["milestones"]]) for s in plan["stages"]]


# ---- export -----------------------------------------------------------------------------


def test_export_csv_has_the_columns_and_one_row_per_milestone(api, plan):
    response = api.get(f"/plans/{plan['id']}/export.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    lines = response.data.decode("utf-8-sig").splitlines()
    assert lines[0] == ("Title,Stage,Owner name,Owner email,Owner side,Due date,Status,Risk,Notes,Internal,"
                        "Depends on,Days after")
    assert len(lines) == 1 + len(milestones_of(plan))


def test_export_xlsx_is_a_workbook_with_real_dates(api, plan):
    response = api.get(f"/plans/{plan['id']}/export.xlsx")
    assert response.status_code == 200
    assert response.mimetype == XLSX_TYPE
    rows = list(load_workbook(io.BytesIO(response.data)).active.iter_rows(values_only=True))
    assert rows[0][0] == "Title" and rows[1][0] == milestones_of(plan)[0]["title"]
    assert rows[1][5].date().isoformat() == milestones_of(plan)[0]["due_date"]


def test_export_of_another_tenants_plan_is_404(other_api, plan):
    assert other_api.get(f"/plans/{plan['id']}/export.csv").status_code == 404


def test_export_guards_against_formulas_and_import_undoes_it(api):
    made = api.post("/plans", json={"title": "F"}).json
    stage = api.post(f"/plans/{made['id']}/stages", json={"name": "S"}).json["stages"][0]
    api.post(f"/plans/{made['id']}/milestones", json={"stage_id": stage["id"], "title": "=1+1"})
    text = api.get(f"/plans/{made['id']}/export.csv").data.decode("utf-8-sig")
    assert "'=1+1" in text
    book = load_workbook(io.BytesIO(api.get(f"/plans/{made['id']}/export.xlsx").data))
    assert book.active["A2"].data_type == "s"
    back = api.post("/plans/import", data=text.encode(), headers=CSV).json["plan"]
    assert milestones_of(back)[0]["title"] == "=1+1"


# ---- import ------------------------------------------------------------------------------


def test_round_trip_of_the_template_plan_through_csv_and_xlsx(api, plan):
    for ext, headers in (("csv", CSV), ("xlsx", XLSX)):
        body = api.get(f"/plans/{plan['id']}/export.{ext}").data
        response = api.post("/plans/import?title=Copy", data=body, headers=headers)
        assert response.status_code == 201, response.json
        assert comparable(response.json["plan"]) == comparable(plan)
        assert response.json["plan"]["title"] == "Copy"


def test_dry_run_answers_the_preview_and_writes_nothing(app, api, plan):
    before = snapshot(app)
    body = csv_of("Milestone,Owner,Due,Status,Phase",
                  "Security review,Ana,3/14/2027,Done,Validation",
                  "Legal review,Bo,14 Mar 2027,Waiting,Validation",
                  ",,,,")
    response = api.post(f"/plans/{plan['id']}/import?dry_run=true", data=body, headers=CSV)
    assert response.status_code == 200, response.json
    assert snapshot(app) == before
    rows = response.json["rows"]
    assert response.json["mapping"] == {"title": "Milestone", "owner_name": "Owner",
                                        "due_date": "Due", "status": "Status", "stage": "Phase"}
    assert rows[0]["due_date"] == "2027-03-14" and rows[0]["status"] == "done" and rows[0]["valid"]
    assert rows[1]["problems"] == ["Unknown status 'Waiting': use Not started, In progress or Done."]
    assert response.json["problems"] == [{"row": 3, "message": rows[1]["problems"][0]}]


def test_all_or_nothing_refuses_a_file_with_problems(app, api, plan):
    before = snapshot(app)
    body = csv_of("Task,Date", "Kick-off,2027-01-05", "Sign,31/02/2027")
    response = api.post(f"/plans/{plan['id']}/import", data=body, headers=CSV)
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "row 3"
    assert "not a date" in response.json["errors"][0]["message"]
    assert snapshot(app) == before


def test_valid_only_imports_the_valid_rows_into_matching_and_new_stages(api, plan):
    first_stage = plan["stages"][0]["name"]
    body = csv_of("Step,Stage,Target date,Owner side",
                  f"Extra call,{first_stage.upper()},2027-02-01,customer",
                  "Pilot,Pilot phase,2027-02-10,joint",
                  "Bad,Pilot phase,someday,")
    response = api.post(f"/plans/{plan['id']}/import?mode=valid_only", data=body, headers=CSV)
    assert response.status_code == 200, response.json
    assert response.json["imported"] == 2
    after = response.json["plan"]
    assert after["stages"][0]["milestones"][-1]["title"] == "Extra call"
    assert after["stages"][0]["milestones"][-1]["owner_side"] == "buyer"
    assert after["stages"][-1]["name"] == "Pilot phase"
    assert [m["title"] for m in after["stages"][-1]["milestones"]] == ["Pilot"]
    activity = api.get(f"/plans/{plan['id']}/activity").json["items"]
    assert activity[0]["action"] == "plan.imported"


def test_too_many_rows_are_named_per_row(api):
    rows = ["Milestone,Stage"] + [f"M{i},S{i % 25}" for i in range(120)]
    response = api.post("/plans/import?dry_run=true", data=csv_of(*rows), headers=CSV)
    messages = {p["message"] for p in response.json["problems"]}
    assert any("at most 20 stages" in m for m in messages)
    rows = ["Milestone"] + [f"M{i}" for i in range(105)]
    response = api.post("/plans/import?dry_run=true", data=csv_of(*rows), headers=CSV)
    problems = response.json["problems"]
    assert [p["row"] for p in problems] == [102, 103, 104, 105, 106]
    assert problems[0]["message"] == "This would be milestone 101; a plan holds at most 100 milestones."


def test_mapping_can_be_overridden(api):
    body = csv_of("What,Who,Notes", "Demo,Ana,first")
    guessed = api.post("/plans/import?dry_run=true", data=body, headers=CSV).json
    assert "title" not in guessed["mapping"]
    assert guessed["problems"][0]["row"] is None
    response = api.post("/plans/import?mapping=title=What", data=body, headers=CSV)
    assert response.status_code == 201, response.json
    m = milestones_of(response.json["plan"])[0]
    assert (m["title"], m["owners"], m["description"]) == ("Demo", [{"name": "Ana", "email": ""}], "first")


def test_section_rows_name_the_stage_and_excel_dates_are_read(api):
    body = xlsx([["Mutual action plan — Acme"], [],
                 ["Milestone", "Owner", "Target date", "Status"],
                 ["Discovery"],
                 ["Kick-off", "Ana", date(2027, 1, 5), "Complete"],
                 ["Validation"],
                 ["Security review", "Bo", 46430, "In progress"]])
    response = api.post("/plans/import", data=body, headers=XLSX)
    assert response.status_code == 201, response.json
    stages = response.json["plan"]["stages"]
    assert [s["name"] for s in stages] == ["Discovery", "Validation"]
    assert stages[1]["milestones"][0]["due_date"] == "2027-02-12"


def test_bad_bodies_are_refused_in_plain_words(api, plan):
    url = f"/plans/{plan['id']}/import"
    assert api.post(url, data=b"x", headers={"Content-Type": "image/png"}).status_code == 415
    response = api.post(url, data=b"PK\x03\x04 not a zip", headers=XLSX)
    assert response.status_code == 422 and "Excel" in response.json["detail"]
    assert api.post(url + "?mode=some", data=b"a", headers=CSV).status_code == 422
    assert api.post(url + "?mapping=colour=Red", data=b"a", headers=CSV).status_code == 422
    assert api.post(url + "?bogus=1", data=b"a", headers=CSV).status_code == 422


@pytest.mark.parametrize("text,order,expected", [
    ("2027-03-14", None, date(2027, 3, 14)), ("3/14/2027", None, date(2027, 3, 14)),
    ("14/03/2027", None, date(2027, 3, 14)), ("14.03.2027", None, date(2027, 3, 14)),
    ("14 Mar 2027", None, date(2027, 3, 14)), ("March 14, 2027", None, date(2027, 3, 14)),
    ("3/4/2027", "dmy", date(2027, 4, 3)), ("3/4/2027", "mdy", date(2027, 3, 4)),
    ("", None, None), ("46460", None, date(2027, 3, 14)),
])
def test_dates_in_the_common_formats(text, order, expected):
    assert parse_date(text, order) == expected


def test_an_ambiguous_date_says_both_readings():
    with pytest.raises(ValueError, match="could be 3 April 2027 or 4 March 2027"):
        parse_date("3/4/2027", None)


def test_guess_mapping_prefers_exact_names():
    assert guess_mapping(["Owner email", "Owner", "Task", "Description", "Phase", "Deadline"]) == {
        "owner_email": "Owner email", "owner_name": "Owner", "title": "Task", "notes": "Description",
        "stage": "Phase", "due_date": "Deadline"}


# ---- the round-trip property -------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
               min_size=1, max_size=30).map(str.strip).filter(bool)
owner = st.fixed_dictionaries({"name": text.filter(lambda t: ";" not in t),
                               "email": st.sampled_from(["", "a@b.co", "x.y@acme.io"])})
milestone_st = st.fixed_dictionaries({
    "title": text, "description": st.sampled_from(["", "multi\nline", "=SUM(A1)", "'quoted"]),
    "owner_side": st.sampled_from(["buyer", "seller", "both"]),
    "owners": st.lists(owner, max_size=2),
    "due_date": st.none() | st.dates(date(2000, 1, 1), date(2100, 12, 31)).map(date.isoformat),
    "status": st.sampled_from(["not_started", "in_progress", "done"]),
    "risk": st.sampled_from(["on_track", "at_risk", "off_track"]), "internal": st.booleans()})
plan_st = st.lists(st.tuples(text.map(lambda t: t[:120]), st.lists(milestone_st, max_size=3)),
                   min_size=1, max_size=3, unique_by=lambda sm: sm[0].casefold())


dependency_st = st.lists(st.tuples(st.integers(1, 5), st.integers(0, 4), st.integers(-5, 30),
                                  st.sampled_from(["done", "due"])), min_size=1, max_size=6)


def _add_dependencies(api, plan_id: str, wanted) -> None:
    """Milestone i waits on an earlier j, as a file can name it: j's title is the nearest one
    above i with that title and has no ";" (the separator between several)."""
    ms = milestones_of(api.get(f"/plans/{plan_id}").json)
    chosen: dict[int, dict] = {}
    for i, j, days, after in wanted:
        if not (j < i < len(ms)) or ";" in ms[j]["title"]:
            continue
        if any(ms[k]["title"].casefold() == ms[j]["title"].casefold() for k in range(j + 1, i)):
            continue
        chosen.setdefault(i, {})[ms[j]["id"]] = {"milestone_id": ms[j]["id"], "days": days, "after": after}
    for i, deps in sorted(chosen.items()):
        response = api.patch(f"/milestones/{ms[i]['id']}", json={"depends_on": list(deps.values())})
        assert response.status_code == 200, response.json


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=plan_st, ext=st.sampled_from(["csv", "xlsx"]), wanted=dependency_st)
def test_export_then_import_gives_the_same_plan(api, shape, ext, wanted):
    response = api.post("/plans", json={"title": "P"})
    assert response.status_code == 201, response.json
    made = response.json
    for name, milestones in shape:
        response = api.post(f"/plans/{made['id']}/stages", json={"name": name})
        assert response.status_code == 201, response.json
        stage = response.json["stages"][-1]
        for m in milestones:
            assert api.post(f"/plans/{made['id']}/milestones",
                            json={"stage_id": stage["id"], **m}).status_code == 201
    _add_dependencies(api, made["id"], wanted)
    original = api.get(f"/plans/{made['id']}").json
    body = api.get(f"/plans/{made['id']}/export.{ext}").data
    response = api.post("/plans/import", data=body, headers={"csv": CSV, "xlsx": XLSX}[ext])
    assert response.status_code == 201, (response.json, body)
    assert comparable(response.json["plan"]) == comparable(original)


def test_dependencies_round_trip_and_their_problems_are_named_per_row(api, plan):
    ms = milestones_of(plan)
    a, b, c = ms[0], ms[1], ms[2]
    assert api.patch(f"/milestones/{b['id']}", json={"depends_on": [
        {"milestone_id": a["id"], "days": 2, "after": "done"}]}).status_code == 200
    assert api.patch(f"/milestones/{c['id']}", json={"depends_on": [
        {"milestone_id": a["id"], "days": 5, "after": "due"},
        {"milestone_id": b["id"], "days": 1, "after": "done"}]}).status_code == 200
    original = api.get(f"/plans/{plan['id']}").json
    text = api.get(f"/plans/{plan['id']}/export.csv").data.decode("utf-8-sig")
    assert f'{a["title"]}; {b["title"]},5 after due; 1' in text and f",{a['title']},2" in text
    made = api.post("/plans/import", data=text.encode(), headers=CSV)
    assert made.status_code == 201, made.json
    assert comparable(made.json["plan"]) == comparable(original)

    body = csv_of("Title,Due,Depends on,Days after", "Security review,2027-01-04,,",
                  "Legal review,,Security review,2", "Kickoff,,Nowhere,1", "Loop A,,Loop B,0",
                  "Loop B,,Loop A,0", "Pilot,,Legal review,soon",
                  "Signature,,Legal review; Security review,1; 2; 3")
    rows = api.post("/plans/import?dry_run=true", data=body, headers=CSV).json["rows"]
    problems = {r["title"]: r["problems"] for r in rows}
    assert problems["Legal review"] == []
    assert rows[1]["depends_on"] == [{"title": "Security review", "days": 2, "after": "done"}]
    assert "no milestone 'Nowhere'" in problems["Kickoff"][0]
    assert "in a circle (rows 5, 6)" in problems["Loop A"][0] and problems["Loop B"]
    assert "'soon' is not a number of days" in problems["Pilot"][0]
    assert "3 values for 2 milestones" in problems["Signature"][0]
    # a prerequisite named from the plan: the import links the new row to it and dates it
    into = api.post(f"/plans/{plan['id']}/import", data=csv_of(
        "Title,Stage,Depends on,Days after", f"Follow-up,Extra,{a['title']},3 after due"), headers=CSV)
    assert into.status_code == 200, into.json
    new = next(m for m in milestones_of(into.json["plan"]) if m["title"] == "Follow-up")
    assert new["depends_on"] == [{"milestone_id": a["id"], "days": 3, "after": "due"}]
    assert new["due_date"] == (date.fromisoformat(a["due_date"]) + timedelta(days=3)).isoformat()


def test_sample_spreadsheets_import_cleanly(api):
    from pathlib import Path

    folder = Path(__file__).parent.parent / "docs" / "samples"
    samples = sorted(p for p in folder.iterdir() if p.suffix in (".csv", ".xlsx"))
    assert samples
    for path in samples:
        media = XLSX_TYPE if path.suffix == ".xlsx" else "text/csv"
        response = api.post("/plans/import?dry_run=true", data=path.read_bytes(),
                            headers={"Content-Type": media})
        assert response.status_code == 200, path
        assert response.json["problems"] == [], (path.name, response.json["problems"])
        assert len(response.json["rows"]) >= 8, path.name



def test_import_responses_match_the_openapi_document(client, api, plan):
    import jsonschema

    spec = client.get("/api/v1/openapi.json").json
    body = api.get(f"/plans/{plan['id']}/export.csv").data
    for path, url, status in (("/plans/{plan_id}/import", f"/plans/{plan['id']}/import?dry_run=true", 200),
                              ("/plans/import", "/plans/import", 201)):
        op = spec["paths"][path]["post"]
        assert set(op["requestBody"]["content"]) == {"text/csv", XLSX_TYPE}
        response = api.post(url, data=body, headers=CSV)
        assert response.status_code == status
        schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
        jsonschema.validate(response.json, {**schema, "components": spec["components"]},
                            cls=jsonschema.Draft202012Validator)
    export = spec["paths"]["/plans/{plan_id}/export.xlsx"]["get"]["responses"]["200"]["content"]
    assert list(export) == [XLSX_TYPE]


# ---- the editor's import page --------------------------------------------------------------


def _editor_page(api, client, plan_id):
    from test_editor import open_editor

    return open_editor(api, client, plan_id) + "/import"


def test_editor_import_upload_preview_correct_and_confirm(app, api, client, plan):
    from conftest import CSRF

    page = _editor_page(api, client, plan["id"])
    html = client.get(page).get_data(as_text=True)
    assert 'type="file"' in html
    assert "Import a spreadsheet" in client.get(page[:-len("/import")]).get_data(as_text=True)
    csrf = CSRF.search(html).group(1)
    body = csv_of("What,Owner,Due", "Pilot,Ana,2027-02-01", "Bad,Bo,someday")
    before = snapshot(app)
    response = client.post(page, data={"csrf": csrf, "op": "preview",
                                       "file": (io.BytesIO(body), "plan.csv")},
                           content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "No column holds the milestone titles" in html
    assert '<option value="What">What</option>' in html  # not guessed: the rep picks it
    data = re.search(r'name="data" value="([^"]+)"', html).group(1)
    form = {"csrf": csrf, "data": data, "media": "text/csv", "map_title": "What",
            "map_owner_name": "Owner", "map_due_date": "Due"}
    response = client.post(page, data={**form, "op": "preview"})
    html = response.get_data(as_text=True)
    assert "&#39;someday&#39; is not a date" in html and 'data-row="2"' in html
    response = client.post(page, data={**form, "op": "import", "mode": "all"})
    assert response.status_code == 422 and "problem" in response.get_data(as_text=True)
    assert snapshot(app) == before
    response = client.post(page, data={**form, "op": "import", "mode": "valid_only"})
    assert response.status_code == 303 and "ok=imported" in response.headers["Location"]
    after = api.get(f"/plans/{plan['id']}").json
    assert [m["title"] for m in after["stages"][-1]["milestones"]] == ["Pilot"]


def test_editor_import_needs_the_session_and_the_csrf_token(app, api, client, plan):
    page = f"/editor/plans/{plan['id']}/import"
    assert client.get(page).status_code == 401
    page = _editor_page(api, client, plan["id"])
    before = snapshot(app)
    response = client.post(page, data={"csrf": "x", "op": "import", "media": "text/csv",
                                       "data": "VGl0bGUKQQo="})
    assert response.status_code == 403
    assert snapshot(app) == before


# ---- size: MAX_CONTENT_LENGTH ------------------------------------------------------------


def _realistic_csv(rows: int) -> bytes:
    notes = "What needs to happen, who is involved and why it matters to the project. " * 3
    lines = ["Title,Stage,Owner name,Owner e-mail,Owner side,Due date,Status,Notes,Internal"]
    lines += [f'Milestone {i} with a realistic title,Stage {i // 10},Dana Buyer,dana@buyer.example,'
              f'buyer,2027-03-01,not_started,"{notes}",no' for i in range(rows)]
    return csv_of(*lines)


def test_a_realistic_file_at_the_row_limit_fits_and_a_larger_body_is_a_clear_413(app, api, client, plan):
    limit = app.config["MAX_CONTENT_LENGTH"]
    full = _realistic_csv(100)  # the plan limit: 100 milestones, each with long notes
    assert len(full) < limit // 4
    answer = api.post("/plans/import?dry_run=true", data=full, headers=CSV)
    assert answer.status_code == 200 and len(answer.json["rows"]) == 100 and not answer.json["problems"]
    before = snapshot(app)
    answer = api.post("/plans/import", data=b"x" * (limit + 1), headers=CSV)
    assert answer.status_code == 413 and answer.content_type == "application/problem+json"
    assert answer.json["type"].endswith("file-too-large")
    assert f"the limit is {limit // 1024} KiB" in answer.json["detail"]
    assert snapshot(app) == before

    from conftest import CSRF
    page = _editor_page(api, client, plan["id"])
    csrf = CSRF.search(client.get(page).get_data(as_text=True)).group(1)
    before = snapshot(app)  # with the editor session
    response = client.post(page, data={"csrf": csrf, "op": "preview",
                                       "file": (io.BytesIO(b"x" * (limit + 1)), "big.csv")},
                           content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 413 and "the limit is 256 KiB" in html and 'type="file"' in html
    # a file just under the limit survives the preview form's base64 copy
    big = _realistic_csv(100) + b"," * (limit - len(full) - 2048) + b"\n"
    response = client.post(page, data={"csrf": csrf, "op": "preview",
                                       "file": (io.BytesIO(big), "big.csv")},
                           content_type="multipart/form-data")
    data = re.search(r'name="data" value="([^"]+)"', response.get_data(as_text=True)).group(1)
    response = client.post(page, data={"csrf": csrf, "data": data, "media": "text/csv", "op": "preview"})
    assert response.status_code == 200
    assert snapshot(app) == before
