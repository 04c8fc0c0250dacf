"""Processes as the kernel sees them: identity (pid + starttime), uid, namespaces, cgroups.

PIDs are reused, so a process is ``(pid, starttime)`` (field 22 of
``/proc/<pid>/stat``); ``alive`` re-reads it before anyone acts on a pid.
Every reader tolerates the process exiting under it (it is skipped).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from node_agent.kernel.namespaces import NAMESPACE_TYPES

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    starttime: int
    uid: int
    comm: str
    ppid: int
    state: str
    ns: dict[str, int] = field(default_factory=dict, hash=False, compare=False)
    nspid: tuple[int, ...] = ()
    cgroups: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> tuple[int, int]:
        return self.pid, self.starttime

    def to_dict(self) -> dict:
        return {"pid": self.pid, "starttime": self.starttime, "uid": self.uid, "comm": self.comm,
                "ppid": self.ppid, "ns": self.ns, "nspid": list(self.nspid)}


def parse_stat(text: str) -> tuple[str, str, int, int]:
    """``(comm, state, ppid, starttime)`` from /proc/<pid>/stat; comm may hold spaces and parentheses."""
    lpar, rpar = text.index("("), text.rindex(")")
    comm = text[lpar + 1:rpar]
    rest = text[rpar + 2:].split()
    # rest[0] is field 3 (state); starttime is field 22.
    return comm, rest[0], int(rest[1]), int(rest[19])


def starttime(pid: int, proc: Path = PROC) -> int | None:
    try:
        return parse_stat((proc / str(pid) / "stat").read_text())[3]
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int, start: int, proc: Path = PROC) -> bool:
    """True while the process ``(pid, start)`` exists and is not a zombie."""
    try:
        _comm, state, _ppid, st = parse_stat((proc / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return False
    return st == start and state not in ("Z", "X")


def ns_inodes(pid: int | str, types: tuple[str, ...] = NAMESPACE_TYPES, proc: Path = PROC) -> dict[str, int]:
    out = {}
    for t in types:
        try:
            out[t] = os.stat(f"{proc}/{pid}/ns/{t}").st_ino
        except OSError:
            pass
    return out


def read_cgroups(pid: int | str, proc: Path = PROC) -> dict[str, str]:
    """``{controller: path}`` from /proc/<pid>/cgroup; the v2 entry is under ``""``; named v1 ones as ``name=x``."""
    out: dict[str, str] = {}
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        _hid, controllers, path = line.split(":", 2)
        if not controllers:
            out[""] = path
        for c in controllers.split(","):
            if c:
                out[c] = path
    return out


def read(pid: int, proc: Path = PROC, *, full: bool = True) -> ProcInfo | None:
    """One process, or None when it is gone (or a kernel thread when ``full``)."""
    base = proc / str(pid)
    try:
        comm, state, ppid, start = parse_stat((base / "stat").read_text())
        status = (base / "status").read_text()
    except (OSError, ValueError, IndexError):
        return None
    uid, nspid = -1, ()
    for line in status.splitlines():
        # A status file forged over procfs may hold anything: junk reads as unknown, and the
        # checks' forged-file test says why, instead of a crash taking the whole scan down.
        try:
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
            elif line.startswith("NSpid:"):
                nspid = tuple(int(x) for x in line.split()[1:])
        except (ValueError, IndexError):
            continue
    if not full:
        return ProcInfo(pid, start, uid, comm, ppid, state, nspid=nspid)
    return ProcInfo(pid, start, uid, comm, ppid, state, ns_inodes(pid, proc=proc), nspid, read_cgroups(pid, proc))


def pids(proc: Path = PROC) -> list[int]:
    return [int(name) for name in os.listdir(proc) if name.isdigit()]


def uid_of(pid: int, proc: Path = PROC) -> int | None:
    """The real uid of ``pid`` from its /proc entry's owner (cheap: one stat, no read)."""
    try:
        return os.stat(f"{proc}/{pid}").st_uid
    except OSError:
        return None
