"""Plans as spreadsheets: export to CSV/XLSX, and import from the sheets teams already keep.

Export writes one row per milestone (and one row with an empty title per stage without
milestones) in COLUMNS order; import reads that layout back exactly, so export then
import gives the same plan. Import also reads the usual hand-made MAP layouts: the
column mapping is guessed from the headers (`guess_mapping`), overridable by the
caller; dates come in the common formats; every row's problems are reported in plain
words. `preview` parses and checks without writing; `import_rows` writes the valid
rows into a plan, in the caller's transaction, with one activity entry.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy.orm import Session

from . import clock, plans
from .models import Milestone, Plan, Stage
from .schemas import FIRST_DAY, LAST_DAY, MilestoneIn, StageIn

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv"
MAX_ROWS = 1_000  # rows read from a file; past the plan limits anyway (plans.LIMITS)


def too_large(size: int | None, limit: int) -> str:
    """What a refused upload is told (the API's 413 problem, the editor's message). The body
    limit (MAX_CONTENT_LENGTH, 256 KiB) holds a plan at its 100-milestone limit many times
    over: such a CSV with long notes is ~40 KiB, an XLSX ~9 KiB (tests/test_spreadsheets.py)."""
    what = f"The file is {size // 1024} KiB" if size else "The file is too large"
    return (f"{what}; the limit is {limit // 1024} KiB. A plan holds at most "
            f"{plans.LIMITS['milestones_per_plan'][0]} milestones, which fit well within it: save "
            "only the sheet with the milestones (no images or other sheets), or save it as CSV.")
MAX_COLUMNS = 50
DEFAULT_STAGE = "Plan"

# (field, header written on export); import recognises these headers and the synonyms below
COLUMNS = [
    ("title", "Title"), ("stage", "Stage"), ("owner_name", "Owner name"),
    ("owner_email", "Owner email"), ("owner_side", "Owner side"), ("due_date", "Due date"),
    ("status", "Status"), ("risk", "Risk"), ("notes", "Notes"), ("internal", "Internal"),
    ("depends_on", "Depends on"), ("days_after", "Days after"),
]
FIELDS = [f for f, _ in COLUMNS]

# Headers seen in MAP spreadsheets (normalised: lower case, letters and digits only).
SYNONYMS = {
    "title": ["title", "milestone", "milestones", "task", "tasks", "step", "steps", "activity",
              "action", "actionitem", "item", "deliverable", "name", "milestonename", "taskname",
              "description"],
    "stage": ["stage", "phase", "section", "group", "workstream", "stagename", "phasename"],
    "owner_name": ["ownername", "owner", "owners", "responsible", "assignee", "assignedto", "who",
                   "accountable", "lead"],
    "owner_email": ["owneremail", "email", "ownersemail", "contactemail", "emailaddress"],
    "owner_side": ["ownerside", "side", "party", "team", "company", "organisation", "organization"],
    "due_date": ["duedate", "due", "date", "targetdate", "deadline", "target", "when",
                 "completiondate", "enddate", "finishdate", "targetcompletion", "by"],
    "status": ["status", "state", "progress", "done"],
    "risk": ["risk", "health", "rag", "ragstatus", "confidence"],
    "notes": ["notes", "note", "comments", "comment", "details", "description", "remarks"],
    "internal": ["internal", "private", "internalonly", "hidden", "sellersonly"],
    # prerequisites by title ("; " between several) and the days after them (webapp/dependencies.py)
    "depends_on": ["dependson", "dependencies", "prerequisites", "prerequisite", "predecessors",
                   "predecessor", "waitingon", "blockedby", "after"],
    "days_after": ["daysafter", "lag", "lagdays", "offset", "offsetdays", "delay", "daysdelay"],
}

STATUS_WORDS = {
    "not_started": ["notstarted", "", "todo", "open", "planned", "new", "pending", "no",
                    "notyetstarted", "upcoming", "scheduled"],
    "in_progress": ["inprogress", "started", "ongoing", "wip", "doing", "underway", "active",
                    "inreview", "partial"],
    "done": ["done", "complete", "completed", "finished", "closed", "yes", "signed", "x",
             "achieved", "delivered"],
}
RISK_WORDS = {
    "on_track": ["ontrack", "", "green", "low", "ok", "good"],
    "at_risk": ["atrisk", "amber", "yellow", "medium", "orange", "watch"],
    "off_track": ["offtrack", "red", "high", "blocked", "late"],
}
SIDE_WORDS = {
    "seller": ["seller", "", "vendor", "us", "we", "sales", "supplier", "ours"],
    "buyer": ["buyer", "customer", "client", "prospect", "them", "theirs"],
    "both": ["both", "joint", "mutual", "shared", "all"],
}
YES = {"yes", "y", "true", "1", "x", "internal", "private"}
NO = {"no", "n", "false", "0", ""}
STATUS_LABEL = {"not_started": "Not started", "in_progress": "In progress", "done": "Done"}
RISK_LABEL = {"on_track": "On track", "at_risk": "At risk", "off_track": "Off track"}
MONTHS = {m: i + 1 for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _norm(text) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text or "").lower())


def _lookup(words: dict[str, list[str]], raw) -> str | None:
    key = _norm(raw)
    return next((value for value, spellings in words.items() if key in spellings), None)


# ---- export ------------------------------------------------------------------------


def _safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection): a leading
    apostrophe, which import strips again."""
    return "'" + text if text.startswith(FORMULA_START) or text.startswith("'") else text


