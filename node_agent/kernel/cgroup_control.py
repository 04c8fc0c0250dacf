"""Lab cgroups in a v1 hierarchy or in cgroup2: create, limit, count, empty and remove them.

One small function per control file, named after it (``pids.max``,
``cpu.max``, ``cgroup.kill``...), over a ``LabCgroup`` that knows which kind of
hierarchy it lives in, so the labs above write one code path for both
back-ends. Everything is confined to ``<hierarchy>/<parent>/<name>``: the names
are checked to be plain path components, so a lab file cannot reach outside
the agent's parent.

Emptying a cgroup follows what docs/labs.md measured: stop forks first
(``pids.max`` 0), then kill every member at once (v2 ``cgroup.kill``; v1 the
freezer, SIGKILL, thaw), then wait until the dying tasks are reaped, because
rmdir(2) answers EBUSY while a zombie still belongs to the cgroup.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from node_agent.kernel import procfs
from node_agent.kernel.cgroups import CGROUP_ROOT

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NO_LIMIT = "max"


class CgroupError(Exception):
    """A lab cgroup operation the kernel refused or the machine cannot do; the message names the path."""


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: a v1 one carrying ``controller``, or cgroup2 (``version`` 2)."""

    version: int
    mount: Path
    controller: str  # the controller it was chosen for; "" for cgroup2's core files only

    def describe(self) -> str:
        return f"cgroup v{self.version} {self.controller or 'core'} at {self.mount}"


@dataclass(frozen=True)
class LabCgroup:
    """``<hierarchy mount>/<relpath>``; ``relpath`` is ``<parent>/<name>``, checked at construction."""

    hierarchy: Hierarchy
    relpath: str

    def __post_init__(self) -> None:
        parts = self.relpath.split("/")
        bad = [p for p in parts if not _NAME.match(p)]
        if bad or len(parts) < 2:
            raise CgroupError(
                f"cgroup path {self.relpath!r}: expected <parent>/<name> of plain names "
                f"(letters, digits, . _ -), got {bad or parts!r}"
            )

    @cached_property  # checks build many file paths from it; a frozen dataclass still has a __dict__
    def path(self) -> Path:
        return self.hierarchy.mount / self.relpath

    @property
    def version(self) -> int:
        return self.hierarchy.version

    def file(self, name: str) -> Path:
        return self.path / name

    def label(self) -> str:
        """How reports name it: ``pids:/labfleet/cglab1`` or ``v2:/labfleet/cglab1``."""
        kind = self.hierarchy.controller if self.version == 1 else "v2"
        return f"{kind}:/{self.relpath}"


# ---- finding hierarchies -------------------------------------------------------------------------------


def v1_mount(controller: str, proc: Path = procfs.PROC) -> Path | None:
    """Mount point of the v1 hierarchy carrying ``controller`` (from mountinfo's super options), or None."""
    for mount in procfs.mountinfo("self", proc):
        if mount.fstype == "cgroup" and controller in mount.super_options:
            return Path(mount.mount_point)
    return None


def v2_mount(root: Path = CGROUP_ROOT, proc: Path = procfs.PROC) -> Path | None:
    """Where cgroup2 is mounted: ``/sys/fs/cgroup`` (v2) or ``/sys/fs/cgroup/unified`` (hybrid), or None."""
    mounts = {Path(m.mount_point) for m in procfs.mountinfo("self", proc) if m.fstype == "cgroup2"}
    for candidate in (root, root / "unified"):
        if candidate in mounts:
            return candidate
    return None


def find_hierarchy(controller: str, root: Path = CGROUP_ROOT, proc: Path = procfs.PROC) -> Hierarchy | None:
    """The back-end for ``controller`` on this machine: its v1 hierarchy if it has one, else cgroup2 if the
    controller is listed in the v2 root's ``cgroup.controllers``, else None (the lab is unavailable).

    ``controller=""`` asks for cgroup2's core files (procs, kill, freeze, events), present on v2 and hybrid.
    """
    if controller:
        mount = v1_mount(controller, proc)
        if mount is not None:
            return Hierarchy(1, mount, controller)
    unified = v2_mount(root, proc)
    if unified is None:
        return None
    if controller and controller not in controllers(unified):
        return None
    return Hierarchy(2, unified, controller)


