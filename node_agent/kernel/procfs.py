"""System facts and processes from /proc and uname(2).

Processes as the kernel sees them: PIDs are reused, so a process is ``(pid,
starttime)`` (field 22 of ``/proc/<pid>/stat``); ``alive`` re-reads it before
anyone acts on a pid. Every process reader tolerates the process exiting under
it (it is skipped).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
# The entries of /proc/<pid>/ns (namespaces(7)); the *_for_children ones (pid, time) are views of
# the same types, not types of their own.
NAMESPACE_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def uptime(proc: Path = PROC) -> float:
    """Seconds since boot, first field of /proc/uptime."""
    return float((proc / "uptime").read_text().split()[0])


def loadavg(proc: Path = PROC) -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages of /proc/loadavg."""
    one, five, fifteen = (proc / "loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def meminfo(proc: Path = PROC) -> dict[str, int]:
    """/proc/meminfo as ``{"MemTotal": kB, ...}`` (values in kB, as the kernel gives them)."""
    info: dict[str, int] = {}
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields = value.split()
        if fields:
            info[key] = int(fields[0])
    return info


def status(pid: int | str = "self", proc: Path = PROC) -> dict[str, str]:
    """/proc/<pid>/status as ``{"Name": ..., "Seccomp": "0", ...}`` (raw string values)."""
    return parse_status((proc / str(pid) / "status").read_text())


def parse_status(text: str) -> dict[str, str]:
    """The text of a /proc/<pid>/status file as ``{"Name": ..., "Uid": "0 0 0 0", ...}``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


@dataclass(frozen=True)
class Mount:
    """One line of /proc/<pid>/mountinfo (proc(5)): the fields the agent uses."""

    mount_point: str
    fstype: str
    source: str
    super_options: tuple[str, ...]


def mountinfo(pid: int | str = "self", proc: Path = PROC) -> list[Mount]:
    """The mounts seen by ``pid``, in mount order."""
    mounts = []
    for line in (proc / str(pid) / "mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, source, options = (right.split(" ") + ["", ""])[:3]
        mounts.append(Mount(unescape(left.split(" ")[4]), fstype, unescape(source), tuple(options.split(","))))
    return mounts


def unescape(field: str) -> str:
    """A mountinfo field with its octal escapes undone."""
    # mountinfo escapes space, tab, newline and backslash as \ooo octal (proc(5)).
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode(errors="replace")


def hostname() -> str:
    """The UTS namespace's hostname (uname(2) nodename)."""
    return os.uname().nodename


def kernel_release() -> str:
    """The running kernel's release, as ``uname -r`` prints it."""
    return os.uname().release


# --- processes ------------------------------------------------------------------------------------------


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
    """``{controller: path}`` from /proc/<pid>/cgroup, ``{}`` when the process is gone (``parse_cgroup``)."""
    try:
        return parse_cgroup((proc / str(pid) / "cgroup").read_text())
    except OSError:
        return {}


def parse_cgroup(text: str) -> dict[str, str]:
    """A /proc/<pid>/cgroup file as ``{controller: path}``; the v2 entry is under ``""``, named v1 ones as ``name=x``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        _hid, controllers, path = line.split(":", 2)
        if not controllers:
            out[""] = path
        for c in filter(None, controllers.split(",")):
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
    fields = parse_status(status)
    # A status file forged over procfs may hold anything: junk reads as unknown, and the
    # checks' forged-file test says why, instead of a crash taking the whole scan down.
    try:
        uid = int(fields.get("Uid", "").split()[0])
    except (ValueError, IndexError):
        uid = -1
    try:
        nspid = tuple(int(x) for x in fields.get("NSpid", "").split())
    except ValueError:
        nspid = ()
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