def export_rows(plan: Plan) -> list[list]:
    """The header row and one row per milestone (an empty stage: one row, empty title)."""
    rows: list[list] = [[header for _, header in COLUMNS]]
    titles = {m.id: m.title for m in plan.milestones}
    for stage, milestones in plans.sorted_stages(plan):
        if not milestones:
            rows.append(["", stage.name] + [""] * (len(COLUMNS) - 2))
        for m in milestones:
            owners = m.owners or []
            rows.append([
                m.title, stage.name, "; ".join(o.get("name", "") for o in owners),
                "; ".join(o.get("email", "") for o in owners), m.owner_side,
                m.due_date or "", STATUS_LABEL[m.status], RISK_LABEL[m.risk], m.description or "",
                "yes" if m.internal else "no", *_dependency_cells(m, titles),
            ])
    return rows


def _days_text(d: dict) -> str:
    return f"{d['days']} after due" if d["after"] == "due" else str(d["days"])


def _dependency_cells(m: Milestone, titles: dict[str, str]) -> list[str]:
    """"Depends on" (the prerequisites' titles) and "Days after": one number for all of them,
    or one per prerequisite; "N after due" counts from the prerequisite's due date rather
    than the day it is done. A title is read back as the nearest milestone above with it."""
    deps = [d for d in m.depends_on or [] if d["milestone_id"] in titles]
    if not deps:
        return ["", ""]
    days = [_days_text(d) for d in deps]
    return ["; ".join(titles[d["milestone_id"]] for d in deps),
            days[0] if len(set(days)) == 1 else "; ".join(days)]


def to_csv(rows: list[list]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([v.isoformat() if isinstance(v, date) else _safe(str(v)) for v in row])
    return out.getvalue().encode("utf-8-sig")  # the BOM makes Excel read UTF-8


def to_xlsx(rows: list[list], title: str = "Plan") -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(re.sub(r"[\[\]:*?/\\]", " ", title)[:31] or "Plan")
    from openpyxl.cell import WriteOnlyCell

    for row in rows:
        cells = []
        for value in row:
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, date):
                cell.number_format = "yyyy-mm-dd"
            elif isinstance(value, str):
                cell.data_type = "s"  # text, never a formula, whatever it starts with
            cells.append(cell)
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ---- reading files --------------------------------------------------------------------


class Unreadable(ValueError):
    """The file is not a CSV or XLSX we can read; the message says why, in plain words."""


def read_table(data: bytes, media_type: str) -> list[list]:
    """The cells of the file's first sheet, rows of strings (CSV) or typed values (XLSX)."""
    if media_type == XLSX_TYPE:
        return _read_xlsx(data)
    if media_type in (CSV_TYPE, "application/csv", "text/plain"):
        return _read_csv(data)
    raise Unreadable("send a CSV file (text/csv) or an Excel workbook (.xlsx)")


