"""Checks, solves and resets of the cgroup labs (``cg-pids``, ``cg-forkbomb``, ``cg-cpu``), v1 and v2 alike.

The back-end is the context's choice for the controller (its v1 hierarchy, else
cgroup2 if offered there); the kernel helpers in ``cgroup_control`` hide the
differences in file names and units. Every check reads the counters the kernel
keeps (``pids.events``, ``cpu.stat``), never only the limit the attendee wrote:
``pids.current <= pids.max`` proves nothing (moving processes in can exceed max),
a refused fork does. Control files are checked for bind mounts first, so a
forged ``pids.max`` fails as forged.
"""

from __future__ import annotations

from dataclasses import dataclass

from node_agent.kernel import cgroup_control as cc
from node_agent.kernel import forkbomb, procfs, reaper
from node_agent.labs import solve_wait
from node_agent.labs.context import LabContext
from node_agent.labs.model import CheckResult, ResetReport
from node_agent.labs.registry import checker, resetter, solver


def lab_cgroup(ctx: LabContext, controller: str, name: str) -> cc.LabCgroup | None:
    """The lab cgroup ``<parent>/<name>`` on the back-end the context chose for ``controller``; None if none."""
    backend, root = ctx.cgroup_backend(controller), ctx.cgroup_root(controller)
    if backend is None or root is None:
        return None
    return cc.LabCgroup(cc.Hierarchy(1 if backend == "v1" else 2, root, controller), f"{ctx.cgroup_parent}/{name}")


def _unavailable(controller: str) -> CheckResult:
    return CheckResult.unavailable("unavailable on this VM: " + cc.unavailable_reason(controller))


def _forged(cg: cc.LabCgroup, files: tuple[str, ...]) -> CheckResult | None:
    reason = cc.forged_reason(cg, *files)
    if reason:
        return CheckResult.forged(reason, evidence={"cgroup": str(cg.path), "files_checked": list(files)})
    return None


def _attendee_members(ctx: LabContext, cg: cc.LabCgroup) -> tuple[list[int], list[int]]:
    """(every member, the members running as the attendee)."""
    members = cc.procs(cg)
    return members, [pid for pid in members if procfs.uid_of(pid) == ctx.attendee.uid]


def _base(cg: cc.LabCgroup) -> dict:
    return {"cgroup": str(cg.path), "backend": f"v{cg.version}"}


def _missing(cg: cc.LabCgroup) -> CheckResult:
    return CheckResult.fail(f"There is no cgroup {cg.path} yet: create it with mkdir (as root).", evidence=_base(cg))


def _reap() -> None:
    reaper.reap_orphans()


# ---- cg-pids -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PidsParams:
    cgroup: str
    max: int = 0  # the pids.max the step wants; 0 means the attendee's own nonce-derived number


def _wanted_max(ctx: LabContext, p: PidsParams) -> int:
    return p.max or ctx.pids_max


@checker("cgroup.pids_refused", PidsParams)
def check_pids_refused(ctx: LabContext, p: PidsParams) -> CheckResult:
    """The cgroup has the attendee's processes, ``pids.max`` is their number, and a fork was really refused."""
    cg = lab_cgroup(ctx, "pids", p.cgroup)
    if cg is None:
        return _unavailable("pids")
    if not cc.exists(cg):
        return _missing(cg)
    forged = _forged(cg, ("pids.max", "pids.events", "pids.current", "cgroup.procs"))
    if forged:
        return forged
    wanted = _wanted_max(ctx, p)
    members, mine = _attendee_members(ctx, cg)
    limit, current, refused = cc.pids_max(cg), cc.pids_current(cg), cc.pids_events(cg)
    evidence = {**_base(cg), "members": members, "attendee_members": mine, "pids.max": limit,
                "pids.current": current, "pids.events.max": refused, "wanted_max": wanted}
    if not mine:
        return CheckResult.fail(f"None of your processes is in {cg.path}: move your shell in "
                                f"(echo $$ into its cgroup.procs).", evidence)
    if limit is None:
        return CheckResult.fail(f"pids.max of {cg.path} is still \"max\" (no limit): write {wanted} into it.", evidence)
    if limit != wanted:
        return CheckResult.fail(f"pids.max is {limit}, but your number for this lab is {wanted}.", evidence)
    if refused == 0:
        return CheckResult.fail(f"pids.max is set but no fork has been refused yet: start more processes in "
                                f"{cg.path} until one fails with \"Resource temporarily unavailable\".", evidence)
    return CheckResult.ok(evidence)


