"""The cgroups that hold the VM itself (PID 1, the agent and the agent's ancestors): never the lab's.

A lab's cgroups live under ``lab_cgroup_parent``. If that parent also holds
the VM's own processes (a fleet host whose parent was its own cgroup, or a
parent set to a service's slice), "everything under the parent" would be
PID 1, sshd, the agent and the attendee's login shell: reported as residue,
and fair game for a reset's kill. So a cgroup that holds one of these
processes, everything below it and everything above it is the system's, and
the agent refuses to start with such a parent (``check_parent``).
"""

from __future__ import annotations

import os
from pathlib import Path

from node_agent.kernel import procfs

MAX_ANCESTORS = 64  # a parent chain longer than this is not one the agent was started by


def protected_pids() -> list[int]:
    """PID 1, this process and its ancestors: the processes that are the VM, not a lab."""
    found, pid = [1], os.getpid()
    for _ in range(MAX_ANCESTORS):
        if pid <= 1 or pid in found:
            break
        found.append(pid)
        info = procfs.read(pid, full=False)
        if info is None:
            break
        pid = info.ppid
    return found


def cgroup_dirs(pid: int, v1: dict[str, Path], unified: Path | None) -> set[Path]:
    """Where ``pid`` sits, as directories of the hierarchies this VM mounts."""
    dirs = set()
    for controller, path in procfs.read_cgroups(pid).items():
        root = unified if controller == "" else v1.get(controller)
        if root is not None:
            dirs.add(root / path.lstrip("/"))
    return dirs


def system_dirs(v1: dict[str, Path], unified: Path | None) -> set[Path]:
    dirs: set[Path] = set()
    for pid in protected_pids():
        dirs |= cgroup_dirs(pid, v1, unified)
    return dirs


def is_system(directory: Path, system: set[Path]) -> bool:
    """``directory`` holds, lies below, or lies above a cgroup of the VM's own processes."""
    return any(directory == s or s in directory.parents or directory in s.parents for s in system)


def intrusions(roots: list[Path], v1: dict[str, Path], unified: Path | None) -> list[str]:
    """The VM's own processes whose cgroup is at or below a lab root, in words ([] when none)."""
    out = []
    for pid in protected_pids():
        for directory in sorted(cgroup_dirs(pid, v1, unified)):
            if any(directory == r or r in directory.parents for r in roots):
                info = procfs.read(pid, full=False)
                comm = info.comm if info else "?"
                out.append(f"pid {pid} ({comm}) in {directory}")
                break
    return out
