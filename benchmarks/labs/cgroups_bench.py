"""cgroup labs: fork-bomb containment, and check/solve/reset medians of cg-pids, cg-forkbomb and cg-cpu.

``python -m benchmarks.labs.cgroups_bench [--rounds N]`` as root on a lab VM (or this machine kind).

- Fork-bomb containment: a bounded bomb (``node_agent.kernel.forkbomb``) in a
  cgroup with ``pids.max`` = 50: time from its first fork attempt to the first
  refused one (EAGAIN), and the full cleanup (pids.max 0, kill every member,
  reap, rmdir) — with the children as static busybox processes and as copies
  of the Python leader, and the cleanup on each kill path this machine has
  (v1 SIGKILL after pids.max 0; v1 freezer; cgroup2 ``cgroup.kill``, the
  latter without a pids limit where cgroup2 lacks the pids controller). Every
  round verifies that nothing of the cgroup remains.
- Per step: check (after a solve), solve and reset medians through the
  engine, against a real attendee account created for the run and removed
  afterwards.
- Baseline: the same check the way lab platforms usually write it, a shell
  script of ``cat`` and ``grep`` over the same control files (it checks less:
  no forged-file detection, no attendee ownership, no probe).

Goals (docs/benchmarks.md floor): first refused fork 1.6 ms, cleanup 1.9–2.5 ms; goals
check ≤ 5 ms, reset ≤ 10 ms, fork-bomb cleanup ≤ 10 ms.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

from benchmarks.common import median
from benchmarks.labs import common
from benchmarks.labs.common import attendee_account, baseline_ms, fmt_ms, lab_engine, measure_step
from node_agent.kernel import cgroup_control as cc
from node_agent.kernel import forkbomb, reaper

STEPS = (("cg-pids", "limit"), ("cg-forkbomb", "bomb"), ("cg-cpu", "throttle"))
GOAL_CHECK_MS, GOAL_RESET_MS, GOAL_CLEANUP_MS = 5.0, 10.0, 10.0
BOMB_MAX = 50

# The baseline: what a lab platform's check script for these steps usually is.
BASELINE = {
    "cg-pids": """CG=$1; [ -d "$CG" ] || exit 1
[ -n "$(cat "$CG/cgroup.procs")" ] || exit 1
[ "$(cat "$CG/pids.max")" = "$2" ] || exit 1
grep -q '^max [1-9]' "$CG/pids.events" || exit 1""",
    "cg-forkbomb": """CG=$1; [ -d "$CG" ] || exit 1
[ "$(cat "$CG/pids.max")" = 50 ] || exit 1
grep -q '^max [1-9]' "$CG/pids.events" || exit 1""",
    "cg-cpu": """CG=$1; [ -d "$CG" ] || exit 1
