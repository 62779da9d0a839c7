"""The package boundaries of DESIGN §3 that a test can see."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The local-run wiring (make run) is the one place the app may start a sandbox.
ALLOWED = {"webapp/local.py"}


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_app_does_not_import_the_sandboxes():
    offenders = []
    for package in ("webapp", "connector"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ALLOWED:
                continue
            hits = sorted(m for m in _imported_modules(path)
                          if m == "sandboxes" or m.startswith("sandboxes."))
            if hits:
                offenders.append(f"{rel}: {', '.join(hits)}")
    assert not offenders, "only webapp/local.py may import sandboxes/:\n" + "\n".join(offenders)


def test_the_checker_sees_imports():
    """The walk above is not vacuous: it finds the one import it allows."""
    assert "sandboxes.salesforce" in _imported_modules(ROOT / "webapp" / "local.py")
    assert any((ROOT / "webapp").rglob("*.py")) and any((ROOT / "connector").rglob("*.py"))


def _files_mentioning(needle: str) -> list[str]:
    return sorted(path.relative_to(ROOT).as_posix()
                  for package in ("webapp", "connector") for path in (ROOT / package).rglob("*")
                  if path.is_file() and path.suffix in (".py", ".html", ".js", ".txt", ".json")
                  and needle in path.read_text(encoding="utf-8", errors="replace"))


def test_no_call_to_hubspot_oauth_v1_remains():
    """HubSpot removes /oauth/v1/ on 2027-02-16; the app uses the date-versioned endpoints."""
    assert _files_mentioning("/oauth/v1/") == []


def test_the_oauth_grep_sees_what_it_looks_for():
    """The walk above is not vacuous: it finds the endpoint the app does call."""
    assert "connector/hubspot.py" in _files_mentioning("/oauth/2026-03/token")
