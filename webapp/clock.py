"""The one clock. Every "now" and "today" in the app comes from here.

`now()` is always an aware UTC datetime. Tests move time with the `CLOCK`
config value (a callable returning an aware datetime) and freeze the date with
`TODAY` (a callable returning a date); outside an app context (CLI scripts,
benchmarks) the system clock is used.
"""
from __future__ import annotations

from datetime import UTC, date, datetime

from flask import current_app, has_app_context


def now() -> datetime:
    if has_app_context():
        clock = current_app.config.get("CLOCK")
        if clock is not None:
            return clock()
    return datetime.now(UTC)


def today() -> date:
    if has_app_context():
        frozen = current_app.config.get("TODAY")
        if frozen is not None:
            return frozen()
    return now().date()


def aware(value: datetime | None) -> datetime | None:
    """A datetime read back without its zone (SQLite) is UTC; None stays None."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
