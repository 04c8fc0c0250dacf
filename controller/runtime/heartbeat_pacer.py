"""Graceful heartbeat overload: above a budget, each answer asks the agent to beat less often.

Each web process measures the heartbeat demand it serves and, when it is above
``heartbeat_budget`` beats/s, answers every beat with a longer next interval
(at most ``MAX_STRETCH`` times the node's own), so an overloaded controller
hears from every node a little less often instead of queueing beats into
seconds and dropping them. The agent obeys the interval in the answer; the
interval is written with the beat (``nodes.paced_interval``), and the liveness
sweep waits for the node's own paced interval before calling it offline.

Demand, not the measured rate: a node told to stretch 4x beats 4x less often,
so each beat counts as the stretch the node reports it is beating at
(``Heartbeat.interval`` / its base interval). The estimate is right even before
the nodes have obeyed, so the stretch does not overshoot and swing back.
See docs/operations.md (LABFLEET_HEARTBEAT_BUDGET).
"""

from __future__ import annotations

import math
import threading
import time

MAX_STRETCH = 12.0
# Demand is averaged over this many seconds (two half windows: the previous one and the current one).
WINDOW_SECONDS = 2.0
# Aim this far below the budget, and relax only when demand falls this far below the current stretch:
# an interval that changed on every beat would be noise in every agent's log.
HEADROOM = 1.1
RELAX_BELOW = 0.8
STEP = 0.25  # stretches are multiples of this


class HeartbeatPacer:
    """Per-process: the heartbeat interval to answer with, given the load this process serves."""

    def __init__(self, budget: float, *, clock=time.monotonic) -> None:
        self.budget = budget  # beats/s per web process; 0 = never stretch
        self._clock = clock
        self._lock = threading.Lock()
        half = WINDOW_SECONDS / 2
        self._half = half
        self._bucket_start = clock()
        self._current = 0.0   # demand (beats/s at no stretch) seen in the current half window
        self._previous = 0.0  # ... in the previous one
        self._stretch = 1.0

    @property
    def stretch(self) -> float:
        return self._stretch

    def next_interval(self, base: float, beating_at: float | None) -> float:
        """Record one beat of a node whose own interval is ``base`` and that beats every ``beating_at``
        seconds now (None: an agent that does not say, counted as unstretched); answer its next interval."""
        if self.budget <= 0:
            return base
        weight = 1.0
        if beating_at and base > 0:
            weight = min(max(beating_at / base, 1.0), MAX_STRETCH)
        with self._lock:
            now = self._clock()
            elapsed = now - self._bucket_start
            if elapsed >= self._half:
                # Roll the window; after a long quiet spell both halves are empty.
                self._previous = self._current if elapsed < 2 * self._half else 0.0
                self._current = 0.0
                self._bucket_start = now
                elapsed = 0.0
                self._stretch = self._restretch(self._previous / self._half)
            self._current += weight
        return round(base * self._stretch, 3)

    def _restretch(self, demand: float) -> float:
        target = demand * HEADROOM / self.budget
        target = min(max(math.ceil(target / STEP) * STEP, 1.0), MAX_STRETCH)
        if target > self._stretch:
            return target
        if target < self._stretch * RELAX_BELOW:
            # Back down in steps: all the nodes returning to their own interval at once would be the
            # overload again, and a quiet half window (few, slow beats) is not yet a quiet room.
            return max(target, math.ceil(self._stretch / 2 / STEP) * STEP, 1.0)
        return self._stretch
