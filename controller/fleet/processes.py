"""Processes of the fleet, found by PID plus start time or by namespace membership, never by name."""

from __future__ import annotations

import os
import signal
import time


def starttime(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot): with the PID, names one process for good."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[19]) if fields[0] != "Z" else None


def is_same(pid: int | None, start: int | None) -> bool:
    """True if ``pid`` still is the process that started at ``start`` (and is not a zombie)."""
    return bool(pid) and start is not None and starttime(pid) == start


def signal_verified(pid: int | None, start: int | None, sig: int) -> bool:
    """Send ``sig`` only if the PID still names the recorded process; True if sent."""
    if not is_same(pid, start):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def in_netns(inodes: set[int]) -> list[int]:
    """PIDs whose network namespace is one of these inodes (see namespaces(7), /proc/<pid>/ns/net)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                found.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def kill_all(pids: list[int]) -> None:
    for pid in set(pids):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """Wait until none of ``pids`` exists any more (zombies count as gone); returns the stubborn ones."""
    deadline = time.monotonic() + timeout
    alive = [p for p in set(pids) if starttime(p) is not None]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if starttime(p) is not None]
    return alive