def unavailable_reason(controller: str, root: Path = CGROUP_ROOT, proc: Path = procfs.PROC) -> str:
    """Why ``find_hierarchy(controller)`` found nothing, in words for the attendee and the instructor."""
    unified = v2_mount(root, proc)
    v2_has = " ".join(controllers(unified)) if unified else "(no cgroup2 mount)"
    return (
        f"this VM has no cgroup {controller!r} controller: no v1 hierarchy carries it and the "
        f"cgroup2 root lists only: {v2_has or '(none)'}"
    )


def controllers(path: Path) -> list[str]:
    """``cgroup.controllers`` of a cgroup2 directory."""
    try:
        return path.joinpath("cgroup.controllers").read_text().split()
    except FileNotFoundError:
        return []


def subtree_control(path: Path) -> list[str]:
    """``cgroup.subtree_control`` of a cgroup2 directory: controllers enabled for its children."""
    return path.joinpath("cgroup.subtree_control").read_text().split()


# ---- create / remove -------------------------------------------------------------------------------------


def create(cg: LabCgroup) -> bool:
    """mkdir the cgroup and its missing ancestors (True if the cgroup was new); on cgroup2, enable the
    controller in every ancestor's ``cgroup.subtree_control`` from the root down, which its files need."""
    controller = cg.hierarchy.controller if cg.version == 2 else ""
    here = cg.hierarchy.mount
    for part in cg.relpath.split("/")[:-1]:
        if controller:
            enable_controller(here, controller)
        here = here / part
        here.mkdir(exist_ok=True)
    if controller:
        enable_controller(here, controller)
    try:
        cg.path.mkdir()
    except FileExistsError:
        return False
    return True


def enable_controller(path: Path, controller: str) -> None:
    """Write ``+controller`` to ``path/cgroup.subtree_control`` unless it is already enabled.

    The kernel refuses (EBUSY) when ``path`` is not the root and has processes of its own (cgroup v2's
    "no internal processes" rule), and (ENOENT) when its parent has not enabled the controller.
    """
    if controller in subtree_control(path):
        return
    try:
        path.joinpath("cgroup.subtree_control").write_text(f"+{controller}")
    except OSError as exc:
        raise CgroupError(
            f"{path}/cgroup.subtree_control: cannot enable {controller!r} ({os.strerror(exc.errno or 0)}); "
            f"it needs to be in {path}/cgroup.controllers and {path} must have no processes of its own"
        ) from exc


def exists(cg: LabCgroup) -> bool:
    return cg.path.is_dir()


def rmdir(cg: LabCgroup, *, timeout: float = 2.0, reap: Callable[[], object] | None = None) -> bool:
    """rmdir the cgroup, retrying while the kernel answers EBUSY (dying members not yet reaped).

    Returns False if it was already gone; raises CgroupError if it is still busy after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while True:
        try:
            os.rmdir(cg.path)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise CgroupError(f"rmdir {cg.path}: {os.strerror(exc.errno or 0)}") from exc
            if time.monotonic() > deadline:
                raise CgroupError(
                    f"rmdir {cg.path}: still busy after {timeout:g} s; members: {procs(cg)}"
                ) from exc
        if reap is not None:
            reap()
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


# ---- members ---------------------------------------------------------------------------------------------


def procs(cg: LabCgroup) -> list[int]:
    """``cgroup.procs``: the thread-group ids in the cgroup (dying tasks are not listed); [] if it is gone."""
    try:
        return [int(line) for line in cg.file("cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def add_proc(cg: LabCgroup, pid: int) -> None:
    """Move ``pid``'s whole thread group into the cgroup (0 means the caller itself)."""
    try:
        cg.file("cgroup.procs").write_text(str(pid))
    except OSError as exc:
        raise CgroupError(f"{cg.file('cgroup.procs')}: cannot move pid {pid}: {os.strerror(exc.errno or 0)}") from exc


def populated(cg: LabCgroup) -> bool:
    """Whether the cgroup still holds tasks, dying ones included: v2 ``cgroup.events`` "populated";
    v1 has no such file, so it answers from ``cgroup.procs`` (rmdir's EBUSY covers the zombies)."""
    if cg.version == 2:
        try:
            return read_keyed(cg, "cgroup.events").get("populated", 0) == 1
        except FileNotFoundError:
            return False
    return bool(procs(cg))