def _read_csv(data: bytes) -> list[list]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # Excel's "CSV" on Windows
    if "\x00" in text:
        raise Unreadable("this is not a text file; send a CSV or an .xlsx workbook")
    # The delimiter is the one the first line uses most (Excel writes ";" in much of Europe).
    # Not csv.Sniffer: it also guesses the quote character, and a cell holding ' fooled it.
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    rows = []
    try:
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            rows.append(row[:MAX_COLUMNS])
            if len(rows) > MAX_ROWS:
                break
    except csv.Error as exc:
        raise Unreadable(f"the CSV file is malformed ({exc})") from None
    return rows


def _read_xlsx(data: bytes) -> list[list]:
    from zipfile import BadZipFile

    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (BadZipFile, KeyError, OSError, ValueError, TypeError):
        raise Unreadable("this is not an Excel workbook (.xlsx) we can read") from None
    try:
        sheet = book.worksheets[0]
        rows = []
        for row in sheet.iter_rows(max_col=MAX_COLUMNS, values_only=True):
            rows.append(list(row))
            if len(rows) > MAX_ROWS:
                break
        return rows
    finally:
        book.close()


# ---- mapping ------------------------------------------------------------------------------


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _header_row(table: list[list]) -> int:
    """The index of the header row: the first of the top ten rows naming two known columns
    (sheets often carry a title and a blank line above), else the first non-empty row."""
    known = {w for words in SYNONYMS.values() for w in words}
    for i, row in enumerate(table[:10]):
        if sum(1 for v in row if _norm(_cell_text(v)) in known) >= 2:
            return i
    return next((i for i, row in enumerate(table) if any(_cell_text(v) for v in row)), 0)


def guess_mapping(headers: list[str]) -> dict[str, str]:
    """{field: header} for each field whose header we recognise (each header used once).

    Exact names come first (an "Owner email" column is never the owner's name), then the
    synonyms in their order of preference.
    """
    normalised = {_norm(h): h for h in reversed(headers) if _norm(h)}
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for rank in range(max(len(w) for w in SYNONYMS.values())):
        for name in FIELDS:
            words = SYNONYMS[name]
            if name in mapping or rank >= len(words):
                continue
            header = normalised.get(words[rank])
            if header is not None and header not in used:
                mapping[name] = header
                used.add(header)
    return mapping


def parse_mapping(raw: str | None) -> dict[str, str]:
    """A mapping given by the caller: `field=Header` pairs separated by commas (or `;`);
    an empty header means "do not import this field"."""
    if not raw:
        return {}
    mapping = {}
    for part in re.split(r"[,;]", raw):
        if not part.strip():
            continue
        name, sep, header = part.partition("=")
        name = name.strip()
        if not sep or name not in FIELDS:
            raise Unreadable(f"mapping: {part.strip()!r} is not field=Header with a field among "
                             f"{', '.join(FIELDS)}")
        mapping[name] = header.strip()
    return mapping


# ---- values -----------------------------------------------------------------------------------


def _excel_serial(number: float) -> date:
    return date(1899, 12, 30) + timedelta(days=int(number))


_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?$")
_NUMERIC = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})$")
_DAY_MONTH = re.compile(r"^(\d{1,2})(?:st|nd|rd|th)?[\s\-]+([a-z]{3,9})\.?,?[\s\-]+(\d{4})$")
_MONTH_DAY = re.compile(r"^([a-z]{3,9})\.?[\s\-]+(\d{1,2})(?:st|nd|rd|th)?,?[\s\-]+(\d{4})$")


def day_order(values: list) -> str | None:
    """"dmy" or "mdy" when some numeric date in the column settles it (14/03 or 03/14)."""
    for value in values:
        match = _NUMERIC.match(_cell_text(value)) if not isinstance(value, (date, int, float)) else None
        if match:
            first, second = int(match.group(1)), int(match.group(2))
            if first > 12 >= second:
                return "dmy"
            if second > 12 >= first:
                return "mdy"
    return None


