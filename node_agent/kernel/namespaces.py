"""Which namespace types the running kernel supports: the entries of /proc/self/ns (namespaces(7))."""

from __future__ import annotations

from pathlib import Path

# The *_for_children entries (pid, time) are views of the same types, not types of their own.
NAMESPACE_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def ns_types(ns_dir: Path = Path("/proc/self/ns")) -> list[str]:
    """The namespace types present in ``/proc/self/ns``, sorted."""
    present = {entry.name for entry in ns_dir.iterdir()}
    return [t for t in NAMESPACE_TYPES if t in present]
