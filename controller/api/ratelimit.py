"""Concurrent long-polls per node: each holds a server thread, so a node token (an attendee is root
on their VM) must not be able to hold them all. (Failure counters: controller/counters.py.)
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from controller.errors import TooManyRequests


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
