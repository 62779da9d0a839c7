"""Small helpers shared by the blueprints: bodies in, documents out, the clock."""
from __future__ import annotations

import re
from datetime import date

from flask import jsonify, request
from pydantic import BaseModel

from . import clock
from .errors import PreconditionFailed, ProblemError


class UnsupportedMediaType(ProblemError):
    status, slug, title = 415, "unsupported-media-type", "Send JSON"


def today() -> date:
    """Today in UTC (see clock.py; tests freeze it with the TODAY config value)."""
    return clock.today()


def json_body(model: type[BaseModel]):
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("This endpoint takes 'Content-Type: application/json'.")
    return model.model_validate_json(request.get_data() or b"", strict=True)


_ETAG = re.compile(r'^(?:W/)?"(\d+)"$')


def if_match_version() -> int | None:
    """The version named by If-Match, None when absent. '*' means any version."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    match = _ETAG.match(header.strip())
    if not match:
        raise PreconditionFailed("If-Match must be an ETag from a previous response, like \"3\".")
    return int(match.group(1))


def expected_version(body_version: int | None) -> int | None:
    """If-Match wins over a `version` field in the body; either may be absent."""
    header = if_match_version()
    return header if header is not None else body_version


def render(model: type[BaseModel], document: dict, status: int = 200, etag: int | None = None):
    response = jsonify(model.model_validate(document).model_dump(mode="json"))
    response.status_code = status
    if etag is not None:
        response.headers["ETag"] = f'"{etag}"'
    return response
