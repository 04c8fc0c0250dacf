"""Concurrent long-polls per node: each holds a server thread, so a node token (an attendee is root
on their VM) must not be able to hold them all. (Failure counters: controller/counters.py.)

``ConcurrencyLimiter`` counts in one process. ``SharedConcurrencyLimiter`` counts in Redis, so the
limit holds for the whole deployment however many web processes and machines serve the node: one
sorted set per node whose members are the open polls, each scored with the time it expires by
itself (its wait plus a margin), so a poll held by a process that was killed stops counting then.
A poll that asks for a resync supersedes the node's older polls (they end at once, in every process)
and so also clears their entries. If Redis does not answer, the process counts on its own until it does.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from controller.errors import TooManyRequests

log = logging.getLogger(__name__)

# KEYS[1]: the node's set. ARGV: limit, seconds the entry lives, member, 1 to clear older polls first.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[4] == '1' then redis.call('DEL', KEYS[1]) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""


class ConcurrencyLimiter:
    def __init__(self, *, per_key: int) -> None:
        self._per_key = per_key
        self._lock = threading.Lock()
        self._active: dict[str, int] = defaultdict(int)

    @contextmanager
    def slot(self, key: str, what: str, *, hold_seconds: float = 0.0, supersede: bool = False) -> Iterator[None]:
        with self._lock:
            if self._active[key] >= self._per_key:
                raise TooManyRequests(f"{what}: at most {self._per_key} at once")
            self._active[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._active[key] -= 1
                if not self._active[key]:
                    del self._active[key]


class SharedConcurrencyLimiter:
    """The same limit, counted in Redis for every web process (see the module's text)."""

    MARGIN_SECONDS = 15.0

    def __init__(self, redis_url: str, *, per_key: int, namespace: str = "polls") -> None:
        import redis

        self._per_key = per_key
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._errors = (redis.RedisError, OSError)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._prefix = f"labfleet:{namespace}:"
        self._fallback = ConcurrencyLimiter(per_key=per_key)
        self._degraded = False

    @contextmanager
    def slot(self, key: str, what: str, *, hold_seconds: float = 0.0, supersede: bool = False) -> Iterator[None]:
        member = uuid.uuid4().hex
        redis_key = self._prefix + key
        try:
            granted = self._acquire(keys=[redis_key],
                                    args=[self._per_key, hold_seconds + self.MARGIN_SECONDS, member,
                                          "1" if supersede else "0"])
        except self._errors as exc:
            self._down(exc)
            with self._fallback.slot(key, what):
                yield
            return
        self._up()
        if not granted:
            raise TooManyRequests(f"{what}: at most {self._per_key} at once")
        try:
            yield
        finally:
            try:
                self._redis.zrem(redis_key, member)
            except self._errors as exc:  # the entry expires by itself
                self._down(exc)

    def _down(self, exc: Exception) -> None:
        if not self._degraded:
            log.warning("poll limits: Redis does not answer (%s); counting in this process only", exc)
        self._degraded = True

    def _up(self) -> None:
        if self._degraded:
            log.warning("poll limits: Redis answers again; limits are shared again")
        self._degraded = False


def poll_limiter(redis_url: str, *, per_key: int) -> ConcurrencyLimiter | SharedConcurrencyLimiter:
    return SharedConcurrencyLimiter(redis_url, per_key=per_key) if redis_url else ConcurrencyLimiter(per_key=per_key)
