"""Errors as RFC 9457 problem documents (application/problem+json).

The domain raises domain errors (domain_errors.py), which `DOMAIN_PROBLEMS`
maps to HTTP; the web layer raises `ProblemError`s, which carry their own
status. The API renders both the same way. People (buyer page, editor, OAuth
callbacks) get a friendly HTML page instead of JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask, g, jsonify, render_template, request
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from connector.errors import CrmError, NeedsReauth, RateLimited

from .domain_errors import (
    Conflict,
    DomainError,
    Invalid,
    LimitReached,
    NotFound,
    VersionConflict,
)

PROBLEM_BASE = "https://mutualplan.dev/problems/"

__all__ = [  # the domain errors are raised by the web layer too, under the same names
    "Conflict", "DomainError", "Invalid", "LimitReached", "NotFound", "PreconditionFailed", "Problem",
    "ProblemError", "Unauthorized", "VersionConflict", "describe", "problem", "register",
]


class ProblemError(Exception):
    """An HTTP-level refusal raised by the web layer (auth, media type, If-Match)."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, errors: list[dict] | None = None, **extra):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra


class PreconditionFailed(ProblemError):
    status, slug, title = 412, "stale-version", "Someone else changed this first"


class Unauthorized(ProblemError):
    status, slug, title = 401, "unauthorized", "Authentication required"


# status, slug, title of each domain error
DOMAIN_PROBLEMS: dict[type[DomainError], tuple[int, str, str]] = {
    NotFound: (404, "not-found", "Not found"),
    Conflict: (409, "conflict", "Conflict"),
    VersionConflict: (412, "stale-version", "Someone else changed this first"),
    Invalid: (422, "validation", "Some fields are not valid"),
    LimitReached: (422, "limit-reached", "A limit is reached"),
    DomainError: (400, "bad-request", "Bad request"),
}


@dataclass
class Problem:
    status: int
    slug: str
    title: str
    detail: str
    errors: list[dict] | None = None
    extra: dict = field(default_factory=dict)


def describe(exc: ProblemError | DomainError) -> Problem:
    """The problem document of a domain or web error."""
    if isinstance(exc, ProblemError):
        return Problem(exc.status, exc.slug, exc.title, exc.detail, exc.errors, exc.extra)
    kind = next(k for k in type(exc).__mro__ if k in DOMAIN_PROBLEMS)
    errors = [{"field": exc.field, "message": exc.message}] if isinstance(exc, Invalid) else None
    return Problem(*DOMAIN_PROBLEMS[kind], exc.detail, errors, exc.extra)


def problem(status: int, slug: str, title: str, detail: str, errors=None, **extra):
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def validation_problem(exc: ValidationError):
    errors = []
    for err in exc.errors(include_url=False):
        if err["type"] == "json_invalid":
            return problem(400, "malformed-json", "Malformed JSON",
                           "The request body is not valid JSON.")
        field = ".".join(str(p) for p in err["loc"]) or "(body)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "literal_error":
            message = f"must be one of {err.get('ctx', {}).get('expected', '')}"
        errors.append({"field": field, "message": message})
    if errors and errors[0]["field"] == "(body)" and len(errors) == 1:
        return problem(400, "bad-body", "The body must be a JSON object", errors[0]["message"])
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem(422, "validation", "Some fields are not valid", detail, errors)


def _wants_html() -> bool:
    path = request.path
    if path.startswith(("/api/", "/hubspot/", "/webhooks/", "/healthz")):
        return False
    return request.accept_mimetypes.accept_html


# The versioned rows a URL can address, most specific first: every 412 names the version
# now committed of the row its If-Match is about (README "Concurrency").
_VERSIONED_ARGS = ("milestone_id", "stakeholder_id", "stage_id", "plan_id")


def current_version() -> int | None:
    """The committed version of the row this request addresses, None when there is none (it
    was deleted meanwhile, or the URL names no versioned row). Read on a connection of its
    own: the request's transaction may be dead (StaleDataError) and is rolled back anyway."""
    from sqlalchemy import select

    from .db import database
    from .models import Milestone, Plan, Stage, Stakeholder

    models = {"milestone_id": Milestone, "stakeholder_id": Stakeholder, "stage_id": Stage,
              "plan_id": Plan}
    args = request.view_args or {}
    name = next((n for n in _VERSIONED_ARGS if isinstance(args.get(n), str)), None)
    if name is None:
        return None
    model = models[name]
    query = select(model.version).where(model.id == args[name][:64])
    tenant_id = _tenant_id()
    if tenant_id is not None:
        query = query.where(model.tenant_id == tenant_id)
    with database().engine.connect() as conn:
        return conn.scalar(query)