@solver("cgroup.pids_solve", PidsParams)
def solve_pids(ctx: LabContext, p: PidsParams) -> dict:
    """Create the cgroup, set the attendee's ``pids.max``, start a stand-in spawner in it as the attendee,
    and wait until the kernel has refused one of its forks."""
    cg = _require(ctx, "pids", p.cgroup)
    cc.create(cg)
    wanted = _wanted_max(ctx, p)
    cc.set_pids_max(cg, wanted)
    # Bounded: at most wanted + 5 sleepers, one every 5 ms, each gone after 10 minutes.
    spawner = f"i=0; while [ $i -lt {wanted + 5} ]; do sleep 600 & i=$((i+1)); sleep 0.005; done; wait"
    holder = ctx.spawn(["sh", "-c", spawner], as_attendee=True, cgroup=[cg.path])
    refused = solve_wait.until(lambda: cc.pids_events(cg) > 0)
    return {**_base(cg), "holder": holder.pid, "pids.max": wanted, "pids.events.max": cc.pids_events(cg),
            "refused": refused}


# ---- cg-forkbomb ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForkbombParams:
    cgroup: str
    max: int = 50
    probe: bool = True  # the agent's own bounded probe must see EAGAIN inside the cgroup


@checker("cgroup.forkbomb_contained", ForkbombParams)
def check_forkbomb(ctx: LabContext, p: ForkbombParams) -> CheckResult:
    """``pids.max`` is ``max``, the bomb reached it (peak, refused forks), and the agent's own bounded probe,
    moved into the cgroup, gets EAGAIN: the limit is enforced by the kernel, not just written."""
    cg = lab_cgroup(ctx, "pids", p.cgroup)
    if cg is None:
        return _unavailable("pids")
    if not cc.exists(cg):
        return _missing(cg)
    forged = _forged(cg, ("pids.max", "pids.events", "pids.current", "pids.peak", "cgroup.procs"))
    if forged:
        return forged
    limit, refused, peak = cc.pids_max(cg), cc.pids_events(cg), cc.pids_peak(cg)
    evidence = {**_base(cg), "pids.max": limit, "pids.current": cc.pids_current(cg), "pids.peak": peak,
                "pids.events.max": refused, "members": cc.procs(cg)}
    if limit != p.max:
        return CheckResult.fail(f"pids.max of {cg.path} is {'max' if limit is None else limit}; set it to {p.max} "
                                f"before you start the bomb.", evidence)
    if refused == 0:
        return CheckResult.fail(f"No fork has been refused in {cg.path} yet: run the bounded fork bomb inside it.",
                                evidence)
    if peak is not None and peak < p.max:
        return CheckResult.fail(f"The cgroup never held {p.max} processes (peak {peak}): the bomb must run inside it.",
                                evidence)
    if p.probe:
        result = forkbomb.probe(cg.file("cgroup.procs"), budget=min(forkbomb.MAX_BUDGET, p.max + 1), reap=_reap)
        evidence.update({"probe_forks": result.forks, "probe_refused": result.refused,
                         "probe_error": result.error, "pids.events.max_after_probe": cc.pids_events(cg)})
        if result.error or not result.saw_eagain:
            return CheckResult.fail(f"The agent's probe in {cg.path} forked {result.forks} times without a refusal "
                                    f"{result.error}: the limit is not enforced.", evidence)
    return CheckResult.ok(evidence)


@solver("cgroup.forkbomb_solve", ForkbombParams)
def solve_forkbomb(ctx: LabContext, p: ForkbombParams) -> dict:
    """Create the cgroup with ``pids.max`` = ``max`` and run the bounded bomb (≤ 300 forks, self-destruct);
    its processes stay, holding the cgroup at the limit, until the reset or their timer."""
    cg = _require(ctx, "pids", p.cgroup)
    cc.create(cg)
    cc.set_pids_max(cg, p.max)
    _release_held(cg)
    bomb = forkbomb.run(cg.file("cgroup.procs"), budget=forkbomb.MAX_BUDGET, lifetime=HOLD_S, hold=True)
    if isinstance(bomb, forkbomb.Bomb):  # keep the cgroup at its limit, as a running bomb does
        _HELD[str(cg.path)] = bomb
        result = bomb.result
    else:
        result = bomb
    return {**_base(cg), "forks": result.forks, "refused": result.refused,
            "first_refused_ms": None if result.first_refused_s is None else round(result.first_refused_s * 1000, 3),
            "pids.events.max": cc.pids_events(cg), "pids.peak": cc.pids_peak(cg)}


# The agent's own bomb from a solve keeps the cgroup full for HOLD_S seconds (its self-destruct timer),
# or until the reset, which releases it here after killing the cgroup's members.
HOLD_S = 60.0
_HELD: dict[str, forkbomb.Bomb] = {}


def _release_held(cg: cc.LabCgroup) -> None:
    bomb = _HELD.pop(str(cg.path), None)
    if bomb is not None:
        bomb.release()


# ---- cg-cpu --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuParams:
    cgroup: str
    quota_us: int = 50_000
    period_us: int = 100_000