[ -n "$(cat "$CG/cgroup.procs")" ] || exit 1
q=$(cat "$CG/cpu.cfs_quota_us" 2>/dev/null || cut -d' ' -f1 "$CG/cpu.max"); [ "$q" != -1 ] && [ "$q" != max ] || exit 1
grep -q '^nr_throttled [1-9]' "$CG/cpu.stat" || exit 1""",
}


# ---- fork-bomb containment ------------------------------------------------------------------------------


def _bomb_round(parent: str, hierarchy: cc.Hierarchy, *, slim: bool, limit: bool,
                freezer: cc.Hierarchy | None, force_freezer: bool = False) -> dict[str, Any]:
    cg = cc.LabCgroup(hierarchy, f"{parent}/bomb")
    cc.create(cg)
    if limit:
        cc.set_pids_max(cg, BOMB_MAX)
    bomb = forkbomb.run(cg.file("cgroup.procs"), budget=forkbomb.MAX_BUDGET if limit else BOMB_MAX - 1,
                        hold=True, lifetime=10, slim=slim)
    assert isinstance(bomb, forkbomb.Bomb), bomb
    members = len(cc.procs(cg))
    t0 = time.perf_counter()
    if force_freezer and freezer is not None:  # the path taken when a member forks during the kill
        killed = cc.freeze_and_kill(cg, freezer, reap=reaper.reap_orphans)
        cc.rmdir(cg, reap=reaper.reap_orphans)
    else:
        killed = cc.remove(cg, reap=reaper.reap_orphans, freezer=freezer)
    cleanup = time.perf_counter() - t0
    bomb.release()
    alive = [pid for pid in killed if os.path.exists(f"/proc/{pid}") and _state(pid) not in ("Z", "X", "")]
    return {"first_refused_s": bomb.result.first_refused_s, "cleanup_s": cleanup, "members": members,
            "clean": not cg.path.exists() and not alive and (freezer is None or not (freezer.mount / cg.relpath).exists())}


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0]
    except OSError:
        return ""


def bomb_containment(rounds: int) -> list[dict[str, Any]]:
    """One row per (children kind, kill path): medians of first refused fork and cleanup."""
    pids, freezer, unified = cc.find_hierarchy("pids"), cc.find_hierarchy("freezer"), cc.find_hierarchy("")
    cpu = cc.find_hierarchy("cpu")
    parent = "labfleet-bench-" + secrets.token_hex(3)
    # (label, hierarchy, busybox children, pids.max 50, freezer, force the freezer path)
    variants: list[tuple[str, cc.Hierarchy, bool, bool, cc.Hierarchy | None, bool]] = []
    if pids is not None:
        how = "pids.max 0 + one SIGKILL round" if pids.version == 1 else "cgroup.kill"
        variants += [(f"v{pids.version} pids, busybox children (posix_spawn), {how}", pids, True, True, None, False),
                     (f"v{pids.version} pids, Python children (fork), {how}", pids, False, True, None, False)]
    if cpu is not None and cpu.version == 1:
        variants.append(("v1 cpu cgroup (no pids.max, as cg-cpu), 49 children, one SIGKILL round", cpu, True, False,
                         freezer, False))
        if freezer is not None and freezer.version == 1:
            variants.append(("v1 cpu cgroup, 49 children, freezer path (move, freeze, SIGKILL, thaw)", cpu, True,
                             False, freezer, True))
    if unified is not None and (pids is None or pids.version == 1):
        variants.append(("cgroup2 cgroup.kill, 49 busybox children (cgroup2 here has no pids)", unified, True, False,
                         None, False))
    rows = []
    try:
        for label, hierarchy, slim, limit, frz, force in variants:
            got = [_bomb_round(parent, hierarchy, slim=slim, limit=limit, freezer=frz, force_freezer=force)
                   for _ in range(rounds)]
            firsts = [g["first_refused_s"] for g in got if g["first_refused_s"] is not None]
            rows.append({"variant": label, "rounds": rounds, "members": median([g["members"] for g in got]),
                         "first_refused_ms": median(firsts) * 1000 if firsts else None,
                         "cleanup_ms": median([g["cleanup_s"] for g in got]) * 1000,
                         "all_clean": all(g["clean"] for g in got)})
    finally:
        for h in (pids, freezer, unified, cpu):
            if h is not None and (h.mount / parent).is_dir():
                cc.remove(cc.LabCgroup(h, f"{parent}/bomb"), reap=reaper.reap_orphans)
                (h.mount / parent).rmdir()
    return rows


# ---- per-step check / solve / reset ---------------------------------------------------------------------


def step_medians(rounds: int) -> list[dict[str, Any]]:
    rows = []
    with attendee_account() as attendee, lab_engine(attendee, reset=[lab for lab, _ in STEPS]) as labs:
        engine = labs.engine
        for lab_id, step in STEPS:
            lab = labs.catalog.get(lab_id)
            if engine.unavailable_reasons(lab):
                rows.append({"step": f"{lab_id}/{step}", "unavailable": engine.unavailable_reasons(lab)})
                continue
            ctx = labs.context(lab)
            name, controller = lab.cgroup  # the lab's own cgroup, as {cgroup_dir} shows it
            cg_dir = ctx.cgroup_dir(controller, name)
            t = measure_step(engine, lab_id, step, rounds,
                             lambda lab_id=lab_id, cg_dir=cg_dir, ctx=ctx: baseline_ms(
                                 BASELINE[lab_id], [str(cg_dir), str(ctx.pids_max)], 5))
            rows.append({"step": f"{lab_id}/{step}", "backend": ctx.cgroup_backend(controller), "rounds": rounds,
                         "checker_ms": median(t.checker), **t.medians()})
    return rows


# ---- output ---------------------------------------------------------------------------------------------


def run(rounds: int = 10) -> dict[str, Any]:
    """Both parts; the lead's ``benchmarks/labs/run.py`` calls this and formats the result."""
    reaper.become_subreaper()
    return {"forkbomb": bomb_containment(rounds), "steps": step_medians(rounds)}


def print_report(out: dict[str, Any]) -> None:
    print("\n## fork-bomb containment (pids.max 50, bounded bomb ≤ 300 forks)")
    print("| variant | members | first refused fork | cleanup (kill+reap+rmdir) | goal | met | clean |")
    print("|---|---|---|---|---|---|---|")
    for r in out["forkbomb"]:
        met = "yes" if r["cleanup_ms"] <= GOAL_CLEANUP_MS else "**no**"
        print(f"| {r['variant']} | {r['members']:.0f} | {fmt_ms(r['first_refused_ms'])} | {fmt_ms(r['cleanup_ms'])} | "
              f"≤ {GOAL_CLEANUP_MS:.0f} ms | {met} | {r['all_clean']} |")
    print("\n## per step (medians)")
    print("| step | back-end | check (engine) | checker alone | shell cat/grep check | ratio | solve | reset "
          "| goals (check ≤ 5, reset ≤ 10) | all passed / clean |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in out["steps"]:
        if "unavailable" in r:
            print(f"| {r['step']} | unavailable: {'; '.join(r['unavailable'])} | | | | | | | | |")
            continue
        ratio = r["baseline_check_ms"] / r["check_ms"] if r["check_ms"] else float("nan")
        met = "yes" if r["check_ms"] <= GOAL_CHECK_MS and r["reset_ms"] <= GOAL_RESET_MS else "**no**"
        print(f"| {r['step']} | {r['backend']} | {fmt_ms(r['check_ms'])} | {fmt_ms(r['checker_ms'])} | "
              f"{fmt_ms(r['baseline_check_ms'])} | "
              f"{ratio:.1f}x faster | {fmt_ms(r['solve_ms'])} | {fmt_ms(r['reset_ms'])} | {met} | "
              f"{r['all_passed']} / {r['all_clean']} |")


def main() -> None:
    common.main(__doc__, "cgroup labs", "the benchmark creates cgroups and a bounded fork bomb",
                lambda rounds: print_report(run(rounds)))


if __name__ == "__main__":
    main()
