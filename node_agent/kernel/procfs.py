"""System facts from /proc and uname(2)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


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
    out: dict[str, str] = {}
    for line in (proc / str(pid) / "status").read_text().splitlines():
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
        mounts.append(Mount(_unescape(left.split(" ")[4]), fstype, _unescape(source), tuple(options.split(","))))
    return mounts


def _unescape(field: str) -> str:
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
