"""Checkers, solvers and resetters of the namespace labs (docs/labs.md, "Namespaces"), except the network ones.

Every check looks at the kernel state of the attendee's live processes
(``ctx.processes()``) and compares namespace inodes with the agent's own
(``ctx.own_ns``), never at argv: a binary renamed ``unshare`` proves nothing.
State that only exists inside a namespace (a hostname, SysV segments, cgroup
paths relative to a cgroup namespace) is read by a forked child that setns(2)es
(``nsinspect``). Evidence names the processes (pid, starttime) and the inodes
and values read; a reason says what to do next, in the attendee's words.

Resets kill only the lab's processes (``ctx.kill`` refuses others) and remove
the leaks docs/labs.md lists: a tmpfs on the host's mount point, SysV IPC objects of
the attendee on the host, a renamed VM.
"""

from __future__ import annotations

import os
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node_agent.kernel import nsinspect, procfs, proctable
from node_agent.kernel import rootfs as rootfs_tarball
from node_agent.kernel.proctable import ProcInfo
from node_agent.labs import attendee_files
from node_agent.labs.attendee_files import AttendeeFileError, excerpt
from node_agent.labs.context import LabContext
from node_agent.labs.model import CheckResult, ResetReport
from node_agent.labs.registry import checker, resetter, solver

HOLD = ["sleep", "infinity"]
SOLVE_TIMEOUT = 5.0
SECONDS_PER_DAY = 86400


# --- shared pieces ---------------------------------------------------------------------------------

def _in_new(ctx: LabContext, p: ProcInfo, *types: str) -> bool:
    return all(ctx.in_new_ns(p, t) for t in types)


def _ev(p: ProcInfo, *types: str, **extra: Any) -> dict[str, Any]:
    """Evidence for one process: its identity and the inodes of the namespaces looked at."""
    return {"pid": p.pid, "starttime": p.starttime, "comm": p.comm, "uid": p.uid,
            "ns": {t: p.ns.get(t) for t in types}, **extra}


def _same(p: ProcInfo) -> bool:
    """The pid still names the process that was listed (reads made in between are about it)."""
    return proctable.alive(p.pid, p.starttime)


def _forged(procs: list[ProcInfo], names: tuple[str, ...]) -> CheckResult | None:
    """A forged-file verdict when any of ``names`` under /proc/<pid> is not procfs's own file."""
    mounts = procfs.mountinfo("self")
    for p in procs:
        try:
            reasons = nsinspect.forged_proc_files(p.pid, names, mounts=mounts)
        except FileNotFoundError:
            continue
        if reasons:
            return CheckResult.forged(
                f"Files of process {p.pid} under /proc are not the kernel's: {'; '.join(reasons)}. "
                "The check reads the kernel, so a bind mount over procfs cannot pass it.",
                {"pid": p.pid, "starttime": p.starttime, "forged": reasons})
    return None


def _wait_passing(check: Callable[[], CheckResult]) -> CheckResult:
    """Poll a check until it passes (a solve's holder needs a moment to set itself up), bounded."""
    deadline = time.monotonic() + SOLVE_TIMEOUT
    while True:
        result = check()
        if result.passed or time.monotonic() > deadline:
            return result
        time.sleep(0.005)


def _solved(holder, result: CheckResult) -> dict[str, Any]:
    return {"holder": {"pid": holder.pid, "starttime": holder.starttime, "argv": list(holder.argv)},
            "check": result.status, **({"reason": result.reason} if not result.passed else {})}


