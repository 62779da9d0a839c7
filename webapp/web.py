"""Small helpers shared by the blueprints: bodies in, documents out, the clock, the
signing keys, rate limits."""
from __future__ import annotations

import logging
import re
import threading
import time
from datetime import date

from flask import current_app, jsonify, request
from pydantic import BaseModel

from . import clock, sharing
from .errors import Invalid, PreconditionFailed, ProblemError
from .schemas import MAX_VERSION

log = logging.getLogger("mutualplan.ratelimit")


class UnsupportedMediaType(ProblemError):
    status, slug, title = 415, "unsupported-media-type", "Send JSON"


def today() -> date:
    """Today in UTC (see clock.py; tests freeze it with the TODAY config value)."""
    return clock.today()


def keys() -> sharing.Keys:
    """The app's SECRET_KEY and PUBLIC_BASE_URL, for sharing.py's links and cookies."""
    return sharing.Keys.from_config(current_app.config)


def json_body(model: type[BaseModel]):
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("This endpoint takes 'Content-Type: application/json'.")
    return model.model_validate_json(request.get_data() or b"", strict=True)


# ASCII digits only (`\d` also matches other scripts' digits), and no more than a version can
# hold: an If-Match of 4,300 digits is a 412, not a 500 from int() or the database.
_ETAG = re.compile(r'^(?:W/)?"([0-9]{1,10})"$')


def strict_digits(raw: str | None, max_digits: int) -> int | None:
    """The value of 1..max_digits ASCII digits, else None.

    `str.isdigit()` accepts "²" and "٣", which int() then refuses or reads, and
    accepts 4,000 digits, which int() refuses; this accepts neither.
    """
    if raw is None or not 1 <= len(raw) <= max_digits or not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw)


def query_int(name: str, default: int, lo: int, hi: int) -> int:
    """A whole-number query parameter within lo..hi; anything else is a 422 naming it."""
    raw = request.args.get(name)
    if raw is None:
        return default
    value = strict_digits(raw, len(str(hi)))
    if value is None or not lo <= value <= hi:
        raise Invalid(name, f"must be a whole number from {lo} to {hi}")
    return value


def if_match_version() -> int | None:
    """The version named by If-Match, None when absent. '*' means any version."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    match = _ETAG.match(header.strip())
    if not match or int(match.group(1)) > MAX_VERSION:
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


# ---- rate limits ----------------------------------------------------------------------


class TooManyRequests(ProblemError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class RateLimiter:
    """Fixed-window counters: in memory by default, in Redis when REDIS_URL is set (then
    shared by every process of the deployment, under RATE_LIMIT_NAMESPACE)."""

    def __init__(self, redis_url: str | None = None, namespace: str = ""):
        if not namespace and current_app:
            namespace = current_app.config.get("RATE_LIMIT_NAMESPACE") or ""
        self.namespace = namespace or "mutualplan"
        self._redis = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=0.5)
            self._redis_errors = (redis.RedisError, OSError)
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, window: int) -> bool:
        """Count one hit; False when the limit for this window is exceeded."""
        slot = int(time.time() // window)
        name = f"mp:rl:{self.namespace}:{key}:{slot}"
        if self._redis is not None:
            try:
                pipe = self._redis.pipeline()
                pipe.incr(name)
                pipe.expire(name, window + 5)
                count = pipe.execute()[0]
                return count <= limit
            except self._redis_errors:  # Redis down: fall back to this process's counters
                log.warning("rate limiter: Redis unavailable, counting in memory")
        with self._lock:
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if v[0] == slot}
            seen_slot, count = self._counts.get(name, (slot, 0))
            count = count + 1 if seen_slot == slot else 1
            self._counts[name] = (slot, count)
            return count <= limit


def limiter() -> RateLimiter:
    """The app's one RateLimiter (the buyer page's per-link/per-IP limits, the API's per tenant)."""
    ext = current_app.extensions
    if "mutualplan.ratelimit" not in ext:
        ext["mutualplan.ratelimit"] = RateLimiter(current_app.config.get("REDIS_URL"))
    return ext["mutualplan.ratelimit"]


def limit_tenant(tenant_id: str) -> None:
    """API_RATE_LIMIT requests per minute per tenant, else 429 with Retry-After."""
    per_minute = current_app.config.get("API_RATE_LIMIT") or 0
    if per_minute and not limiter().hit(f"api:{tenant_id}", per_minute, 60):
        retry_after = 60 - int(time.time()) % 60  # the fixed window's end
        raise TooManyRequests(f"This account sends more than {per_minute} API requests a "
                              f"minute; try again in {retry_after} s.", retry_after=retry_after)
