"""Failure counters: how many times a key (an address, a token prefix, a login name) failed in a fixed
window that starts with its first failure and then expires.

With Redis every web process sees the same counts; in-process the counter keeps at most ``max_keys``
keys and drops expired ones as it goes, so a flood of distinct callers cannot grow it.
``controller/api/enroll_guard.py`` uses them for enrollment, ``controller/web_accounts.py`` for logins.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Protocol

log = logging.getLogger(__name__)


class FailureCounter(Protocol):
    def count(self, key: str) -> tuple[int, float]:
        """Failures of ``key`` in its current window, and the seconds until that window ends."""

    def hit(self, key: str) -> None:
        """One more failure of ``key``."""


class LocalCounter:
    """One process's counts. Every key lives exactly ``window`` seconds, so insertion order is expiry order."""

    def __init__(self, *, window: float, max_keys: int) -> None:
        self._window = window
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, list[float]] = OrderedDict()  # key -> [count, expires at]

    def __len__(self) -> int:
        with self._lock:
            self._evict(time.monotonic())
            return len(self._entries)

    def count(self, key: str) -> tuple[int, float]:
        now = time.monotonic()
        with self._lock:
            self._evict(now)
            entry = self._entries.get(key)
        return (int(entry[0]), entry[1] - now) if entry else (0, 0.0)

    def hit(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._evict(now)
            entry = self._entries.get(key)
            if entry is not None:
                entry[0] += 1
                return
            if len(self._entries) >= self._max_keys:
                # Full of live keys: forget the oldest count rather than grow (see docs/security.md).
                self._entries.popitem(last=False)
            self._entries[key] = [1, now + self._window]

    def _evict(self, now: float) -> None:
        while self._entries:
            first = next(iter(self._entries.values()))
            if first[1] > now:
                return
            self._entries.popitem(last=False)


class RedisCounter:
    """Counts shared by every web process: one Redis key per counted key, expiring with its window.

    If Redis does not answer, the process counts on its own (``fallback``)
    rather than refuse every enrollment, and says so in the log.
    """

    def __init__(self, redis_url: str, *, window: float, namespace: str, fallback: LocalCounter) -> None:
        import redis

        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._errors = redis.RedisError
        self._window = max(1, int(round(window)))
        self._prefix = f"labfleet:{namespace}:failures:"
        self._fallback = fallback
        self._degraded = False

    def count(self, key: str) -> tuple[int, float]:
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(self._prefix + key)
            pipe.pttl(self._prefix + key)
            raw, ttl_ms = pipe.execute()
        except self._errors as exc:
            self._down(exc)
            return self._fallback.count(key)
        self._up()
        return (int(raw or 0), max(ttl_ms, 0) / 1000.0) if raw else (0, 0.0)

    def hit(self, key: str) -> None:
        try:
            # SET NX EX then INCR in one transaction: the key can never exist without its expiry.
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(self._prefix + key, 0, ex=self._window, nx=True)
            pipe.incr(self._prefix + key)
            pipe.execute()
        except self._errors as exc:
            self._down(exc)
            self._fallback.hit(key)
            return
        self._up()

    def _down(self, exc: Exception) -> None:
        if not self._degraded:
            log.warning("failure counts: Redis does not answer (%s); counting in this process only", exc)
        self._degraded = True

    def _up(self) -> None:
        if self._degraded:
            log.warning("failure counts: Redis answers again; counts are shared again")
        self._degraded = False
