"""Background threads that must exist once in every web process.

gunicorn forks its workers after ``create_app`` has built every object, and
threads do not survive a fork; so each object that needs a thread (the group
writer, the heartbeat flusher, the notification listener) starts it on first
use, once per process, through this one class.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class PerProcessThread:
    def __init__(self, name: str, target: Callable[[], None], *,
                 on_start: Callable[[], None] | None = None) -> None:
        self._name = name
        self._target = target
        self._on_start = on_start
        self._lock = threading.Lock()
        self._pid: int | None = None

    def ensure(self) -> None:
        """Start the thread in this process unless it runs already; ``on_start`` runs first."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            if self._on_start is not None:
                self._on_start()
            threading.Thread(target=self._target, name=self._name, daemon=True).start()
