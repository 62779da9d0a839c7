"""Contract checks against HubSpot's published OpenAPI specs."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("sandboxes.hubspot")


# --------------------------------------------------------------------------------------------
# contract checks against HubSpot's published OpenAPI specs

# Files in the order they are preferred when two specs describe the same path template.
_SPEC_FILES = (
    "CRM/Deals/Rollouts/424/v3/deals.json",
    "CRM/Objects/Rollouts/424/v3/objects.json",
    "CRM/Custom Objects/Rollouts/424/v3/customObjects.json",
    "CRM/Schemas/Rollouts/145900/v3/schemas.json",
    "CRM/Properties/Rollouts/145899/v3/properties.json",
    "CRM/Associations/Rollouts/130902/v4/associations.json",
    "CRM/Associations Schema/Rollouts/50914/v4/associationsSchema.json",
    "CRM/Pipelines/Rollouts/145896/v3/pipelines.json",
    "Auth/Oauth/Rollouts/155908/v1/oauth.json",
    "Auth/Oauth/Rollouts/279897/v3/oauth.json",
    "Auth/Oauth/Rollouts/279897/2026-03/oauth.json",
    "Webhooks/Webhooks/Rollouts/147891/v3/webhooks.json",
    "CRM/App Uninstalls/Rollouts/209039/v3/appUninstalls.json",
    "CRM/Timeline/Rollouts/147898/v3/timeline.json",
)


def default_specs_dir() -> Path:
    """$HUBSPOT_SPECS_DIR, else the copy in this project (sandboxes/specs/hubspot, see SOURCE.md)."""
    env = os.environ.get("HUBSPOT_SPECS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "specs" / "hubspot"


_SPEC_CACHE: dict[tuple[str, float], dict] = {}
_WARNED: set[str] = set()  # "contract checks are off" is logged once per reason per process
_VALIDATORS: dict[tuple[int, str], Any] = {}  # keyed by id() of a schema inside a cached spec
_VALIDATORS_LOCK = threading.Lock()


def _load_spec(path: Path) -> dict | None:
    """Parsed spec file, cached per (path, mtime) so many sandboxes in one process share it."""
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError:
        return None
    if key not in _SPEC_CACHE:
        # Used exactly as published: no relaxations. (An earlier copy accepted object `sorts`;
        # HubSpot's spec and SDKs type `sorts` as strings, see objects.ObjectHandlers.)
        _SPEC_CACHE[key] = json.loads(path.read_text(encoding="utf-8"))
    return _SPEC_CACHE[key]


class ContractViolation(Exception):
    """A request or response that does not match HubSpot's published OpenAPI operation."""


class SpecsMissing(RuntimeError):
    """contract="strict" without the specs (or jsonschema): checks would pass vacuously."""


@dataclass
class _Operation:
    method: str
    template: str
    regex: re.Pattern
    literal_segments: int
    spec_file: str
    spec: dict
    op: dict