def member_of(pid: int, cg: LabCgroup, proc: Path = procfs.PROC) -> bool:
    """Whether /proc/<pid>/cgroup puts ``pid`` in ``cg`` (its hierarchy's line: ``N:pids:/path`` or ``0::/path``)."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    want = "/" + cg.relpath
    for line in text.splitlines():
        _, ctrls, path = line.split(":", 2)
        if path != want:
            continue
        if cg.version == 2 and ctrls == "":
            return True
        if cg.version == 1 and cg.hierarchy.controller in ctrls.split(","):
            return True
    return False


# ---- control files ---------------------------------------------------------------------------------------


def read_value(cg: LabCgroup, name: str) -> str:
    return cg.file(name).read_text().strip()


def write_value(cg: LabCgroup, name: str, value: str | int) -> None:
    try:
        cg.file(name).write_text(str(value))
    except OSError as exc:
        raise CgroupError(f"{cg.file(name)}: cannot write {value!r}: {os.strerror(exc.errno or 0)}") from exc


def read_keyed(cg: LabCgroup, name: str) -> dict[str, int]:
    """A flat-keyed file (``key value`` per line: pids.events, cpu.stat, cgroup.events) as ints."""
    out: dict[str, int] = {}
    for line in cg.file(name).read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _limit(text: str) -> int | None:
    return None if text == NO_LIMIT else int(text)


def pids_max(cg: LabCgroup) -> int | None:
    """``pids.max``; None for "max" (no limit)."""
    return _limit(read_value(cg, "pids.max"))


def set_pids_max(cg: LabCgroup, value: int | None) -> None:
    write_value(cg, "pids.max", NO_LIMIT if value is None else value)


def pids_current(cg: LabCgroup) -> int:
    return int(read_value(cg, "pids.current"))


def pids_peak(cg: LabCgroup) -> int | None:
    """``pids.peak`` (kernel 6.1+ on v1, 6.9+ on v2), None where the kernel lacks it."""
    try:
        return int(read_value(cg, "pids.peak"))
    except FileNotFoundError:
        return None


def pids_events(cg: LabCgroup) -> int:
    """The ``max`` count of ``pids.events``: forks refused because this cgroup was at ``pids.max``."""
    return read_keyed(cg, "pids.events").get("max", 0)


def cpu_quota(cg: LabCgroup) -> tuple[int | None, int]:
    """``(quota_us or None for no limit, period_us)``: v1 ``cpu.cfs_quota_us`` (-1 = none) and
    ``cpu.cfs_period_us``; v2 ``cpu.max`` ("max 100000" or "50000 100000")."""
    if cg.version == 2:
        quota, period = read_value(cg, "cpu.max").split()
        return _limit(quota), int(period)
    quota_us = int(read_value(cg, "cpu.cfs_quota_us"))
    return (None if quota_us < 0 else quota_us), int(read_value(cg, "cpu.cfs_period_us"))


def set_cpu_quota(cg: LabCgroup, quota_us: int | None, period_us: int = 100_000) -> None:
    if cg.version == 2:
        write_value(cg, "cpu.max", f"{NO_LIMIT if quota_us is None else quota_us} {period_us}")
        return
    write_value(cg, "cpu.cfs_period_us", period_us)
    write_value(cg, "cpu.cfs_quota_us", -1 if quota_us is None else quota_us)


CPU_WEIGHT_DEFAULT = {1: 1024, 2: 100}  # v1 cpu.shares, v2 cpu.weight


def cpu_weight(cg: LabCgroup) -> int:
    """The cgroup's CPU weight against its siblings: v1 ``cpu.shares`` (default 1024), v2 ``cpu.weight`` (100)."""
    return int(read_value(cg, "cpu.weight" if cg.version == 2 else "cpu.shares"))


def set_cpu_weight(cg: LabCgroup, weight: int) -> None:
    write_value(cg, "cpu.weight" if cg.version == 2 else "cpu.shares", weight)


