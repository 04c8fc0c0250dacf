"""Mounts the fleet may have left in the machine's mount namespace, under its host directories.

Hosts mount their root in their own mount namespace, which dies with them;
this is for what a crashed or hand-run experiment left behind, and it is the
check that makes deleting a host directory safe.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from controller.fleet.errors import FleetError


def mount_points() -> list[str]:
    """Mount points of this process's mount namespace (field 5 of proc(5) mountinfo, octal-unescaped)."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            raw = line.split(" ")[4]
            points.append(raw.encode().decode("unicode_escape"))
    return points


def under(directories: list[Path]) -> list[str]:
    roots = [str(d) for d in directories]
    return [p for p in mount_points() if any(p == r or p.startswith(r + "/") for r in roots)]


def detach_under(directories: list[Path]) -> None:
    """Lazily unmount (umount -l) everything mounted at or below ``directories``, deepest first."""
    for point in sorted(under(directories), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    left = under(directories)
    if left:
        raise FleetError(f"cannot unmount {', '.join(left)}; the host directories were not deleted")
