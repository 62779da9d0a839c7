"""A token bucket per CRM account, shared by every worker when Redis is there.

Workers ask before each CRM call. Rather than sleeping for long inside a job,
`acquire` raises RateLimited when the wait would exceed `max_wait`, and the
outbox defers the job; a short wait is simply slept.
"""
from __future__ import annotations

import threading
import time

from .errors import RateLimited

# HubSpot allows 110 requests per rolling 10 s per account: a bucket of 10 that
# refills at 10/s can never exceed 10 + 100 = 110 in any 10-second window.
HUBSPOT = {"rate": 10.0, "capacity": 10}
SALESFORCE = {"rate": 20.0, "capacity": 20}  # concurrency guard; the daily quota is watched separately
DEFAULT = {"rate": 10.0, "capacity": 10}  # a cautious start for a CRM that publishes no limit

_LUA = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = (cost - tokens) / rate
  tokens = tokens - cost
end
redis.call('HSET', key, 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', key, math.ceil(capacity / rate) + 60)
return tostring(wait)
"""


class TokenBucket:
    """In-process bucket (one process: the embedded default and tests)."""

    def __init__(self, rate: float, capacity: int, max_wait: float = 2.0, clock=time.monotonic, sleep=time.sleep):
        self.rate, self.capacity, self.max_wait = rate, capacity, max_wait
        self.clock, self.sleep = clock, sleep
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _reserve(self, key: str, cost: float) -> float:
        with self._lock:
            now = self.clock()
            tokens, ts = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - ts) * self.rate)
            wait = 0.0 if tokens >= cost else (cost - tokens) / self.rate
            self._buckets[key] = (tokens - cost, now)
            return wait

    def _refund(self, key: str, cost: float) -> None:
        with self._lock:
            tokens, ts = self._buckets[key]
            self._buckets[key] = (tokens + cost, ts)

    def acquire(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens, sleeping up to max_wait; returns the seconds slept."""
        wait = self._reserve(key, cost)
        if wait > self.max_wait:
            self._refund(key, cost)
            raise RateLimited(f"local rate limit for {key}", retry_after=wait, scope="burst", status=None)
        if wait:
            self.sleep(wait)
        return wait


class RedisTokenBucket(TokenBucket):
    """The same bucket kept in Redis, so all workers together stay under the limit."""

    def __init__(self, redis, rate: float, capacity: int, max_wait: float = 2.0, prefix: str = "mp:rl:",
                 sleep=time.sleep):
        super().__init__(rate, capacity, max_wait, sleep=sleep)
        self.redis, self.prefix = redis, prefix
        self._script = redis.register_script(_LUA)

    def _reserve(self, key: str, cost: float) -> float:
        return float(self._script(keys=[self.prefix + key], args=[self.rate, self.capacity, time.time(), cost]))

    def _refund(self, key: str, cost: float) -> None:
        self.redis.hincrbyfloat(self.prefix + key, "tokens", cost)