@dataclass(frozen=True)
class CpuStat:
    """The throttling counters of ``cpu.stat``, in the same units on both back-ends."""

    nr_periods: int
    nr_throttled: int
    throttled_usec: int  # v1 reports throttled_time in ns; converted


def cpu_stat(cg: LabCgroup) -> CpuStat:
    stat = read_keyed(cg, "cpu.stat")
    throttled = stat["throttled_usec"] if "throttled_usec" in stat else stat.get("throttled_time", 0) // 1000
    return CpuStat(stat.get("nr_periods", 0), stat.get("nr_throttled", 0), throttled)


def snapshot(cg: LabCgroup) -> dict[str, object]:
    """The cgroup's limits and counters for the agent's state report (JSON-ready); ``exists`` False if gone."""
    out: dict[str, object] = {"cgroup": cg.label(), "path": str(cg.path), "backend": f"v{cg.version}"}
    if not exists(cg):
        return {**out, "exists": False}
    out.update(exists=True, members=procs(cg))
    try:
        if cg.hierarchy.controller == "pids":
            out.update({"pids.max": pids_max(cg), "pids.current": pids_current(cg), "pids.peak": pids_peak(cg),
                        "pids.events.max": pids_events(cg)})
        elif cg.hierarchy.controller == "cpu":
            quota, period = cpu_quota(cg)
            stat = cpu_stat(cg)
            out.update(quota_us=quota, period_us=period, nr_periods=stat.nr_periods, nr_throttled=stat.nr_throttled,
                       throttled_usec=stat.throttled_usec)
    except FileNotFoundError:  # removed while we read it
        return {**out, "exists": False}
    return out


# ---- forged files ----------------------------------------------------------------------------------------


def forged_reason(cg: LabCgroup, *names: str, proc: Path = procfs.PROC) -> str | None:
    """Why one of the control files ``names`` of ``cg`` is not the kernel's own, or None if all are.

    A root attendee can bind-mount a file of their own over ``pids.max``. Two signs, either one enough:
    the file's st_dev differs from the hierarchy's (it lives on another filesystem), or mountinfo has a
    mount on the file or on the cgroup directory (a bind of another cgroupfs file keeps the st_dev).
    """
    fs_dev = os.stat(cg.hierarchy.mount).st_dev
    for name in names:
        target = cg.file(name)
        try:
            file_dev = os.stat(target).st_dev
        except FileNotFoundError:
            continue
        if file_dev != fs_dev:
            return (
                f"{target} is not the kernel's cgroup file: it is on device {os.major(file_dev)}:"
                f"{os.minor(file_dev)}, the cgroup filesystem is {os.major(fs_dev)}:{os.minor(fs_dev)} "
                f"(a bind mount over it?)"
            )
    directory = str(cg.path)
    for mount in procfs.mountinfo("self", proc):
        if mount.mount_point == directory or mount.mount_point.startswith(directory + "/"):
            return (f"something is mounted on {mount.mount_point} ({mount.fstype} from {mount.source}): "
                    f"not the kernel's cgroup file")
    return None


# ---- emptying --------------------------------------------------------------------------------------------


def kill_members(
    cg: LabCgroup,
    *,
    reap: Callable[[], object] | None = None,
    timeout: float = 2.0,
    freezer: Hierarchy | None = None,
) -> list[int]:
    """Kill every process in the cgroup and wait until none is left; returns the pids it saw.

    ``pids.max`` is set to 0 first where the cgroup has one, so nothing forks while it dies. cgroup2
    uses ``cgroup.kill`` (one write, atomic against forks). On v1 every member listed is SIGKILLed; if
    the list then shows a process that was not in it (a member forked meanwhile, possible without a
    pids limit), the rest is done with ``freezer`` (the freezer hierarchy): members are moved into a
    twin freezer cgroup, frozen, SIGKILLed and thawed, so a forking member cannot escape between
    reading the list and the signal; without a freezer, members are SIGKILLed until the list stays
    empty. (Moving costs ~0.5 ms per task on v1, hence not the first resort.) Each signal goes through a pidfd opened before the pid is
    re-checked as a member, so a recycled pid is never hit. ``reap`` is called while waiting: dead
    tasks keep their pids charge (and the cgroup busy) until their parent reaps them.
    """
    seen = procs(cg)
    if not exists(cg):
        return []
    if cg.hierarchy.controller == "pids":
        set_pids_max(cg, 0)
    if cg.version == 2:
        write_value(cg, "cgroup.kill", 1)
    else:
        for pid in seen:
            signal_member(pid, cg)
        # A member that was not there a moment ago was forked meanwhile: nothing stops forks in a cgroup
        # without pids.max 0, so freeze the lot. Otherwise the one round was enough (the common case).
        forked = [pid for pid in procs(cg) if pid not in set(seen)]
        if forked and freezer is not None:
            seen += freeze_and_kill(cg, freezer, reap=reap, timeout=timeout)
        elif forked:
            seen += _kill_until_empty(cg, reap=reap, timeout=timeout)
    wait_empty(cg, reap=reap, timeout=timeout)
    return sorted(set(seen))


