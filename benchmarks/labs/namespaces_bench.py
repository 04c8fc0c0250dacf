"""Namespace labs: check, solve and reset medians per step, against a shell-script check of lsns, grep and cat.

``python -m benchmarks.labs.namespaces_bench [--rounds N]`` as root on a lab VM (or this machine kind).

Per step (ns-user, ns-mount-1, ns-mount-2, ns-pid, ns-ipc, ns-uts, ns-time,
ns-cgroup): the engine's solve, then five checks, then five runs of the
baseline, then the engine's reset; every round must pass and end clean (the
residue scan). A real attendee account is created for the run and removed
afterwards; the holders run as that account.

Baseline: the same check the way lab platforms usually write it, a shell
script calling ``lsns``, ``grep``, ``cat`` (and ``nsenter`` where the state is
only visible inside the namespace). It checks less than the engine: one
process per namespace (what ``lsns`` lists), no forged-file detection, no PID
reuse guard.

Goals (issue 3, from docs/benchmarks.md's floor of 0.06–3 ms per namespace check):
check ≤ 5 ms median per step, reset ≤ 10 ms.
"""

from __future__ import annotations

from typing import Any

from benchmarks.labs import common
from benchmarks.labs.common import (
    NONCE,
    attendee_account,
    baseline_ms,
    fmt_ms,
    lab_engine,
    measure_step,
)
from node_agent.kernel import reaper, rootfs

LABS = ("ns-user", "ns-mount-1", "ns-mount-2", "ns-pid", "ns-ipc", "ns-uts", "ns-time", "ns-cgroup")
GOAL_CHECK_MS, GOAL_RESET_MS = 5.0, 10.0

# Arguments: $1 uid, $2 user, $3 home, $4 nonce, $5 lab cgroup path (relative, as /proc/<pid>/cgroup shows it).
_PIDS_OF = 'pids() { lsns -t "$1" -n -o NS,PID,USER | awk -v u="$USER_NAME" -v me="$(readlink /proc/self/ns/$1 ' \
           '| tr -dc 0-9)" \'$3 == u && $1 != me {print $2}\'; }\nUSER_NAME=$2\n'
BASELINE = {
    "ns-user": _PIDS_OF + """for p in $(pids user); do
  grep -qE "^ +0 +$1 +1$" /proc/$p/uid_map && grep -q deny /proc/$p/setgroups && exit 0
done; exit 1""",
    "ns-mount-1": _PIDS_OF + """grep -q ' /mnt .* - tmpfs ' /proc/self/mountinfo && exit 1
for p in $(pids mnt); do grep -q ' /mnt .* - tmpfs ' /proc/$p/mountinfo && exit 0; done; exit 1""",
    "ns-mount-2": _PIDS_OF + """for p in $(pids pid); do
  [ "$(readlink /proc/$p/root)" = "$3/rootfs" ] && grep -qE '^NSpid:.*[[:space:]]1$' /proc/$p/status && exit 0
done; exit 1""",
    "ns-pid": """depths=$(for p in $(lsns -t pid -n -o PID,USER | awk -v u="$2" '$2 == u {print $1}'); do
  for c in $(cat /proc/$p/task/*/children 2>/dev/null) $p; do
    grep -q '^Name:.sleep$' /proc/$c/status 2>/dev/null && grep '^NSpid:' /proc/$c/status | awk '{print NF - 1}'
  done; done | sort -u | tr '\\n' ' ')
case "$depths" in *2*3*4*) exit 0;; esac; exit 1""",
    "ns-ipc": _PIDS_OF + """for p in $(pids ipc); do
  [ "$(nsenter -t $p -i cat /proc/sysvipc/shm | grep -c .)" -gt 1 ] && exit 0
done; exit 1""",
    "ns-uts": _PIDS_OF + """[ "$(cat /proc/sys/kernel/hostname)" = "$(cat /etc/hostname)" ] || exit 1
for p in $(pids uts); do [ "$(nsenter -t $p -u cat /proc/sys/kernel/hostname)" = "lab-$4" ] && exit 0; done; exit 1""",
    "ns-time": _PIDS_OF + """for p in $(pids time); do
  grep -qE "^monotonic +$(( $4 * 86400 )) +0$" /proc/$p/timens_offsets && exit 0
done; exit 1""",
    "ns-cgroup": _PIDS_OF + """for p in $(pids cgroup); do
  grep -q ":pids:$5\\$" /proc/$p/cgroup && nsenter -t $p -C cat /proc/$p/cgroup | grep -q ':pids:/$' && exit 0
done; exit 1""",
}


def step_medians(rounds: int) -> list[dict[str, Any]]:
    rows = []
    with attendee_account("lfn") as attendee, lab_engine(attendee, reset=LABS, nonce=NONCE) as labs:
        engine = labs.engine
        rootfs.build(labs.work / "ns-mount-2" / "rootfs.tar.gz")  # the solve's fallback location: built once, not timed
        for lab_id in LABS:
            lab = labs.catalog.get(lab_id)
            (step,) = lab.steps
            if engine.unavailable_reasons(lab):
                rows.append({"step": f"{lab_id}/{step.id}", "unavailable": engine.unavailable_reasons(lab)})
                continue
            args = [str(attendee.uid), attendee.user, str(attendee.home), str(NONCE), f"/{labs.cgroup_parent}/{lab.cgroup[0]}"]
            t = measure_step(engine, lab_id, step.id, rounds,
                             lambda lab_id=lab_id, args=args: baseline_ms(BASELINE[lab_id], args, 5))
            rows.append({"step": f"{lab_id}/{step.id}", "rounds": rounds, **t.medians()})
    return rows


def run(rounds: int = 10) -> dict[str, Any]:
    """The per-step medians; the lead's ``benchmarks/labs/run.py`` calls this and formats the result."""
    reaper.become_subreaper()
    return {"steps": step_medians(rounds)}


def print_report(out: dict[str, Any]) -> None:
    print("\n## namespace labs, per step (medians)")
    print("| step | check | shell lsns/grep/cat check | ratio | solve | reset | goals (check ≤ 5, reset ≤ 10) "
          "| all passed / clean / baseline passed |")
    print("|---|---|---|---|---|---|---|---|")
    for r in out["steps"]:
        if "unavailable" in r:
            print(f"| {r['step']} | unavailable: {'; '.join(r['unavailable'])} | | | | | | |")
            continue
        ratio = r["baseline_check_ms"] / r["check_ms"] if r["check_ms"] else float("nan")
        met = "yes" if r["check_ms"] <= GOAL_CHECK_MS and r["reset_ms"] <= GOAL_RESET_MS else "**no**"
        print(f"| {r['step']} | {fmt_ms(r['check_ms'])} | {fmt_ms(r['baseline_check_ms'])} | {ratio:.1f}x faster | "
              f"{fmt_ms(r['solve_ms'])} | {fmt_ms(r['reset_ms'])} | {met} | "
              f"{r['all_passed']} / {r['all_clean']} / {r['baseline_passed']} |")


def main() -> None:
    common.main(__doc__, "namespace labs", "the benchmark creates namespaces, cgroups and an attendee account",
                lambda rounds: print_report(run(rounds)))


if __name__ == "__main__":
    main()
