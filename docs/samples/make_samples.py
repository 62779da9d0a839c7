"""Writes the sample spreadsheets in this folder: the usual layouts of hand-made mutual action
plans, which the importer (webapp/spreadsheets.py) reads without a mapping.

    .venv/bin/python docs/samples/make_samples.py
"""
from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font

HERE = Path(__file__).parent

PLAN = [  # stage, milestone, owner, side, due date, status, notes
    ("Discovery", "Discovery call", "Dana Seller", "Vendor", date(2027, 1, 12), "Done", ""),
    ("Discovery", "Share success criteria", "Chris Buyer", "Customer", date(2027, 1, 19), "Done", ""),
    ("Validation", "Technical deep dive", "Sam Engineer", "Joint", date(2027, 1, 28), "In progress",
     "Bring the integration team"),
    ("Validation", "Security review", "Priya Security", "Customer", date(2027, 2, 9), "Not started",
     "Questionnaire sent"),
    ("Validation", "Business case sign-off", "Chris Buyer", "Customer", date(2027, 2, 16),
     "Not started", ""),
    ("Final agreements", "Legal review", "Lee Counsel", "Customer", date(2027, 2, 23),
     "Not started", "Starts after the security review"),
    ("Final agreements", "Order form", "Dana Seller", "Vendor", date(2027, 3, 2), "Not started", ""),
    ("Final agreements", "Signature", "Chris Buyer", "Customer", date(2027, 3, 9), "Not started", ""),
    ("Implementation", "Kick-off", "Dana Seller", "Joint", date(2027, 3, 16), "Not started", ""),
    ("Implementation", "Go-live", "Sam Engineer", "Joint", date(2027, 4, 20), "Not started", ""),
]


def classic_xlsx() -> None:
    """A title line, a blank line, then Phase | Milestone | Owner | Due date | Status | Notes."""
    book = Workbook()
    sheet = book.active
    sheet.title = "Mutual action plan"
    sheet.append(["Mutual action plan — Acme Corp"])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([])
    sheet.append(["Phase", "Milestone", "Owner", "Due date", "Status", "Notes"])
    for stage, title, owner, _side, due, status, notes in PLAN:
        sheet.append([stage, title, owner, due, status, notes])
        sheet.cell(sheet.max_row, 4).number_format = "d mmm yyyy"
    book.save(HERE / "classic-phases.xlsx")


def sections_xlsx() -> None:
    """Section heading rows instead of a stage column; Task | Responsible | Team | Target date."""
    book = Workbook()
    sheet = book.active
    sheet.append(["Task", "Responsible", "Team", "Target date", "State"])
    current = None
    for stage, title, owner, side, due, status, _notes in PLAN:
        if stage != current:
            sheet.append([stage])
            current = stage
        sheet.append([title, owner, side, due, {"Done": "Complete"}.get(status, status)])
    book.save(HERE / "section-rows.xlsx")


def simple_csv() -> None:
    """Step, Owner, Email, Side, Date ("14 Mar 2027"), Status, Stage: a CSV from Google Sheets."""
    with open(HERE / "simple-us.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["Step", "Owner", "Email", "Side", "Date", "Status", "Stage"])
        for stage, title, owner, side, due, status, _notes in PLAN:
            email = owner.split()[0].lower() + "@example.com"
            out.writerow([title, owner, email, side, f"{due.month}/{due.day}/{due.year}", status,
                          stage])


def european_csv() -> None:
    """Semicolons and day/month/year dates, as Excel writes CSV in most of Europe."""
    with open(HERE / "european-semicolons.csv", "w", newline="", encoding="utf-8-sig") as f:
        out = csv.writer(f, delimiter=";")
        out.writerow(["Phase", "Action", "Owner", "Deadline", "Status", "Comments"])
        for stage, title, owner, _side, due, status, notes in PLAN:
            out.writerow([stage, title, owner, due.strftime("%d/%m/%Y"), status, notes])


if __name__ == "__main__":
    classic_xlsx()
    sections_xlsx()
    simple_csv()
    european_csv()
    print("wrote", ", ".join(sorted(p.name for p in HERE.iterdir() if p.suffix != ".py")))
