"""Backoff: exponential ceiling, full jitter, capped, interruptible."""

from __future__ import annotations

import threading
import time

from node_agent.backoff import Backoff


def test_ceiling_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(cap=3.0, stop=threading.Event(), rand=lambda: 1.0)

    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_full_jitter_spreads_delays_below_the_ceiling() -> None:
    backoff = Backoff(cap=30.0, stop=threading.Event())
    first_delays = []
    for _ in range(50):
        backoff.reset()
        first_delays.append(backoff.next_delay())
    late_delays = [backoff.next_delay() for _ in range(50)]

    assert all(0 <= d <= 0.5 for d in first_delays) and len(set(first_delays)) > 1
    assert all(0 <= d <= 30.0 for d in late_delays) and max(late_delays) > 0.5


def test_wait_returns_early_when_stopped() -> None:
    stop = threading.Event()
    backoff = Backoff(cap=30.0, stop=stop)
    threading.Timer(0.05, stop.set).start()
    started = time.monotonic()

    assert backoff.wait(10.0) is False
    assert time.monotonic() - started < 1.0
