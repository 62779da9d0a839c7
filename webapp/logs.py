"""Structured (JSON) logs, each line carrying the request id.

The request id comes from X-Request-ID when a proxy sets one (so a request can
be followed across services), otherwise it is made here; either way it is
sent back in the response header.
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
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
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
    if app.config.get("LOG_FORMAT") == "json":
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger("mutualplan")
    root.handlers[:] = [handler]
    root.setLevel(app.config.get("LOG_LEVEL", "INFO"))
    root.propagate = False
    app.logger.handlers[:] = [handler]
    app.logger.setLevel(app.config.get("LOG_LEVEL", "INFO"))
    access = logging.getLogger("mutualplan.access")

    @app.before_request
    def _start():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        ms = round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1)
        access.info("request", extra={"method": request.method, "path": request.path,
                                      "status": response.status_code, "ms": ms})
        return response