def _kill_in_new(ctx: LabContext, types: list[str], report: ResetReport,
                 also: Callable[[ProcInfo], bool] | None = None) -> None:
    """Kill the lab's processes in a new namespace of any of ``types``; outermost PID 1s first.

    ``types`` are the namespaces the lab's commands create (``unshare -r`` adds a
    user namespace to all of them), so a half-done attempt goes too.

    Killing the init of a pid namespace makes the kernel kill everything inside it
    (pid_namespaces(7)), so nested levels go with their top. ``also`` adds other
    lab processes to the same kill (members of a lab cgroup).
    """
    def targets() -> list[ProcInfo]:
        return [p for p in ctx.processes()
                if any(ctx.in_new_ns(p, t) for t in types) or (also is not None and also(p))]

    def kill(batch: list[ProcInfo]) -> list[ProcInfo]:
        killed = set(ctx.kill(batch))
        for q in batch:
            if q.pid in killed:
                new = [t for t in types if ctx.in_new_ns(q, t)]
                where = f"in a new {'/'.join(new)} namespace" if new else "in a lab cgroup"
                report.removed.append(f"process {q.pid} ({excerpt(q.comm)}) {where}")
        return targets()

    procs = targets()
    inits = [p for p in procs if len(p.nspid) == 2 and p.nspid[-1] == 1]
    if inits:
        procs = kill(inits)
    if procs:
        procs = kill(procs)
    report.leftovers.extend(f"process {p.pid} ({excerpt(p.comm)}) is still in a new namespace" for p in procs)


@dataclass(frozen=True)
class KillParams:
    types: list[str]


@resetter("ns.kill_in_new", KillParams)
def reset_kill_in_new(ctx: LabContext, p: KillParams) -> ResetReport:
    """Kill the attendee's processes in new namespaces of ``types`` (a pid namespace by its PID 1)."""
    report = ResetReport()
    _kill_in_new(ctx, p.types, report)
    return report


# --- ns-user ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NoParams:
    pass


@checker("ns.user_map", NoParams)
def check_user_map(ctx: LabContext, p: NoParams) -> CheckResult:
    """A process in a new user namespace whose uid_map is ``0 <uid> 1`` and setgroups ``deny``."""
    uid = ctx.attendee.uid
    want = [(0, uid, 1)]
    seen: list[dict[str, Any]] = []
    candidates = [q for q in ctx.processes() if _in_new(ctx, q, "user")]
    forged = _forged(candidates, ("uid_map", "setgroups"))
    if forged:
        return forged
    for q in candidates:
        try:
            uid_map, groups = nsinspect.id_map(q.pid, "uid"), nsinspect.setgroups(q.pid)
        except FileNotFoundError:
            continue
        if not _same(q):
            continue
        ev = _ev(q, "user", uid_map=[list(m) for m in uid_map], setgroups=groups)
        if uid_map == want and groups == "deny":
            return CheckResult.ok(ev)
        seen.append(ev)
    if not seen:
        return CheckResult.fail("None of your processes is in a new user namespace yet: run `unshare -Ur` "
                                "and keep that shell open.", {"processes": []})
    first = seen[0]
    if first["uid_map"] != [list(m) for m in want]:
        shown = "; ".join(" ".join(map(str, m)) for m in first["uid_map"]) or "empty"
        reason = (f"Process {first['pid']} is in a new user namespace, but its uid_map is '{shown}'. "
                  f"Map root inside to your uid outside ('0 {uid} 1'): use `unshare -Ur`.")
    else:
        reason = (f"Process {first['pid']} maps root to your uid, but setgroups is '{first['setgroups']}': "
                  "`unshare -r` writes 'deny' there before the gid_map; use it.")
    return CheckResult.fail(reason, {"processes": seen})


@solver("ns.user_map", NoParams)
def solve_user_map(ctx: LabContext, p: NoParams) -> dict[str, Any]:
    holder = ctx.spawn(["unshare", "-Ur", *HOLD])
    return _solved(holder, _wait_passing(lambda: check_user_map(ctx, p)))


# --- ns-mount-1 ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MountParams:
    mount_point: str = "/mnt"
    fstype: str = "tmpfs"


def _mounted(mounts: list[procfs.Mount], p: MountParams) -> list[procfs.Mount]:
    return [m for m in mounts if m.mount_point == p.mount_point and m.fstype == p.fstype]


@checker("ns.mount_private", MountParams)
def check_mount_private(ctx: LabContext, p: MountParams) -> CheckResult:
    """A process in a new mount namespace sees ``fstype`` on ``mount_point``; the host does not."""
    host = _mounted(procfs.mountinfo("self"), p)
    found = None
    candidates = [q for q in ctx.processes() if _in_new(ctx, q, "mnt")]
    forged = _forged(candidates, ("mountinfo",))
    if forged:
        return forged
    for q in candidates:
        try:
            mine = _mounted(nsinspect.mountinfo(q.pid), p)
        except FileNotFoundError:
            continue
        if mine and _same(q):
            found = _ev(q, "mnt", mount=f"{p.fstype} on {p.mount_point}")
            break
    evidence = {"process": found, "host_mounts": len(host), "host_mnt_ns": ctx.own_ns.get("mnt")}
    if host:
        return CheckResult.fail(
            f"The host itself has a {p.fstype} on {p.mount_point}: the mount escaped your namespace "
            "(you forgot -m, or the mount propagated). `lab reset` removes it; then use `unshare -mr`.", evidence)
    if found is None:
        return CheckResult.fail(
            f"None of your processes is in a new mount namespace with a {p.fstype} on {p.mount_point}: run "
            f"`unshare -mr`, then `mount -t {p.fstype} {p.fstype} {p.mount_point}`, and keep that shell open.",
            evidence)
    return CheckResult.ok(evidence)


@solver("ns.mount_private", MountParams)
def solve_mount_private(ctx: LabContext, p: MountParams) -> dict[str, Any]:
    script = f"mount -t {p.fstype} {p.fstype} {p.mount_point} && exec {' '.join(HOLD)}"
    holder = ctx.spawn(["unshare", "-Urm", "sh", "-c", script])
    return _solved(holder, _wait_passing(lambda: check_mount_private(ctx, p)))


@resetter("ns.mount_private", MountParams)
def reset_mount_private(ctx: LabContext, p: MountParams) -> ResetReport:
    """Kill the mount-namespace holders, then lazily unmount the lab's fstype from the host's mount point.

    Only a mount of exactly ``fstype`` on exactly ``mount_point`` is the lab's leak
    (the attendee forgot -m); nothing else on the host is unmounted.
    """
    report = ResetReport()
    _kill_in_new(ctx, ["mnt", "user"], report)
    for _ in range(16):  # stacked mounts come off one at a time; bounded
        if not _mounted(procfs.mountinfo("self"), p):
            break
        done = ctx.run(["umount", "-l", p.mount_point])
        if done.returncode != 0:
            report.leftovers.append(f"{p.fstype} on the host's {p.mount_point}: umount failed: {done.stderr.strip()}")
            break
        report.removed.append(f"{p.fstype} on the host's {p.mount_point}")
    else:
        report.leftovers.append(f"{p.fstype} still on the host's {p.mount_point} after 16 unmounts")
    return report


# --- ns-mount-2 ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RootfsParams:
    rootfs: str = "rootfs"  # relative to the attendee's home
    tarball: str = str(rootfs_tarball.DEFAULT_TARBALL)
    remove_tree: bool = True


def _rootfs_dir(ctx: LabContext, p: RootfsParams) -> Path:
    return ctx.attendee.home / p.rootfs


@checker("ns.rootfs", RootfsParams)
def check_rootfs(ctx: LabContext, p: RootfsParams) -> CheckResult:
    """PID 1 of a new pid namespace, in a new mount namespace, whose root is ``~/rootfs``."""
    root = _rootfs_dir(ctx, p)
    rooted: list[tuple[ProcInfo, str]] = []
    for q in ctx.processes():
        try:
            link = nsinspect.root_link(q.pid)
        except (FileNotFoundError, PermissionError):
            continue
        if link == str(root) and _same(q):
            rooted.append((q, link))
    forged = _forged([q for q, _ in rooted], ("status",))
    if forged:
        return forged
    for q, link in rooted:
        if _in_new(ctx, q, "mnt", "pid") and q.nspid and q.nspid[-1] == 1:
            return CheckResult.ok(_ev(q, "mnt", "pid", nspid=list(q.nspid), root=link))
    evidence = {"rootfs": str(root), "rooted": [_ev(q, "mnt", "pid", nspid=list(q.nspid)) for q, _ in rooted]}
    try:  # looked at without following a link the attendee planted on the way
        busybox = attendee_files.lookup(ctx.attendee, Path(p.rootfs, "bin", "busybox"))
    except AttendeeFileError as exc:
        return CheckResult.fail(f"{exc}. Unpack the root fs into a plain directory of your own "
                                f"(`lab reset` removes what is there).", evidence)
    if busybox is None:
        return CheckResult.fail(f"{root} does not hold the root fs yet: unpack it there first "
                                f"(`mkdir -p ~/{p.rootfs} && tar -xzf {p.tarball} -C ~/{p.rootfs}`).", evidence)
    if not rooted:
        return CheckResult.fail(f"No process of yours has {root} as its root directory: run `unshare -Ufmrp "
                                f"--mount-proc --root=$HOME/{p.rootfs} --wd=/ sh` and keep that shell open.", evidence)
    q = rooted[0][0]
    return CheckResult.fail(f"Process {q.pid} runs in {root} but is not PID 1 of a new PID and mount namespace "
                            "(NSpid must end in 1): add -p -f -m and --mount-proc.", evidence)


def _tarball(ctx: LabContext, p: RootfsParams) -> Path:
    """The staged tarball, or one built from the VM's busybox-static into the lab's work dir (no download)."""
    staged, built = Path(p.tarball), ctx.work_dir / "rootfs.tar.gz"
    if staged.is_file():
        return staged
    return built if built.is_file() else rootfs_tarball.build(built)


@solver("ns.rootfs", RootfsParams)
def solve_rootfs(ctx: LabContext, p: RootfsParams) -> dict[str, Any]:
    """Unpack the root fs as the attendee (tar reads the agent's tarball on stdin and writes as them, so a
    planted ~/rootfs link cannot aim it anywhere), then start a holder rooted there."""
    root = _rootfs_dir(ctx, p)
    unpacked = False
    try:
        busybox = attendee_files.lookup(ctx.attendee, Path(p.rootfs, "bin", "busybox"))
        if busybox is None:
            attendee_files.make_directory(ctx, p.rootfs)
    except AttendeeFileError as exc:
        raise AttendeeFileError(exc.path, f"{exc.problem}; `lab reset` removes it") from None
    if busybox is None:
        with open(_tarball(ctx, p), "rb") as tarball:
            attendee_files.run(ctx, ["tar", "-xzf", "-", "-p", "--no-same-owner", "-C", str(root)],
                               f"unpacking the root fs into {root}", stdin=tarball.fileno(), timeout=120)
        unpacked = True
    holder = ctx.spawn(["unshare", "-Ufmrp", "--mount-proc", f"--root={root}", "--wd=/", *HOLD])
    return {"unpacked": unpacked, **_solved(holder, _wait_passing(lambda: check_rootfs(ctx, p)))}


@resetter("ns.rootfs", RootfsParams)
def reset_rootfs(ctx: LabContext, p: RootfsParams) -> ResetReport:
    """Kill the namespace's init (the kernel kills the rest) and, if asked, remove the unpacked tree."""
    report = ResetReport()
    _kill_in_new(ctx, ["pid", "mnt", "user"], report)
    if p.remove_tree:  # a planted link goes, not what it points to; nothing across a mount
        report.merge(attendee_files.remove(ctx, p.rootfs))
    return report


# --- ns-pid ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PidNestParams:
    levels: int = 3
    comm: str = "sleep"


@checker("ns.pid_nested", PidNestParams)
def check_pid_nested(ctx: LabContext, p: PidNestParams) -> CheckResult:
    """``comm`` processes at each of ``levels`` nested pid namespaces, each level's inside the one above.

    A sleep at level k has k+1 NSpid fields; NS_GET_PARENT proves the levels are one chain.
    """
    own = ctx.own_ns.get("pid")
    sleepers = [q for q in ctx.processes() if q.comm == p.comm and _in_new(ctx, q, "pid")]
    forged = _forged(sleepers, ("status",))
    if forged:
        return forged
    by_depth: dict[int, list[ProcInfo]] = {}
    for q in sleepers:
        by_depth.setdefault(len(q.nspid) - 1, []).append(q)
    best: list[dict[str, Any]] = []
    for deep in by_depth.get(p.levels, []):
        try:
            chain = [n.ino for n in nsinspect.ns_ancestry(deep.pid)]  # deepest first, own last
        except FileNotFoundError:
            continue
        if len(chain) != p.levels + 1 or chain[-1] != own or not _same(deep):
            continue
        levels = []
        for level in range(1, p.levels + 1):
            ino = chain[p.levels - level]
            match = next((q for q in by_depth.get(level, []) if q.ns.get("pid") == ino), None)
            if match is None:
                break
            levels.append(_ev(match, "pid", level=level, nspid=list(match.nspid)))
        if len(levels) == p.levels:
            return CheckResult.ok({"levels": levels, "own_pid_ns": own})
        best = max(best, levels, key=len)
    reached = max((d for d in by_depth if 1 <= d <= p.levels), default=0)
    evidence = {"levels": best, "own_pid_ns": own,
                "found": {str(d): [q.pid for q in qs] for d, qs in sorted(by_depth.items())}}
    if reached == 0:
        return CheckResult.fail(
            f"No {p.comm} process of yours is in a new PID namespace: run `unshare -mrfp --mount-proc` and "
            f"start `{p.comm} 1h &` inside. (`unshare -p` without -f fails with 'Cannot allocate memory': add -f.)",
            evidence)
    if reached < p.levels:
        return CheckResult.fail(
            f"Found a {p.comm} down to level {reached} (NSpid with {reached + 1} fields) but none at level "
            f"{reached + 1}: from inside level {reached}, run `unshare -mrfp --mount-proc` again and start "
            f"`{p.comm} 1h &`.", evidence)
    return CheckResult.fail(
        f"There are {p.comm} processes {p.levels} levels deep, but not one at every level of the same chain "
        f"of nested PID namespaces: start a `{p.comm} 1h &` at each level on the way down.", evidence)


def _nested_script(levels: int) -> str:
    """The sh -c text of a solve: a holder at this level, then one more pid namespace, ``levels`` deep."""
    script = f"{' '.join(HOLD)} & wait"
    for _ in range(levels - 1):
        script = f"{' '.join(HOLD)} & exec unshare -fp --mount-proc sh -c {shlex.quote(script)}"
    return script


@solver("ns.pid_nested", PidNestParams)
def solve_pid_nested(ctx: LabContext, p: PidNestParams) -> dict[str, Any]:
    holder = ctx.spawn(["unshare", "-Urfp", "--mount-proc", "sh", "-c", _nested_script(p.levels)])
    return _solved(holder, _wait_passing(lambda: check_pid_nested(ctx, p)))


# --- ns-ipc ----------------------------------------------------------------------------------------

IPC_KINDS = {"shm": ("shmid", "-m"), "sem": ("semid", "-s"), "msg": ("msqid", "-q")}


def _host_ipc(uid: int) -> list[tuple[str, int]]:
    """(kind, id) of the SysV objects in the agent's IPC namespace created by or owned by ``uid``."""
    out = []
    for kind, (id_col, _flag) in IPC_KINDS.items():
        try:
            rows = nsinspect.parse_sysvipc_shm(Path(f"/proc/sysvipc/{kind}").read_text())
        except OSError:
            continue
        out.extend((kind, r[id_col]) for r in rows if uid in (r.get("uid"), r.get("cuid")))
    return out


@checker("ns.ipc_shm", NoParams)
def check_ipc_shm(ctx: LabContext, p: NoParams) -> CheckResult:
    """A new IPC namespace holding a shared memory segment that the host's namespace does not have."""
    forged = nsinspect.forged_paths((Path("/proc/sysvipc/shm"),))
    if forged:
        return CheckResult.forged(f"/proc/sysvipc/shm is not the kernel's: {'; '.join(forged)}.",
                                  {"forged": forged})
    host = {(s["key"], s["shmid"], s["cpid"], s["ctime"]) for s in nsinspect.sysvipc_shm()}
    leaked = [i for k, i in _host_ipc(ctx.attendee.uid) if k == "shm"]
    namespaces: dict[int, ProcInfo] = {}
    for q in ctx.processes():
        if _in_new(ctx, q, "ipc"):
            namespaces.setdefault(q.ns["ipc"], q)
    looked = []
    for ino, q in namespaces.items():
        try:
            inside = nsinspect.sysvipc_shm(q.pid, expect=nsinspect.NsId(nsinspect.ns_id(q.pid, "ipc").dev, ino))
        except (FileNotFoundError, nsinspect.NamespaceReadError):
            continue
        own = [s for s in inside if (s["key"], s["shmid"], s["cpid"], s["ctime"]) not in host]
        ev = _ev(q, "ipc", segments=[{"shmid": s["shmid"], "key": s["key"], "size": s["size"]} for s in own])
        if own:
            return CheckResult.ok({**ev, "host_segments_of_yours": leaked})
        looked.append(ev)
    evidence = {"namespaces": looked, "host_segments_of_yours": leaked}
    if leaked and not looked:
        return CheckResult.fail(
            f"Your segment(s) {leaked} are in the host's IPC namespace: you forgot -i. Run `unshare -i` first "
            "(`lab reset` removes the host ones).", evidence)
    if looked:
        return CheckResult.fail(
            f"Process {looked[0]['pid']} is in a new IPC namespace, but it holds no shared memory segment: "
            "run `ipcmk -M 4096` inside it and keep that shell open.", evidence)
    return CheckResult.fail("None of your processes is in a new IPC namespace: run `sudo unshare -i` (or "
                            "`unshare -Uri`), then `ipcmk -M 4096`, and keep that shell open.", evidence)


@solver("ns.ipc_shm", NoParams)
def solve_ipc_shm(ctx: LabContext, p: NoParams) -> dict[str, Any]:
    holder = ctx.spawn(["unshare", "-Uri", "sh", "-c", f"ipcmk -M 4096 >/dev/null && exec {' '.join(HOLD)}"])
    return _solved(holder, _wait_passing(lambda: check_ipc_shm(ctx, p)))


@resetter("ns.ipc_shm", NoParams)
def reset_ipc_shm(ctx: LabContext, p: NoParams) -> ResetReport:
    """Kill the IPC-namespace holders (their segments go with the namespace) and ipcrm host leaks of the uid."""
    report = ResetReport()
    _kill_in_new(ctx, ["ipc", "user"], report)
    for kind, ident in _host_ipc(ctx.attendee.uid):
        done = ctx.run(["ipcrm", IPC_KINDS[kind][1], str(ident)])
        if done.returncode == 0:
            report.removed.append(f"host SysV {kind} {ident} of uid {ctx.attendee.uid}")
        else:
            report.leftovers.append(f"host SysV {kind} {ident}: ipcrm failed: {done.stderr.strip()}")
    return report


# --- ns-uts ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UtsParams:
    golden: str = "/etc/hostname"  # where the VM's real hostname is kept


def _golden_hostname(p: UtsParams) -> str:
    try:
        return Path(p.golden).read_text().strip()
    except OSError:
        return ""


@checker("ns.uts_hostname", UtsParams)
def check_uts_hostname(ctx: LabContext, p: UtsParams) -> CheckResult:
    """A new UTS namespace whose hostname (read inside it) is ``lab-<nonce>``, the host's name unchanged.

    "The host" is the UTS namespace this check runs in: the agent's own (asserted
    initial at start), or a test's private one, so a test never renames the machine.
    """
    host_uts = nsinspect.ns_id("self", "uts")
    host_name, golden = os.uname().nodename, _golden_hostname(p)
    evidence: dict[str, Any] = {"host_uts_ns": host_uts.ino, "host_hostname": host_name, "golden": golden,
                                "wanted": ctx.hostname}
    if golden and host_name != golden:
        how = "with `hostname` outside a namespace or `hostnamectl`" if host_name == ctx.hostname else ""
        return CheckResult.fail(
            f"The VM itself was renamed to {host_name!r} {how} (its name is {golden!r}): the lab wants a new UTS "
            "namespace, not a renamed VM. `lab reset` restores the name; then use `unshare -Urnu`.".replace("  ", " "),
            evidence)
    namespaces: dict[int, ProcInfo] = {}
    for q in ctx.processes():
        if q.ns.get("uts") not in (None, host_uts.ino):
            namespaces.setdefault(q.ns["uts"], q)
    seen = []
    for ino, q in namespaces.items():
        try:
            name = nsinspect.uts_nodename(q.pid, expect=nsinspect.NsId(host_uts.dev, ino))
        except (FileNotFoundError, nsinspect.NamespaceReadError):
            continue
        ev = _ev(q, "uts", hostname=name)
        ev["ns"]["uts"] = ino
        if name == ctx.hostname:
            return CheckResult.ok({**evidence, "process": ev})
        seen.append(ev)
    evidence["namespaces"] = seen
    if seen:
        return CheckResult.fail(f"Process {seen[0]['pid']} has its own UTS namespace, but its hostname is "
                                f"'{excerpt(seen[0]['hostname'])}': set it to {ctx.hostname!r} there.", evidence)
    return CheckResult.fail(f"None of your processes is in a new UTS namespace: run `unshare -Urnu`, then "
                            f"`hostname {ctx.hostname}`, and keep that shell open.", evidence)


@solver("ns.uts_hostname", UtsParams)
def solve_uts_hostname(ctx: LabContext, p: UtsParams) -> dict[str, Any]:
    holder = ctx.spawn(["unshare", "-Urnu", "sh", "-c", f"hostname {ctx.hostname} && exec {' '.join(HOLD)}"])
    return _solved(holder, _wait_passing(lambda: check_uts_hostname(ctx, p)))


@resetter("ns.uts_hostname", UtsParams)
def reset_uts_hostname(ctx: LabContext, p: UtsParams) -> ResetReport:
    """Kill the UTS-namespace holders; give the (calling namespace's) host back its golden name if renamed."""
    report = ResetReport()
    _kill_in_new(ctx, ["uts", "net", "user"], report)
    golden, current = _golden_hostname(p), os.uname().nodename
    if not golden:
        report.leftovers.append(f"cannot restore the hostname: {p.golden} is missing or empty")
    elif current != golden:
        try:
            socket.sethostname(golden)
            report.removed.append(f"hostname {current!r} (restored {golden!r} from {p.golden})")
        except OSError as exc:
            report.leftovers.append(f"hostname is {current!r}, restoring {golden!r} failed: {exc}")
    return report


# --- ns-time ---------------------------------------------------------------------------------------

@checker("ns.time_offset", NoParams)
def check_time_offset(ctx: LabContext, p: NoParams) -> CheckResult:
    """A new time namespace whose CLOCK_MONOTONIC offset is ``nonce`` days."""
    want = ctx.nonce * SECONDS_PER_DAY
    candidates = [q for q in ctx.processes() if _in_new(ctx, q, "time")]
    forged = _forged(candidates, ("timens_offsets",))
    if forged:
        return forged
    seen = []
    for q in candidates:
        try:
            offsets = nsinspect.timens_offsets(q.pid)
        except FileNotFoundError:
            continue
        if not _same(q):
            continue
        ev = _ev(q, "time", monotonic=list(offsets.get("monotonic", (0, 0))))
        if offsets.get("monotonic") == (want, 0):
            return CheckResult.ok({**ev, "wanted_seconds": want})
        seen.append(ev)
    evidence = {"namespaces": seen, "wanted_seconds": want}
    if seen:
        got = seen[0]["monotonic"][0]
        return CheckResult.fail(
            f"Process {seen[0]['pid']} has its own time namespace, but its monotonic offset is {got} s "
            f"({got / SECONDS_PER_DAY:g} days); this lab wants {ctx.nonce} days: "
            f"`unshare -UrT --monotonic={want}`.", evidence)
    return CheckResult.fail(f"None of your processes is in a new time namespace: run `unshare -UrT "
                            f"--monotonic={want}` ({ctx.nonce} days) and keep that shell open.", evidence)


@solver("ns.time_offset", NoParams)
def solve_time_offset(ctx: LabContext, p: NoParams) -> dict[str, Any]:
    holder = ctx.spawn(["unshare", "-UrT", f"--monotonic={ctx.nonce * SECONDS_PER_DAY}", *HOLD])
    return _solved(holder, _wait_passing(lambda: check_time_offset(ctx, p)))


# --- ns-cgroup -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CgroupNsParams:
    cgroup: str = "cglab1"
    controller: str = "pids"


def _hierarchy_key(ctx: LabContext, p: CgroupNsParams) -> str:
    """The /proc/<pid>/cgroup key of the hierarchy the lab uses: the controller on v1, "" on v2."""
    return p.controller if ctx.cgroup_backend(p.controller) == "v1" else ""


@checker("ns.cgroup_root", CgroupNsParams)
def check_cgroup_root(ctx: LabContext, p: CgroupNsParams) -> CheckResult:
    """A process inside the lab cgroup, in a new cgroup namespace rooted there: it reads its cgroup as ``/``."""
    cg_dir = ctx.cgroup_dir(p.controller, p.cgroup)
    if cg_dir is None:
        return CheckResult.unavailable(f"no cgroup hierarchy on this VM offers the {p.controller} controller")
    key, want = _hierarchy_key(ctx, p), f"/{ctx.cgroup_parent}/{p.cgroup}"
    inside_cg = [q for q in ctx.processes() if q.cgroups.get(key) == want]
    forged = _forged(inside_cg, ("cgroup",))
    if forged:
        return forged
    seen = []
    for q in inside_cg:
        if not _in_new(ctx, q, "cgroup"):
            seen.append(_ev(q, "cgroup", cgroup=want, new_cgroup_ns=False))
            continue
        try:
            view = nsinspect.cgroup_seen_from_ns(q.pid, expect=nsinspect.NsId(
                nsinspect.ns_id(q.pid, "cgroup").dev, q.ns["cgroup"]))
        except (FileNotFoundError, nsinspect.NamespaceReadError):
            continue
        ev = _ev(q, "cgroup", cgroup=want, seen_inside=view.get(key))
        if view.get(key) == "/":
            return CheckResult.ok({**ev, "cgroup_dir": str(cg_dir)})
        seen.append(ev)
    evidence = {"cgroup_dir": str(cg_dir), "members": seen}
    if not inside_cg:
        return CheckResult.fail(f"None of your processes is in {cg_dir}: create it, move your shell in "
                                f"(`echo $$ | sudo tee {cg_dir}/cgroup.procs`), then run `unshare -UrC`.", evidence)
    if not any(e.get("new_cgroup_ns") is None for e in seen):
        return CheckResult.fail(f"Your shell is in {cg_dir}, but no process there has a new cgroup namespace: "
                                "run `unshare -UrC` from that shell.", evidence)
    return CheckResult.fail("A process in the lab cgroup has a new cgroup namespace, but it was created before "
                            "the move, so its root is elsewhere: move the shell first, then `unshare -UrC`.",
                            evidence)


@solver("ns.cgroup_root", CgroupNsParams)
def solve_cgroup_root(ctx: LabContext, p: CgroupNsParams) -> dict[str, Any]:
    cg_dir = ctx.cgroup_dir(p.controller, p.cgroup)
    if cg_dir is None:
        raise RuntimeError(f"no cgroup hierarchy on this VM offers the {p.controller} controller")
    cg_dir.mkdir(parents=True, exist_ok=True)
    # spawn joins the cgroup before exec, so unshare -C roots the new namespace in it.
    holder = ctx.spawn(["unshare", "-UrC", *HOLD], cgroup=[cg_dir])
    return _solved(holder, _wait_passing(lambda: check_cgroup_root(ctx, p)))


@resetter("ns.cgroup_root", CgroupNsParams)
def reset_cgroup_root(ctx: LabContext, p: CgroupNsParams) -> ResetReport:
    """Kill the members of the lab cgroup and the cgroup-namespace holders, wait for them to be reaped, rmdir it."""
    report = ResetReport()
    cg_dir = ctx.cgroup_dir(p.controller, p.cgroup)
    if cg_dir is None or not cg_dir.is_dir():
        return report
    key, want = _hierarchy_key(ctx, p), f"/{ctx.cgroup_parent}/{p.cgroup}"
    _kill_in_new(ctx, ["cgroup", "user"], report,
                 also=lambda q: q.cgroups.get(key, "") == want or q.cgroups.get(key, "").startswith(want + "/"))
    for d in sorted((c for c in cg_dir.rglob("*") if c.is_dir()), key=lambda c: -len(c.parts)) + [cg_dir]:
        if _rmdir(d):
            report.removed.append(f"cgroup {d}")
        else:
            report.leftovers.append(f"cgroup {d} could not be removed (still populated?)")
    return report


def _rmdir(path: Path, timeout: float = 2.0) -> bool:
    """rmdir a cgroup; EBUSY while killed tasks are still exiting, so retry briefly."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