def signal_member(pid: int, cg: LabCgroup, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to ``pid`` only if it is (still) a member of ``cg``, through a pidfd (no pid reuse race)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not member_of(pid, cg):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def _kill_until_empty(cg: LabCgroup, *, reap: Callable[[], object] | None, timeout: float) -> list[int]:
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        members = procs(cg)
        if not members or time.monotonic() > deadline:
            return seen
        for pid in members:
            signal_member(pid, cg)  # False: it died meanwhile (e.g. its leader's death ended it)
        seen.extend(members)
        if reap is not None:
            reap()


def freeze_and_kill(
    cg: LabCgroup, freezer: Hierarchy, *, reap: Callable[[], object] | None = None, timeout: float = 2.0
) -> list[int]:
    """Move the members into a twin cgroup of the v1 freezer hierarchy (or use ``cg`` itself if it is in
    that hierarchy), freeze, SIGKILL, thaw, wait until empty, remove the twin; returns the pids seen."""
    in_place = freezer.mount == cg.hierarchy.mount  # the lab cgroup is a freezer cgroup itself
    twin = cg if in_place else LabCgroup(freezer, cg.relpath)
    create(twin)
    seen: list[int] = []
    try:
        deadline = time.monotonic() + timeout
        # Move members until none is left outside the frozen twin; a fork between the read and the
        # move lands in the lab cgroup and is picked up by the next round.
        while not in_place and time.monotonic() < deadline:
            outside = [pid for pid in procs(cg) if pid not in set(procs(twin))]
            if not outside:
                break
            for pid in outside:
                try:
                    add_proc(twin, pid)
                except CgroupError:  # exited meanwhile
                    continue
                seen.append(pid)
            write_value(twin, "freezer.state", "FROZEN")
        if in_place:
            write_value(twin, "freezer.state", "FROZEN")
        _wait_frozen(twin, deadline)
        for pid in procs(twin):
            signal_member(pid, twin)
            seen.append(pid)
        write_value(twin, "freezer.state", "THAWED")
        wait_empty(twin, reap=reap, timeout=max(0.0, deadline - time.monotonic()))
    finally:
        if exists(twin):
            write_value(twin, "freezer.state", "THAWED")
            if not in_place:
                rmdir(twin, timeout=timeout, reap=reap)
    return seen


def _wait_frozen(twin: LabCgroup, deadline: float) -> None:
    while read_value(twin, "freezer.state") != "FROZEN" and time.monotonic() < deadline:
        time.sleep(0.0001)


def wait_empty(cg: LabCgroup, *, reap: Callable[[], object] | None = None, timeout: float = 2.0) -> bool:
    """Wait until the cgroup lists no member (v2: "populated 0"), calling ``reap`` meanwhile; True if empty."""
    deadline = time.monotonic() + timeout
    delay = 0.0001
    while populated(cg):
        if reap is not None:
            reap()
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
    return True


def remove(
    cg: LabCgroup,
    *,
    reap: Callable[[], object] | None = None,
    timeout: float = 2.0,
    freezer: Hierarchy | None = None,
) -> list[int]:
    """Kill every member, reap, rmdir: the lab cgroup's reset. Returns the pids killed."""
    if not exists(cg):
        return []
    killed = kill_members(cg, reap=reap, timeout=timeout, freezer=freezer)
    rmdir(cg, timeout=timeout, reap=reap)
    return killed
