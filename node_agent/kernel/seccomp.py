"""Seccomp support: the ``Seccomp:`` field of /proc/<pid>/status and /proc/sys/kernel/seccomp (seccomp(2))."""

from __future__ import annotations

from pathlib import Path

from node_agent.kernel import procfs

SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}
ACTIONS_AVAIL = Path("/proc/sys/kernel/seccomp/actions_avail")


def status_seccomp(pid: int | str = "self", proc: Path = procfs.PROC) -> int | None:
    """The seccomp mode of ``pid`` (0, 1, 2), or None when the kernel lacks CONFIG_SECCOMP."""
    value = procfs.status(pid, proc).get("Seccomp")
    return int(value) if value is not None else None


def actions_avail(path: Path = ACTIONS_AVAIL) -> list[str]:
    """The filter return actions the kernel supports (``kill_process``, ``errno``, ``user_notif``...)."""
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []
