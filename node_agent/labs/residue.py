"""What a lab left behind: the scan that proves a reset clean, or names what is still there.

It looks, for one attendee and one lab context, at processes in non-initial
namespaces, lab cgroup members and holders, cgroups under the lab parent,
network namespaces and links carrying the lab prefix, tmpfs and nsfs mounts
on the host in the attendee's reach, SysV IPC objects of the attendee uid, and
the hostname against ``/etc/hostname``.
"""

from __future__ import annotations

import os
from pathlib import Path

from node_agent.kernel import procfs
from node_agent.labs.attendee_files import excerpt
from node_agent.labs.context import LabContext

SYSVIPC = Path("/proc/sysvipc")


def scan(ctx: LabContext, *, netns_names: tuple[str, ...] = (), mount_points: tuple[str, ...] = ()) -> list[str]:
    """Everything of the lab still present, in words; [] when clean."""
    found: list[str] = []
    found += _processes(ctx)
    found += _cgroups(ctx)
    found += _netns(ctx, netns_names)
    found += _links(ctx)
    found += _mounts(ctx, mount_points)
    found += _ipc(ctx)
    found += _hostname()
    return found


def _processes(ctx: LabContext) -> list[str]:
    out = []
    members = ctx.lab_cgroup_members()
    holders = {h.pid for h in ctx.holders()}
    for p in ctx.processes():
        new = sorted(t for t in p.ns if ctx.in_new_ns(p, t))
        if new or p.pid in members or p.pid in holders:
            why = f"in new {','.join(new)} namespace" if new else "in a lab cgroup" if p.pid in members else "holder"
            out.append(f"process {p.pid} ({excerpt(p.comm)}, uid {p.uid}) {why}")
    return out


def _cgroups(ctx: LabContext) -> list[str]:
    roots = set(ctx.lab_cgroup_roots())
    return [f"cgroup {d}" for d in sorted(ctx.lab_cgroup_dirs()) if d not in roots]


def _netns(ctx: LabContext, names: tuple[str, ...]) -> list[str]:
    try:
        present = os.listdir("/run/netns")
    except OSError:
        return []
    return [f"network namespace {n}" for n in sorted(present) if n.startswith(ctx.prefix) or n in names]


def _links(ctx: LabContext) -> list[str]:
    try:
        links = os.listdir("/sys/class/net")
    except OSError:
        return []
    return [f"network link {n}" for n in sorted(links) if n.startswith(ctx.prefix)]


def _mounts(ctx: LabContext, mount_points: tuple[str, ...]) -> list[str]:
    home = str(ctx.attendee.home)
    out = []
    for m in procfs.mountinfo():
        under_home = m.mount_point == home or m.mount_point.startswith(home + "/")
        lab_point = m.mount_point in mount_points
        netns_bind = m.fstype == "nsfs" and Path(m.mount_point).name.startswith(ctx.prefix)
        if ((under_home or lab_point) and m.fstype in ("tmpfs", "nsfs", "proc", "overlay")) or netns_bind:
            out.append(f"mount {m.fstype} on {m.mount_point}")
    return out


def _ipc(ctx: LabContext) -> list[str]:
    out = []
    for kind in ("shm", "sem", "msg"):
        try:
            lines = (SYSVIPC / kind).read_text().splitlines()
        except OSError:
            continue
        header = lines[0].split()
        uid_col, id_col = header.index("uid"), header.index(kind == "shm" and "shmid" or kind == "sem" and "semid"
                                                             or "msqid")
        for line in lines[1:]:
            cols = line.split()
            if int(cols[uid_col]) == ctx.attendee.uid:
                out.append(f"SysV {kind} id {cols[id_col]} of uid {ctx.attendee.uid}")
    return out


def _hostname() -> list[str]:
    try:
        golden = Path("/etc/hostname").read_text().strip()
    except OSError:
        return []
    current = procfs.hostname()
    return [] if not golden or current == golden else [f"hostname is {current!r}, /etc/hostname says {golden!r}"]
