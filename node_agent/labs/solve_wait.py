"""How long a solve waits for what it started to show, and the one bounded poll that waits.

A solver starts a holder process (or fills a cgroup) and then waits until the kernel shows the
result: a check passing, a counter moving. That takes milliseconds, so the poll is short and
tight; ``SOLVE_TIMEOUT`` bounds it so a solve that cannot work answers instead of hanging.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from node_agent.labs.model import CheckResult

SOLVE_TIMEOUT = 5.0  # seconds a solve waits for its result to show in the kernel
POLL_INTERVAL = 0.005

T = TypeVar("T")


def until(poll: Callable[[], T], timeout: float = SOLVE_TIMEOUT, *,
          done: Callable[[T], object] = bool) -> T:
    """Call ``poll`` until ``done(value)`` holds or ``timeout`` seconds have passed; its last value.

    ``poll`` runs at least once, and once more after the deadline has passed if it still is not done.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = poll()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(POLL_INTERVAL)


def passing(check: Callable[[], CheckResult], timeout: float = SOLVE_TIMEOUT) -> CheckResult:
    """Run ``check`` until it passes, bounded by ``timeout``; the last result (a failing one says why)."""
    return until(check, timeout, done=lambda result: result.passed)
