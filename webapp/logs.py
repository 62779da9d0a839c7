"""Structured (JSON) logs, each line carrying the request id.

The request id comes from X-Request-ID when a proxy sets one (so a request can
be followed across services), otherwise it is made here; either way it is
sent back in the response header.

No secrets in logs (DESIGN §7): the access log names the route rule
(`/p/<token>`), never the path that carries a buyer token, an editor link or
an OAuth code, and never the query string. A request that matched no route
(a 404, a 405) logs its first path segment only. As a second line of defence a
filter scrubs anything that looks like a link token, an API key or an OAuth
`code=`/`state=` value from every record of the `mutualplan` loggers,
tracebacks included.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

from flask import Flask, g, has_request_context, request

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

# What a secret looks like when it leaks into a message: itsdangerous tokens
# (editor links and sessions: three dot-separated base64url parts), long
# base64url/hex runs (buyer link tokens, API keys, OAuth tokens), and OAuth
# query parameters. UUIDs (row ids) are 36 characters with dashes and kept.
_SCRUB = [
    (re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{16,}"), "[redacted]"),
    (re.compile(r"((?:code|state|token|access_token|refresh_token|client_secret)=)[^&\s'\"]+",
                re.IGNORECASE), r"\1[redacted]"),
    (re.compile(r"(/p/|/editor/open/)[^/\s'\"?]+"), r"\1[redacted]"),
    (re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{40,}"), "[redacted]"),
]


def scrub(text: str) -> str:
    """`text` with anything token-shaped replaced by [redacted]."""
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    return text


def route_of(req) -> str:
    """What the access log names: the route rule, or a redacted path when none matched."""
    rule = getattr(req, "url_rule", None)
    if rule is not None:
        return rule.rule
    first = req.path.lstrip("/").split("/", 1)[0]
    if not first:
        return "/"
    return f"/{first}/[unmatched]" if _SAFE_SEGMENT.match(first) else "/[unmatched]"


class RedactingFilter(logging.Filter):
    """Rewrites a record's message and traceback with `scrub` before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if has_request_context() and "request_id" in g:
            entry["request_id"] = g.request_id
        for key in ("method", "path", "status", "ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_text or record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (test capture, gunicorn's redirect)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def init_app(app: Flask) -> None:
    handler = StderrHandler()
    handler.addFilter(RedactingFilter())
    if app.config.get("LOG_FORMAT") == "json":
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger("mutualplan")
    root.handlers[:] = [handler]
    root.setLevel(app.config.get("LOG_LEVEL", "INFO"))
    root.propagate = False
    app.logger.handlers[:] = [handler]
    app.logger.setLevel(app.config.get("LOG_LEVEL", "INFO"))
    access = logging.getLogger("mutualplan.access")
    # The development server's own request line (`make run`) carries the raw path.
    werkzeug_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactingFilter) for f in werkzeug_log.filters):
        werkzeug_log.addFilter(RedactingFilter())

    @app.before_request
    def _start():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        ms = round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1)
        access.info("request", extra={"method": request.method, "path": route_of(request),
                                      "status": response.status_code, "ms": ms})
        return response
