"""The cgroup layout of this machine: v1, v2 (unified) or hybrid, and the controllers of each.

Detection follows systemd's ``cg_unified()``: statfs(2) on /sys/fs/cgroup. The
filesystem magic is cgroup2 on a pure v2 machine; on v1 and hybrid machines it
is a tmpfs holding one mount per v1 hierarchy, and hybrid adds a cgroup2 mount
at /sys/fs/cgroup/unified (systemd's ``unified`` directory).
See docs/labs.md.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from node_agent.kernel import procfs

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP2_SUPER_MAGIC = 0x63677270  # linux/magic.h
CGROUP_SUPER_MAGIC = 0x27E0EB
TMPFS_MAGIC = 0x01021994

_libc = None


def statfs_f_type(path: Path) -> int:
    """``f_type`` (the filesystem magic) of statfs(2) on ``path``; os.statvfs does not expose it."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)  # the interpreter is linked against libc
    # f_type is the first member of struct statfs on every Linux ABI, as a long
    # (__fsword_t); 256 bytes is more than the struct on any of them.
    buf = ctypes.create_string_buffer(256)
    if _libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return ctypes.c_ulong.from_buffer(buf).value & 0xFFFFFFFF


def detect_layout(root: Path = CGROUP_ROOT) -> str:
    """``"v2"``, ``"hybrid"`` or ``"v1"``."""
    if statfs_f_type(root) == CGROUP2_SUPER_MAGIC:
        return "v2"
    unified = root / "unified"
    if unified.is_dir() and statfs_f_type(unified) == CGROUP2_SUPER_MAGIC:
        return "hybrid"
    return "v1"


def unified_root(layout: str, root: Path = CGROUP_ROOT) -> Path | None:
    """Where the cgroup2 hierarchy is mounted for ``layout``, or None on pure v1."""
    return {"v2": root, "hybrid": root / "unified"}.get(layout)


def proc_cgroups(proc: Path = procfs.PROC) -> dict[str, tuple[int, bool]]:
    """/proc/cgroups: ``{controller: (hierarchy id, enabled)}``; hierarchy 0 means not on a v1 hierarchy."""
    out: dict[str, tuple[int, bool]] = {}
    try:
        text = (proc / "cgroups").read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, hierarchy, _num, enabled = line.split()[:4]
        out[name] = (int(hierarchy), enabled == "1")
    return out


def v1_controllers(proc: Path = procfs.PROC) -> list[str]:
    """Controllers bound to a mounted v1 hierarchy, sorted."""
    return sorted(name for name, (hierarchy, enabled) in proc_cgroups(proc).items() if enabled and hierarchy)


def cgroup_controllers(cgroup: Path) -> list[str]:
    """``cgroup.controllers`` of a cgroup2 directory: the controllers available to it."""
    try:
        return (cgroup / "cgroup.controllers").read_text().split()
    except FileNotFoundError:
        return []


def describe(root: Path = CGROUP_ROOT) -> dict[str, object]:
    """``{"layout", "v1_controllers", "v2_controllers"}`` for the state snapshot."""
    layout = detect_layout(root)
    unified = unified_root(layout, root)
    return {
        "layout": layout,
        "v1_controllers": v1_controllers() if layout != "v2" else [],
        "v2_controllers": cgroup_controllers(unified) if unified else [],
    }