def parse_date(value, order: str | None) -> date | None:
    """A date from a cell, or None for an empty cell; ValueError (plain words) otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 20_000 <= value <= 80_000:  # an Excel day number (1954..2119)
            return _excel_serial(value)
        raise ValueError(f"{_cell_text(value)!r} is not a date")
    text = _cell_text(value).lower()
    if not text:
        return None
    try:
        if match := _ISO.match(text):
            return date(*map(int, match.groups()))
        if match := _NUMERIC.match(text):
            return _numeric_date(*match.groups(), order=order)
        if (match := _DAY_MONTH.match(text)) or (match := _MONTH_DAY.match(text)):
            parts = match.groups()
            day, month = (parts[0], parts[1]) if match.re is _DAY_MONTH else (parts[1], parts[0])
            if month[:3] not in MONTHS:
                raise ValueError
            return date(int(parts[2]), MONTHS[month[:3]], int(day))
        if re.fullmatch(r"\d{5}(\.0+)?", text):
            return parse_date(float(text), order)
    except ValueError as exc:
        if str(exc).startswith("could be"):
            raise
        raise ValueError(f"{_cell_text(value)!r} is not a date") from None
    raise ValueError(f"{_cell_text(value)!r} is not a date we can read (write it like 2027-03-14)")


def _numeric_date(a: str, b: str, y: str, order: str | None) -> date:
    first, second, year = int(a), int(b), int(y)
    year += 2000 if year < 100 else 0
    if first > 12:
        return date(year, second, first)
    if second > 12:
        return date(year, first, second)
    if first == second:
        return date(year, first, second)
    if order == "dmy":
        return date(year, second, first)
    if order == "mdy":
        return date(year, first, second)
    as_dmy, as_mdy = date(year, second, first), date(year, first, second)
    raise ValueError(f"could be {as_dmy:%-d %B %Y} or {as_mdy:%-d %B %Y}; write it like "
                     f"{as_mdy.isoformat()}")


def _unquote(text: str) -> str:
    """Undo export's formula guard (a leading apostrophe before = + - @)."""
    if text.startswith("'") and text[1:].startswith(FORMULA_START + ("'",)):
        return text[1:]
    return text


# ---- preview -----------------------------------------------------------------------------------


@dataclass
class Row:
    """One spreadsheet row as it will be imported, with its problems in plain words."""

    row: int  # the row number the spreadsheet shows (1-based)
    stage: str
    title: str
    values: dict = field(default_factory=dict)  # MilestoneIn fields, once checked
    problems: list[str] = field(default_factory=list)
    # [{"title", "days", "after"}] as the file says; `refs` what each names once resolved
    # (preview): ("row", another Row of the file) or ("plan", a milestone id)
    depends_on: list[dict] = field(default_factory=list)
    refs: list[tuple[str, object]] = field(default_factory=list)

    def document(self) -> dict:
        v = self.values
        return {"row": self.row, "stage": self.stage, "title": self.title,
                "owners": v.get("owners", []), "owner_side": v.get("owner_side"),
                "due_date": v.get("due_date"), "status": v.get("status"), "risk": v.get("risk"),
                "description": v.get("description", ""), "internal": v.get("internal", False),
                "depends_on": self.depends_on, "valid": not self.problems, "problems": self.problems}


@dataclass
class Preview:
    headers: list[str]
    mapping: dict[str, str]
    rows: list[Row]
    problems: list[dict]  # {"row": n | None, "message": ...}, every row's problems listed

    @property
    def valid_rows(self) -> list[Row]:
        return [r for r in self.rows if not r.problems]

    def document(self) -> dict:
        return {"headers": self.headers, "mapping": self.mapping,
                "rows": [r.document() for r in self.rows], "problems": self.problems}