def _tenant_id() -> str | None:
    """The tenant the request acts for, as the auth decorators left it in `g`."""
    for holder in ("principal", "user", "hs_installation"):
        value = getattr(g, holder, None)
        if getattr(value, "tenant_id", None):
            return value.tenant_id
    return None


def register(app: Flask) -> None:
    @app.errorhandler(ProblemError)
    @app.errorhandler(DomainError)
    def _problem(exc: ProblemError | DomainError):
        p = describe(exc)
        if p.status == 412 and "current_version" not in p.extra:  # e.g. a malformed If-Match
            current = current_version()
            if current is not None:
                p.extra = {**p.extra, "current_version": current}
        if _wants_html():
            return render_template("error.html", title=p.title, detail=p.detail), p.status
        response = problem(p.status, p.slug, p.title, p.detail, p.errors, **p.extra)
        if p.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="mutualplan"'
        if p.status == 429 and "retry_after" in p.extra:
            response.headers["Retry-After"] = str(p.extra["retry_after"])
        return response

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        return validation_problem(exc)

    @app.errorhandler(StaleDataError)
    def _stale(exc):
        """An UPDATE or DELETE of a versioned row matched none: a concurrent writer changed
        or deleted it (or a sibling renumbered with it) after this request read it."""
        current = current_version()
        if current is None:
            if _wants_html():
                return render_template("error.html", title="Not found",
                                       detail="This record was deleted meanwhile."), 404
            return problem(404, "not-found", "Not found", "This record was deleted meanwhile.")
        if _wants_html():
            return render_template("error.html", title="Someone else changed this first",
                                   detail="Reload the page and apply your change again."), 412
        return problem(412, "stale-version", "Someone else changed this first",
                       "The record changed while this request was running; reload and apply "
                       "your change again.", current_version=current)

    @app.errorhandler(OperationalError)  # connection refused or lost, server shutting down, …
    @app.errorhandler(PoolTimeout)  # every connection of the pool busy for pool_timeout
    def _database_down(exc):
        return _unavailable(exc)

    @app.errorhandler(DBAPIError)
    def _database_error(exc: DBAPIError):
        if exc.connection_invalidated:  # the connection died under the statement
            return _unavailable(exc)
        return _unexpected(exc)

    def _unavailable(exc):
        """The database is unreachable: a 503 the client may retry, since nothing was saved."""
        app.logger.warning("database unavailable: %s", exc.__class__.__name__)
        if _wants_html():
            response = app.make_response((render_template(
                "error.html", title="Temporarily unavailable",
                detail="Please try again in a moment; nothing was saved."), 503))
        else:
            response = problem(503, "database-unavailable", "Temporarily unavailable",
                               "The database cannot be reached; nothing was saved. Try again "
                               "in a moment.")
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(CrmError)
    def _crm(exc: CrmError):
        if isinstance(exc, RateLimited):
            response = problem(503, "crm-rate-limited", "The CRM asks us to slow down", exc.detail)
            response.headers["Retry-After"] = str(max(1, int(exc.retry_after)))
            return response
        if isinstance(exc, NeedsReauth):
            return problem(409, "needs-reconnect", "The CRM connection needs to be reconnected", exc.detail)
        return problem(502, "crm-unavailable", "The CRM did not answer as expected", exc.detail)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if _wants_html():
            return render_template("error.html", title=exc.name, detail=exc.description), exc.code
        slug = exc.name.lower().replace(" ", "-")
        response = problem(exc.code, slug, exc.name, exc.description)
        for header in ("Allow", "Retry-After"):
            if exc.get_response().headers.get(header):
                response.headers[header] = exc.get_response().headers[header]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        app.logger.exception("unhandled error")
        if _wants_html():
            return render_template("error.html", title="Something went wrong",
                                   detail="Please try again in a moment."), 500
        return problem(500, "internal", "Internal server error",
                       "Something went wrong on our side; nothing was saved.")