class ContractChecker:
    """Matches (method, path) to a spec operation and validates bodies with jsonschema."""

    def __init__(self, specs_dir: Path | str | None = None) -> None:
        self.specs_dir = Path(specs_dir) if specs_dir else default_specs_dir()
        self.enabled = False
        self.reason = ""
        self._ops: list[_Operation] = []
        try:
            import jsonschema  # noqa: F401
        except ImportError:
            self.reason = "jsonschema is not installed"
            return
        root = self.specs_dir / "PublicApiSpecs"
        if not root.is_dir():
            self.reason = f"spec directory not found: {root}"
            return
        for rel in _SPEC_FILES:
            spec = _load_spec(root / rel)
            if spec is None:
                continue
            for template, item in spec.get("paths", {}).items():
                for method, op in item.items():
                    if method not in ("get", "post", "put", "patch", "delete"):
                        continue
                    parts = template.strip("/").split("/")
                    pattern = "/".join(
                        "[^/]+" if p.startswith("{") else re.escape(p) for p in parts
                    )
                    self._ops.append(
                        _Operation(
                            method.upper(),
                            template,
                            re.compile("^/" + pattern + "$"),
                            sum(not p.startswith("{") for p in parts),
                            rel,
                            spec,
                            op,
                        )
                    )
        if not self._ops:
            self.reason = f"no spec files under {root}"
            return
        self.enabled = True

    def find(self, method: str, path: str) -> _Operation | None:
        if path.startswith("/crm/v3/schemas"):
            path = "/crm-object-schemas/v3/schemas" + path[len("/crm/v3/schemas") :]
        matches = [o for o in self._ops if o.method == method and o.regex.match(path)]
        if not matches:
            return None
        best = max(o.literal_segments for o in matches)
        matches = [o for o in matches if o.literal_segments == best]
        parts = path.strip("/").split("/")
        if (
            len(parts) > 3
            and parts[:3] == ["crm", "v3", "objects"]
            and (parts[3].startswith("2-") or re.match(r"p\d*_", parts[3]))
        ):
            custom = [o for o in matches if "Custom Objects" in o.spec_file]
            if custom:
                return custom[0]
        return matches[0]

    def _validator(self, operation: _Operation, where: str, schema: dict):
        key = (id(schema), where)
        with _VALIDATORS_LOCK:
            v = _VALIDATORS.get(key)
            if v is None:
                import jsonschema

                root = {"allOf": [schema], "components": operation.spec.get("components", {})}
                checker = jsonschema.FormatChecker(formats=())
                checker.checks("date-time")(_is_datetime)
                v = jsonschema.Draft7Validator(root, format_checker=checker)
                _VALIDATORS[key] = v
            return v

    def _errors(self, operation: _Operation, where: str, schema: dict, instance: Any) -> list[str]:
        v = self._validator(operation, where, schema)
        out = []
        for e in sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path))[:5]:
            loc = "/".join(str(p) for p in e.absolute_path) or "(root)"
            out.append(f"{loc}: {e.message[:300]}")
        return out

    def check_request(
        self, operation: _Operation, query: dict[str, list[str]], content_type: str, body: bytes
    ) -> list[str]:
        problems: list[str] = []
        for p in operation.op.get("parameters", []):
            if p.get("in") == "query":
                vals = query.get(p["name"])
                if p.get("required") and not vals:
                    problems.append(f"query parameter {p['name']!r} is required")
                enum = p.get("schema", {}).get("enum")
                if vals and enum:
                    for val in vals:
                        for item in val.split(","):
                            if item not in enum:
                                problems.append(f"query {p['name']}={item!r} not in {enum}")
        rb = operation.op.get("requestBody")
        if not rb:
            return problems
        content = rb.get("content", {})
        ctype = (content_type or "").split(";")[0].strip().lower()
        if not body:
            if rb.get("required"):
                problems.append("request body is required")
            return problems
        if ctype == "application/json" and "application/json" in content:
            try:
                instance = json.loads(body)
            except ValueError as e:
                return problems + [f"request body is not JSON: {e}"]
            schema = content["application/json"].get("schema", {})
            problems += [f"request {m}" for m in self._errors(operation, "req", schema, instance)]
        elif ctype == "application/x-www-form-urlencoded" and ctype in content:
            form = {
                k: v[-1]
                for k, v in urllib.parse.parse_qs(
                    body.decode("utf-8"), keep_blank_values=True
                ).items()
            }
            schema = content[ctype].get("schema", {})
            problems += [f"request form {m}" for m in self._errors(operation, "req", schema, form)]
        else:
            problems.append(f"request content type {ctype!r} not in {sorted(content)}")
        return problems

    def check_response(
        self, operation: _Operation, status: int, content_type: str, body: bytes
    ) -> list[str]:
        responses = operation.op.get("responses", {})
        resp = responses.get(str(status)) or responses.get("default")
        documents_success = any(k.startswith("2") for k in responses)
        if not documents_success and 200 <= status < 300 and not body:
            # e.g. POST /oauth/2026-03/token/revoke: the spec lists only the error response
            # ("default"), so it documents no success body; an empty 2xx is within it.
            return []
        if resp is None:
            return [f"response status {status} not in {sorted(responses)}"]
        if "$ref" in resp:
            name = resp["$ref"].rsplit("/", 1)[-1]
            resp = operation.spec.get("components", {}).get("responses", {}).get(name, {})
        content = resp.get("content") or {}
        if not content:
            return [] if not body else [f"response {status} must have no body"]
        media = content.get("application/json") or content.get("*/*")
        if media is None:
            return []
        ctype = (content_type or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return [f"response {status} content type {ctype!r} is not application/json"]
        try:
            instance = json.loads(body or b"null")
        except ValueError as e:
            return [f"response body is not JSON: {e}"]
        schema = media.get("schema", {})
        return [f"response {status} {m}" for m in self._errors(operation, "resp", schema, instance)]


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        _dt.datetime.fromisoformat(value)
        return True
    except ValueError:
        return False

