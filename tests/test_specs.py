"""The HubSpot OpenAPI specs copied into sandboxes/specs/hubspot are HubSpot's, byte for byte:
every file listed in SOURCE.md is there with the sha256 written next to it, and every file the
sandbox reads is listed (so a missing or edited spec fails here, not silently in a contract test)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from sandboxes.hubspot.contract import _SPEC_FILES

SPECS = Path(__file__).resolve().parents[1] / "sandboxes" / "specs" / "hubspot"
ROW = re.compile(r"^\| `(PublicApiSpecs/[^`]+)` \| `([0-9a-f]{40})` \| `([0-9a-f]{64})` \|$")


def _rows() -> dict[str, str]:
    rows = {}
    for line in (SPECS / "SOURCE.md").read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = m.group(3)
    return rows


def test_every_copied_spec_matches_its_checksum():
    rows = _rows()
    assert len(rows) >= len(_SPEC_FILES)
    for rel, sha in rows.items():
        path = SPECS / rel
        assert path.is_file(), f"missing spec {rel}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, f"{rel} is not HubSpot's file"


def test_every_spec_the_sandbox_reads_is_listed_with_its_source():
    rows = _rows()
    assert [rel for rel in _SPEC_FILES if f"PublicApiSpecs/{rel}" not in rows] == []
    text = (SPECS / "SOURCE.md").read_text(encoding="utf-8")
    assert "github.com/HubSpot/HubSpot-public-api-spec-collection" in text
    assert re.search(r"Snapshot commit: `[0-9a-f]{40}`", text)


def test_no_unlisted_file_hides_among_the_specs():
    listed = {SPECS / rel for rel in _rows()}
    present = {p for p in (SPECS / "PublicApiSpecs").rglob("*") if p.is_file()}
    assert present == listed
