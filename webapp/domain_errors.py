"""What the domain (plans.py, sharing.py) says when it refuses a command.

Plain exceptions, no HTTP: errors.py maps each one to a problem document, the
buyer page and the editor to a sentence on the page. The web layer raises them
too where they mean the same thing (an unknown id, a bad field).
"""
from __future__ import annotations


class DomainError(Exception):
    """A refused command; `detail` is a sentence for the person who asked."""

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    """No such row for this tenant (cross-tenant ids look the same)."""


class Conflict(DomainError):
    """The command contradicts the current state (e.g. a second plan for a deal)."""


class Invalid(DomainError):
    """One field's value is refused."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class VersionConflict(DomainError):
    """Optimistic locking: the caller edited an older version than the current one."""

    def __init__(self, expected: int, current_version: int):
        super().__init__(f"You edited version {expected} but the current version is "
                         f"{current_version}; reload and apply your change again.",
                         current_version=current_version)
        self.expected, self.current_version = expected, current_version


class LimitReached(DomainError):
    """A per-plan count limit (plans.LIMITS): `limit` names it, `max` is its value."""

    def __init__(self, limit: str, maximum: int, what: str):
        super().__init__(f"A plan holds at most {maximum} {what}; this one is full.",
                         limit=limit, max=maximum)
        self.limit, self.max = limit, maximum