@checker("cgroup.cpu_throttled", CpuParams)
def check_cpu_throttled(ctx: LabContext, p: CpuParams) -> CheckResult:
    """A CPU quota is set, the attendee's processes are in the cgroup, and the kernel has throttled it."""
    cg = lab_cgroup(ctx, "cpu", p.cgroup)
    if cg is None:
        return _unavailable("cpu")
    if not cc.exists(cg):
        return _missing(cg)
    quota_file = "cpu.max" if cg.version == 2 else "cpu.cfs_quota_us"
    forged = _forged(cg, (quota_file, "cpu.stat", "cgroup.procs"))
    if forged:
        return forged
    quota, period = cc.cpu_quota(cg)
    stat = cc.cpu_stat(cg)
    members, mine = _attendee_members(ctx, cg)
    evidence = {**_base(cg), "quota_us": quota, "period_us": period, "nr_periods": stat.nr_periods,
                "nr_throttled": stat.nr_throttled, "throttled_usec": stat.throttled_usec,
                "members": members, "attendee_members": mine}
    if quota is None:
        setting = f"\"{p.quota_us} {p.period_us}\" into cpu.max" if cg.version == 2 else f"{p.quota_us} into cpu.cfs_quota_us"
        return CheckResult.fail(f"{cg.path} has no CPU quota yet: write {setting}.", evidence)
    if not mine:
        return CheckResult.fail(f"None of your processes is in {cg.path}: move your shell in, then start the CPU hog "
                                f"from it.", evidence)
    if stat.nr_throttled == 0:
        return CheckResult.fail(f"The quota is set but the kernel has not throttled {cg.path} yet (nr_throttled 0): "
                                f"run a CPU hog such as stress-ng --cpu 1 inside it.", evidence)
    return CheckResult.ok(evidence)


@solver("cgroup.cpu_solve", CpuParams)
def solve_cpu(ctx: LabContext, p: CpuParams) -> dict:
    """Create the cgroup, set the quota, and run busy loops in it as the attendee until the kernel reports a
    throttled period; then stop the loops and keep a sleeping member.

    The cgroup competes with everything else as one entity of its weight (cpu.shares 1024 or cpu.weight
    100, like one ordinary task), so on a loaded machine its loops may never get the quota they need to be
    throttled. The solve raises the weight tenfold while the loops run and puts it back afterwards; the
    quota still caps them, so the rest of the VM keeps at least what the quota leaves.
    """
    cg = _require(ctx, "cpu", p.cgroup)
    cc.create(cg)
    cc.set_cpu_quota(cg, p.quota_us, p.period_us)
    weight = cc.cpu_weight(cg)
    cc.set_cpu_weight(cg, 10 * cc.CPU_WEIGHT_DEFAULT[cg.version])
    # Each loop is orphaned at once (a subshell that backgrounds it and exits), so the agent, a subreaper,
    # reaps it when it is stopped; as a child of the sleeping holder it would stay a zombie.
    loop = "(timeout 10 sh -c 'while :; do :; done' &);"
    holder = ctx.spawn(["sh", "-c", f"{loop * 4} exec sleep 600"], as_attendee=True, cgroup=[cg.path])
    throttled = solve_wait.until(lambda: cc.cpu_stat(cg).nr_throttled > 0, 2 * solve_wait.SOLVE_TIMEOUT)
    loops = [info for info in (procfs.read(pid) for pid in cc.procs(cg) if pid != holder.pid) if info]
    ctx.kill(loops)
    cc.set_cpu_weight(cg, weight)
    stat = cc.cpu_stat(cg)
    return {**_base(cg), "holder": holder.pid, "quota_us": p.quota_us, "period_us": p.period_us,
            "nr_throttled": stat.nr_throttled, "throttled_usec": stat.throttled_usec, "throttled": throttled,
            "busy_loops_stopped": [info.pid for info in loops]}


# ---- reset ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoveParams:
    cgroup: str
    controller: str = "pids"


@resetter("cgroup.remove", RemoveParams)
def reset_cgroup(ctx: LabContext, p: RemoveParams) -> ResetReport:
    """Stop forks (``pids.max`` 0), kill the cgroup's members (v2 ``cgroup.kill``; v1 freezer, SIGKILL, thaw),
    reap them, rmdir, and check that nothing of it is left."""
    report = ResetReport()
    cg = lab_cgroup(ctx, p.controller, p.cgroup)
    if cg is None or not cc.exists(cg):
        return report
    freezer = None
    if cg.version == 1 and ctx.cgroup_backend("freezer") == "v1":
        freezer = cc.Hierarchy(1, ctx.cgroup_root("freezer"), "freezer")
    try:
        killed = cc.remove(cg, reap=_reap, freezer=freezer)
    except cc.CgroupError as exc:
        report.leftovers.append(f"cgroup {cg.label()}: {exc}")
        return report
    finally:
        _release_held(cg)
    report.removed.append(f"cgroup {cg.label()}" + (f" and its processes {killed}" if killed else ""))
    if cc.exists(cg):
        report.leftovers.append(f"cgroup {cg.label()} still exists after rmdir")
    return report


# ---- shared --------------------------------------------------------------------------------------------


def _require(ctx: LabContext, controller: str, name: str) -> cc.LabCgroup:
    cg = lab_cgroup(ctx, controller, name)
    if cg is None:
        raise cc.CgroupError(cc.unavailable_reason(controller))
    return cg