def preview(table: list[list], mapping: dict[str, str] | None = None,
            plan: Plan | None = None) -> Preview:
    """Parse and check a table against `plan` (None: a new, empty plan); writes nothing."""
    if not table:
        raise Unreadable("the file is empty")
    head = _header_row(table)
    headers = [_cell_text(v) for v in table[head]]
    guessed = guess_mapping(headers)
    mapping = {**guessed, **(mapping or {})}
    mapping = {k: mapping[k] for k in FIELDS if mapping.get(k)}
    problems: list[dict] = []
    for name, header in mapping.items():
        if header not in headers:
            problems.append({"row": None, "message": f"There is no column {header!r} for {name}."})
    if "title" not in mapping:
        problems.append({"row": None, "message": "No column holds the milestone titles: map one "
                         "(e.g. title=Milestone)."})
    index = {name: headers.index(h) for name, h in mapping.items() if h in headers}
    body = table[head + 1:]
    date_col = index.get("due_date")
    order = day_order([r[date_col] for r in body if date_col is not None and date_col < len(r)])
    rows = _rows(body, head, index, order)
    _check_dependencies(rows, plan)
    _check_limits(rows, plan)
    for r in rows:
        problems += [{"row": r.row, "message": p} for p in r.problems]
    if not rows and "title" in mapping:
        problems.append({"row": None, "message": "The file has no milestone rows."})
    return Preview(headers, mapping, rows, problems)


def _rows(body: list[list], head: int, index: dict[str, int], order: str | None) -> list[Row]:
    """Rows to import. Without a stage column, a row holding only its first cell is a
    section heading ("Phase 1: Discovery") naming the stage of the rows below it."""
    rows, stage = [], DEFAULT_STAGE
    section_headings = "stage" not in index
    for n, raw in enumerate(body, start=head + 2):
        cells = {name: (raw[i] if i < len(raw) else None) for name, i in index.items()}
        if not any(_cell_text(v) for v in raw):
            continue
        filled = [i for i, v in enumerate(raw) if _cell_text(v)]
        if section_headings and filled == [0] and index.get("title") not in (None,) and \
                len(index) > 1:
            stage = _cell_text(raw[0])[:120]
            continue
        rows.append(_row(n, cells, stage, order))
    return rows


def _row(n: int, cells: dict, default_stage: str, order: str | None) -> Row:
    text = {name: _unquote(_cell_text(v)) for name, v in cells.items()}
    stage = text.get("stage") or default_stage
    row = Row(n, stage, text.get("title", ""))
    problems, values = row.problems, {}
    if "stage" in cells and not text.get("stage") and not text.get("title"):
        row.stage = default_stage
    for name, words, what, hint in (
            ("status", STATUS_WORDS, "status", "Not started, In progress or Done"),
            ("risk", RISK_WORDS, "risk", "On track, At risk or Off track"),
            ("owner_side", SIDE_WORDS, "owner side", "Seller, Buyer or Both")):
        found = _lookup(words, text.get(name, ""))
        if found is None:
            problems.append(f"Unknown {what} {text[name]!r}: use {hint}.")
        values[name] = found or next(iter(words))
    internal = _norm(text.get("internal", ""))
    if internal not in YES | NO:
        problems.append(f"Internal must be yes or no, not {text['internal']!r}.")
    values["internal"] = internal in YES
    try:
        values["due_date"] = parse_date(cells.get("due_date"), order)
    except ValueError as exc:
        problems.append(f"Due date: {exc}.")
    values["owners"] = _owners(text.get("owner_name", ""), text.get("owner_email", ""))
    values["description"] = text.get("notes", "")
    row.depends_on = _dependencies(text.get("depends_on", ""), text.get("days_after", ""), problems)
    if not row.title:
        if any(v for k, v in text.items() if k != "stage"):
            problems.append("The title is empty.")
        return row  # a stage without milestones (export writes these), or a problem
    _validate(row, values)
    return row


_DAYS = re.compile(r"^(-?\d{1,4})(?:\s*days?)?(?:\s*after)?(?:\s*(done|due)(?:\s*date)?)?$")


