"""Capped exponential backoff with full jitter, for retries against the controller.

Full jitter (a uniform delay between 0 and the capped exponential) spreads a
room of agents that all lost the controller at the same moment, so they do not
come back in lockstep when it returns (AWS Architecture Blog, "Exponential
Backoff And Jitter", 2015).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable


class Backoff:
    """Delays of ``uniform(0, min(cap, base * factor**attempt))``; ``reset()`` after a success."""

    def __init__(
        self,
        cap: float,
        stop: threading.Event,
        base: float = 0.5,
        factor: float = 2.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.cap = cap
        self.base = base
        self.factor = factor
        self.attempt = 0
        self._stop = stop
        self._rand = rand

    def next_delay(self) -> float:
        """The next delay in seconds; each call counts one more failed attempt."""
        ceiling = min(self.cap, self.base * self.factor ** min(self.attempt, 64))
        self.attempt += 1
        return ceiling * self._rand()

    def wait(self, delay: float | None = None) -> bool:
        """Sleep the next delay (or ``delay``); False when the stop event ended the wait early."""
        return not self._stop.wait(self.next_delay() if delay is None else delay)

    def reset(self) -> None:
        """Start over from ``base`` after a success."""
        self.attempt = 0
