"""The error taxonomy: all that code above a connector knows about CRM failures.

Each connector turns its SDK's exceptions into one of these, in one place, so
the sync engine decides retry / defer / park / dead-letter without knowing
which CRM it talks to.
"""
from __future__ import annotations


class CrmError(Exception):
    """Base class. `detail` is a human sentence safe to show an admin."""

    def __init__(self, detail: str = "", *, status: int | None = None):
        super().__init__(detail or self.__class__.__name__)
        self.detail = detail or self.__class__.__name__
        self.status = status


class Transient(CrmError):
    """5xx, timeouts, connection resets, lock contention: retry with backoff."""


class RateLimited(CrmError):
    """Throttled. Not a failure: defer by `retry_after` seconds.

    scope "burst" (per-second/10-second windows) clears in seconds; "daily"
    (e.g. Salesforce REQUEST_LIMIT_EXCEEDED) is rescheduled, never waited out
    inside a request.
    """

    def __init__(self, detail: str = "", *, retry_after: float = 1.0, scope: str = "burst",
                 status: int | None = 429):
        super().__init__(detail, status=status)
        self.retry_after = retry_after
        self.scope = scope


class AuthExpired(CrmError):
    """The access token expired or was revoked: refresh and replay once."""


class NeedsReauth(CrmError):
    """Refreshing failed for good (invalid_grant, app uninstalled): a human must reconnect."""


class NotFound(CrmError):
    """The record (deal, object) does not exist in the CRM any more."""


class Rejected(CrmError):
    """The CRM refused the request as invalid; retrying the same thing cannot succeed."""