def _dependencies(titles: str, days: str, problems: list[str]) -> list[dict]:
    """The "Depends on" and "Days after" cells as [{"title", "days", "after"}]."""
    names = [n.strip() for n in titles.split(";") if n.strip()] if titles else []
    if not names:
        if days.strip():
            problems.append("Days after: name the milestones it counts from in Depends on.")
        return []
    parts = [p.strip().lower() for p in days.split(";")] if days.strip() else ["0"]
    if len(parts) == 1:
        parts *= len(names)
    if len(parts) != len(names):
        problems.append(f"Days after: {len(parts)} values for {len(names)} milestones in Depends "
                        "on; give one number for all, or one per milestone.")
        return []
    out = []
    for name, part in zip(names, parts, strict=True):
        match = _DAYS.match(part)
        if not match or abs(int(match.group(1))) > 3650:
            problems.append(f"Days after: {part!r} is not a number of days (e.g. 3, or "
                            "3 after due to count from its due date).")
            return []
        out.append({"title": name[:200], "days": int(match.group(1)), "after": match.group(2) or "done"})
    return out


def _check_dependencies(rows: list[Row], plan: Plan | None) -> None:
    """Resolve each prerequisite title: the nearest row above with that title (case-blind),
    else the nearest below, else a milestone of the plan; unknown titles, a row naming
    itself, cycles, and prerequisites on rows with problems are problems of the row."""
    by_title: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r.title:
            by_title.setdefault(r.title.casefold(), []).append(i)
    existing = {m.title.casefold(): m.id for m in (plan.milestones if plan is not None else [])}
    for i, r in enumerate(rows):
        for d in r.depends_on:
            found = by_title.get(d["title"].casefold(), [])
            above = [j for j in found if j < i]
            below = [j for j in found if j > i]
            if above or below:
                r.refs.append(("row", rows[above[-1] if above else below[0]]))
            elif d["title"].casefold() in existing:
                r.refs.append(("plan", existing[d["title"].casefold()]))
            elif found == [i]:
                r.problems.append(f"Depends on: a milestone cannot depend on itself ({d['title']!r}).")
            else:
                r.problems.append(f"Depends on: there is no milestone {d['title']!r} in the file "
                                  "or the plan.")
    circle = _rows_in_cycles(rows)
    for r in circle:
        r.problems.append("Depends on: these rows wait on each other in a circle (rows "
                          + ", ".join(str(x.row) for x in circle) + ").")
    changed = True
    while changed:  # a row waiting on a row that will not be imported cannot be imported either
        changed = False
        for r in rows:
            bad = [ref.row for kind, ref in r.refs if kind == "row" and ref.problems]
            if bad and not r.problems:
                r.problems.append(f"Depends on: row {bad[0]} has problems; correct it first.")
                changed = True


def _rows_in_cycles(rows: list[Row]) -> list[Row]:
    """Rows on a dependency cycle among the file's rows (what is left after Kahn's order)."""
    index = {id(r): i for i, r in enumerate(rows)}
    waiting = {i: sum(1 for kind, _ in r.refs if kind == "row") for i, r in enumerate(rows)}
    followers: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        for kind, ref in r.refs:
            if kind == "row":
                followers.setdefault(index[id(ref)], []).append(i)
    queue = [i for i, n in waiting.items() if n == 0]
    while queue:
        for f in followers.get(queue.pop(), []):
            waiting[f] -= 1
            if waiting[f] == 0:
                queue.append(f)
    return [rows[i] for i, n in waiting.items() if n > 0]


def _owners(names: str, emails: str) -> list[dict]:
    names_l = [n.strip() for n in names.split(";")] if names else []
    emails_l = [e.strip() for e in emails.split(";")] if emails else []
    count = max(len(names_l), len(emails_l))
    names_l += [""] * (count - len(names_l))
    emails_l += [""] * (count - len(emails_l))
    return [{"name": n, "email": e} for n, e in zip(names_l, emails_l, strict=True) if n or e]


_FIELD_WORDS = {"title": "Title", "description": "Notes", "owners": "Owner", "due_date": "Due date"}


