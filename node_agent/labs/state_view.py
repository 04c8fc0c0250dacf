"""The live lab view the instructor sees: the attendee's namespaces, lab cgroups, seccomp of lab processes.

Part of the agent's state report and the ``inspect`` command. It reads the
kernel directly (nothing the attendee wrote) and is cheap: one /proc pass over
the attendee's processes and the lab parent's cgroup directories.
"""

from __future__ import annotations

from typing import Any

from node_agent.kernel import procfs
from node_agent.labs.context import LabContext

# Control files worth showing per lab cgroup, the ones the labs set or read.
CGROUP_FILES = ("pids.max", "pids.current", "pids.events", "cpu.max", "cpu.cfs_quota_us", "cpu.cfs_period_us",
                "cpu.stat", "cgroup.procs")


def snapshot(ctx: LabContext) -> dict[str, Any]:
    return {"processes": processes(ctx), "cgroups": cgroups(ctx)}


def processes(ctx: LabContext) -> list[dict[str, Any]]:
    """The attendee's processes in non-initial namespaces, with their seccomp state."""
    out = []
    for p in ctx.processes():
        new = {t: ino for t, ino in p.ns.items() if ctx.in_new_ns(p, t)}
        seccomp = _seccomp(p.pid)
        if not new and not seccomp.get("mode"):
            continue
        out.append({"pid": p.pid, "comm": p.comm, "uid": p.uid, "namespaces": new,
                    "pid_ns_depth": max(len(p.nspid) - 1, 0), "seccomp": seccomp})
    return out


SECCOMP_FIELDS = {"Seccomp": "mode", "Seccomp_filters": "filters", "NoNewPrivs": "no_new_privs"}


def _seccomp(pid: int) -> dict[str, Any]:
    """Seccomp mode, filter count and no_new_privs of ``pid`` from its status; {} when gone or unreadable."""
    try:
        status = procfs.status(pid)
        return {name: int(status.get(key, "0")) for key, name in SECCOMP_FIELDS.items()}
    except (OSError, ValueError):
        return {}


def cgroups(ctx: LabContext) -> list[dict[str, Any]]:
    out = []
    roots = set(ctx.lab_cgroup_roots())
    for directory in ctx.lab_cgroup_dirs():  # never the VM's own cgroups, wherever the parent is
        if directory in roots:
            continue
        values: dict[str, Any] = {}
        for name in CGROUP_FILES:
            try:
                text = (directory / name).read_text().strip()
            except OSError:
                continue
            values[name] = len(text.split()) if name == "cgroup.procs" else _compact(name, text)
        out.append({"path": str(directory), "files": values})
    return out


KEYED_FILES = ("pids.events", "cpu.stat")


def _compact(name: str, text: str) -> Any:
    if name in KEYED_FILES:
        pairs = [line.split() for line in text.splitlines()]
        return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}
    return int(text) if text.lstrip("-").isdigit() else text
