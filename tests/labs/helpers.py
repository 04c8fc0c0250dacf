"""Helpers the lab and kernel tests share: waiting for a condition, killing a pid that may be gone.

Plain functions (no pytest import, no conftest), so ``tests/kernel`` can use them too. Running a script as
the attendee is ``LabEnv.as_attendee`` in ``conftest.py``: it needs the test's attendee and lab environment.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from tests.processes import wait_until


def wait_for(predicate: Callable[[], Any], what: str = "condition", timeout: float = 10.0) -> Any:
    """``predicate()``'s first truthy value, polled every 20 ms; fails naming ``what`` after ``timeout`` s."""
    return wait_until(predicate, timeout=timeout, interval=0.02, what=what)


def kill_quietly(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal ``pid`` (one the test started or found by its own names); a process already gone is fine."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