def _validate(row: Row, values: dict) -> None:
    """The same checks as the API's (schemas.MilestoneIn, StageIn), said in plain words."""
    if row.problems:
        row.values = values
        return
    try:
        StageIn.model_validate({"name": row.stage})
        checked = MilestoneIn.model_validate({"stage_id": "-", "title": row.title, **values})
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = [str(p) for p in err["loc"]]
            what = "Stage" if not loc or loc[0] == "name" else _FIELD_WORDS.get(loc[0], loc[0])
            row.problems.append(f"{what}: {err['msg']}.")
        row.values = values
        return
    row.title = checked.title
    row.values = checked.model_dump(exclude={"stage_id", "position", "title"})


def _check_limits(rows: list[Row], plan: Plan | None) -> None:
    """Rows past the per-plan limits (plans.LIMITS) get a problem each."""
    max_milestones = plans.LIMITS["milestones_per_plan"][0]
    max_stages = plans.LIMITS["stages_per_plan"][0]
    stages = {s.name.casefold() for s in plan.stages} if plan is not None else set()
    count = sum(len(s.milestones) for s in plan.stages) if plan is not None else 0
    for r in rows:
        key = r.stage.casefold()
        if key not in stages and len(stages) >= max_stages:
            r.problems.append(f"Stage {r.stage!r} would be stage {len(stages) + 1}; a plan holds "
                              f"at most {max_stages} stages.")
            continue
        if r.title and not r.problems:
            if count >= max_milestones:
                r.problems.append(f"This would be milestone {count + 1}; a plan holds at most "
                                  f"{max_milestones} milestones.")
                continue
            count += 1
        if not r.problems:
            stages.add(key)


# ---- writing -----------------------------------------------------------------------------------


def import_rows(s: Session, plan: Plan, rows: list[Row], actor: str) -> int:
    """Append `rows` (checked by `preview`) to `plan`: stages matched by name (case-blind),
    new ones added after the plan's own. One activity entry; returns the milestones added."""
    stages = {st.name.casefold(): st for st in plan.stages}
    order = sorted(plan.stages, key=lambda st: st.position)
    now, added, made = clock.now(), 0, {}
    for r in rows:
        stage = stages.get(r.stage.casefold())
        if stage is None:
            stage = Stage(tenant_id=plan.tenant_id, plan=plan, name=r.stage, position=len(order))
            order.append(stage)
            stages[r.stage.casefold()] = stage
            s.add(stage)
        if not r.title:
            continue
        m = Milestone(tenant_id=plan.tenant_id, plan=plan, stage=stage,
                      position=len(stage.milestones), title=r.title, **r.values)
        if m.status == "done":
            m.completed_at, m.completed_by = now, actor
        s.add(m)
        made[id(r)] = m
        added += 1
    plans.check_limit("stages_per_plan", len(order))
    plans.check_limit("milestones_per_plan", sum(len(st.milestones) for st in order))
    s.flush()
    _link_dependencies(s, plan, rows, made, actor)
    plans.touch(s, plan, actor, "plan.imported", plan.id,
                {"milestones": added, "rows": len(rows)})
    return added


def _link_dependencies(s: Session, plan: Plan, rows: list[Row], made: dict, actor: str) -> None:
    """The imported rows' prerequisites, by id now that every row has one; a dependent the
    file gives no date gets the one its prerequisites give (the file's dates stand)."""
    from . import dependencies

    undated, existing = set(), {x.id: x for x in plan.milestones}
    for r in rows:
        m = made.get(id(r))
        if m is None or not r.refs:
            continue
        deps = []
        for d, (kind, ref) in zip(r.depends_on, r.refs, strict=True):
            target = made.get(id(ref)) if kind == "row" else existing.get(ref)
            if target is not None and target is not m:
                deps.append({"milestone_id": target.id, "days": d["days"], "after": d["after"]})
        m.depends_on = deps
        if m.due_date is None and deps:
            undated.add(m.id)
    if undated:
        s.flush()
        dependencies.recalculate(s, plan, actor, undated, include_roots=True)


__all__ = ["COLUMNS", "CSV_TYPE", "FIRST_DAY", "LAST_DAY", "XLSX_TYPE", "Preview", "Row",
           "Unreadable", "export_rows", "guess_mapping", "import_rows", "parse_mapping",
           "preview", "read_table", "to_csv", "to_xlsx"]
