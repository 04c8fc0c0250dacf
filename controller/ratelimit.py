"""In-process limits on what an unauthenticated or misbehaving caller can cost us.

- Failed enrollments per client address: a room behind one NAT enrolls
  hundreds of VMs from one address, so successes are never limited; only
  failures are, which is what guessing tokens looks like.
- Concurrent long-polls per node: each holds a server thread, so a node token
  (an attendee is root on their VM) must not be able to hold them all.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager

from controller.errors import TooManyRequests


class FailureLimiter:
    def __init__(self, *, max_failures: int, window: float) -> None:
        self._max = max_failures
        self._window = window
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def check(self, key: str) -> None:
        """Raise 429 while ``key`` has used up its failures in the current window."""
        with self._lock:
            recent = self._prune(key)
            if len(recent) >= self._max:
                retry = self._window - (time.monotonic() - recent[0])
                raise TooManyRequests(f"too many failed attempts from {key}; retry in {retry:.0f}s")

    def failed(self, key: str) -> None:
        with self._lock:
            self._prune(key).append(time.monotonic())

    def _prune(self, key: str) -> deque[float]:
        recent = self._failures[key]
        cutoff = time.monotonic() - self._window
        while recent and recent[0] < cutoff:
            recent.popleft()
        return recent


class ConcurrencyLimiter:
    def __init__(self, *, per_key: int) -> None:
        self._per_key = per_key
        self._lock = threading.Lock()
        self._active: dict[str, int] = defaultdict(int)

    @contextmanager
    def slot(self, key: str, what: str) -> Iterator[None]:
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
