"""Child subreaper: lab processes the agent kills are reaped at once, not by PID 1.

A zombie keeps its pids-controller charge and its cgroup populated until it is
reaped (docs/labs.md measured cleanup waiting on PID 1: 1.77 s instead of 2 ms). As
a subreaper (PR_SET_CHILD_SUBREAPER) the agent inherits every orphaned
descendant, and ``reap_orphans`` waits for the zombies among its children —
except the ones a ``spawn``/``run`` caller still owns, whose exit status that
caller must see itself (Popen would read a stolen status as 0).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading

PR_SET_CHILD_SUBREAPER = 36
_lock = threading.Lock()
_owned: set[int] = set()


def become_subreaper() -> bool:
    """Make this process a child subreaper; False when the kernel refuses (then PID 1 reaps)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


@contextlib.contextmanager
def spawning():
    """Hold while starting a child and calling ``own`` on it, so the reaper cannot steal it in between."""
    with _lock:
        yield


def own(pid: int) -> None:
    """Called under ``spawning()``: the reaper leaves ``pid`` to its spawner."""
    _owned.add(pid)


def disown(pid: int) -> None:
    with _lock:
        _owned.discard(pid)


def _children() -> set[int]:
    out: set[int] = set()
    me = os.getpid()
    try:
        tids = os.listdir(f"/proc/{me}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{me}/task/{tid}/children") as f:
                out.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return out


def reap_orphans() -> list[int]:
    """Reap every zombie child nobody owns; returns their pids."""
    reaped = []
    with _lock:
        for pid in _children() - _owned:
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done:
                reaped.append(pid)
    return reaped
