"""Each host's own cgroup parent, ``labfleet-fleet/<host>``, in every mounted hierarchy.

The machine has hybrid cgroups (v1 controllers under /sys/fs/cgroup/<name>,
v2 at /sys/fs/cgroup/unified) or pure v2; the hierarchies are found from
/proc/self/mountinfo. A host's own processes (init, sshd, sessions) live in
the ``system`` leaf below its parent; its labs get the sibling ``labs``, empty
of system processes, which the agent uses as its ``lab_cgroup_parent``: a lab
scan of it never meets the host's init, sshd or the agent. On v2 the agent
may enable controllers there (the no-internal-processes rule forbids that on
a group that holds processes).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from controller.fleet.config import CGROUP_GROUP, LABS_LEAF, SYSTEM_LEAF, FleetConfig
from controller.fleet.errors import FleetError


def hierarchies() -> list[Path]:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy the machine has."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split(" ")[0] in ("cgroup", "cgroup2"):
                found.append(Path(left.split(" ")[4]))
    return found


def create(config: FleetConfig, name: str) -> list[Path]:
    """Make ``labfleet-fleet/<name>/{system,labs}`` in every hierarchy; returns the ``system`` leaves."""
    leaves = []
    for root in hierarchies():
        leaf = root / config.cgroup_parent(name) / SYSTEM_LEAF
        for attempt in range(5):  # another fleet's down may rmdir the shared, empty parent meanwhile
            try:
                for directory in (root / CGROUP_GROUP, leaf.parent, leaf, leaf.parent / LABS_LEAF):
                    directory.mkdir(exist_ok=True)
                    _inherit_cpuset(directory)
                break
            except FileNotFoundError:
                if attempt == 4:
                    raise
        leaves.append(leaf)
    return leaves


def _inherit_cpuset(directory: Path) -> None:
    """cpuset v1 refuses tasks until cpus and mems are set; copy the parent's (cpuset(7))."""
    for key in ("cpuset.cpus", "cpuset.mems"):
        own = directory / key
        if own.exists() and not own.read_text().strip():
            own.write_text((directory.parent / key).read_text())


def attach(leaves: list[Path], pid: int) -> None:
    for leaf in leaves:
        try:
            (leaf / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            raise FleetError(f"cannot put pid {pid} into cgroup {leaf}: {exc.strerror}") from None


def host_groups(config: FleetConfig) -> list[Path]:
    """Every ``labfleet-fleet/<prefix>-<n>`` group of this fleet, in every hierarchy."""
    groups = []
    for root in hierarchies():
        parent = root / CGROUP_GROUP
        try:
            names = os.listdir(parent)
        except FileNotFoundError:
            continue
        groups.extend(parent / n for n in sorted(names) if config.host_index(n) is not None)
    return groups


def pids(group: Path) -> list[int]:
    """PIDs in a group and every group below it."""
    found = []
    for directory, _, _ in os.walk(group):
        try:
            found.extend(int(p) for p in Path(directory, "cgroup.procs").read_text().split())
        except FileNotFoundError:
            continue
    return found


def remove(groups: list[Path], timeout: float = 5.0) -> None:
    """rmdir each group, deepest first; waits for dying tasks to leave (EBUSY) up to ``timeout``."""
    deadline = time.monotonic() + timeout
    for group in groups:
        for directory in sorted((Path(d) for d, _, _ in os.walk(group)), key=lambda p: len(p.parts),
                                reverse=True):
            _rmdir(directory, deadline)
    for root in hierarchies():  # the shared parent, when no other fleet uses it
        try:
            (root / CGROUP_GROUP).rmdir()
        except OSError:
            pass


def _rmdir(directory: Path, deadline: float) -> None:
    while True:
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise FleetError(f"cannot remove cgroup {directory}: {exc.strerror}") from None
            time.sleep(0.02)
