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

Goals (issue 3, from LABS.md's floor of 0.06–3 ms per namespace check):
check ≤ 5 ms median per step, reset ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import median, print_header
from node_agent.kernel import proctable, reaper, rootfs
from node_agent.labs.context import Attendee, LabContext
from node_agent.labs.engine import Engine
from node_agent.labs.loader import load_catalog

REPO = Path(__file__).resolve().parents[2]
LABS = ("ns-user", "ns-mount-1", "ns-mount-2", "ns-pid", "ns-ipc", "ns-uts", "ns-time", "ns-cgroup")
GOAL_CHECK_MS, GOAL_RESET_MS = 5.0, 10.0
NONCE = 417

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


class _Attendee:
    """A real account for the run (like ``class`` on a lab VM), removed afterwards."""

    def __enter__(self) -> Attendee:
        self.name = "lfn" + secrets.token_hex(3)
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", self.name], check=True)
        pw = pwd.getpwnam(self.name)
        return Attendee(self.name, pw.pw_uid, pw.pw_gid, Path(pw.pw_dir))

    def __exit__(self, *exc: object) -> None:
        uid = pwd.getpwnam(self.name).pw_uid
        for pid in proctable.pids():  # the run's own account only, by pid
            if proctable.uid_of(pid) == uid:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        reaper.reap_orphans()
        subprocess.run(["userdel", "--remove", self.name], capture_output=True)


def _timed(fn) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000


def _baseline_ms(script: str, args: list[str], runs: int) -> tuple[float, bool]:
    times, ok = [], True
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(["sh", "-c", script, "check", *args], capture_output=True)
        times.append((time.perf_counter() - t0) * 1000)
        ok = ok and done.returncode == 0
    return median(times), ok


def step_medians(rounds: int) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="labfleet-bench-"))
    prefix = "b" + secrets.token_hex(2)
    parent = f"labfleet-bench/{prefix}"
    catalog = load_catalog(REPO / "labs")
    rows = []
    with _Attendee() as attendee:

        def context(lab) -> LabContext:
            return LabContext(lab_id=lab.id, lab_dir=lab.path, attendee=attendee, nonce=NONCE, prefix=prefix,
                              cgroup_parent=parent, work_root=work, cgroup=lab.cgroup)

        engine = Engine(catalog, context)
        rootfs.build(work / "ns-mount-2" / "rootfs.tar.gz")  # the solve's fallback location: built once, not timed
        try:
            for lab_id in LABS:
                lab = catalog.get(lab_id)
                (step,) = lab.steps
                if engine.unavailable_reasons(lab):
                    rows.append({"step": f"{lab_id}/{step.id}", "unavailable": engine.unavailable_reasons(lab)})
                    continue
                args = [str(attendee.uid), attendee.user, str(attendee.home), str(NONCE), f"/{parent}/cglab1"]
                solves, checks, resets, baselines = [], [], [], []
                all_passed = all_clean = base_ok = True
                for _ in range(rounds):
                    solved, ms = _timed(lambda lab_id=lab_id: engine.solve(lab_id))
                    solves.append(ms)
                    all_passed = all_passed and solved["passed"]
                    for _ in range(5):
                        result, ms = _timed(lambda lab_id=lab_id, s=step.id: engine.check(lab_id, s))
                        checks.append(ms)
                        all_passed = all_passed and result["passed"]
                    base, ok = _baseline_ms(BASELINE[lab_id], args, 5)
                    baselines.append(base)
                    base_ok = base_ok and ok
                    report, ms = _timed(lambda lab_id=lab_id: engine.reset(lab_id))
                    resets.append(ms)
                    all_clean = all_clean and report["clean"]
                rows.append({"step": f"{lab_id}/{step.id}", "rounds": rounds, "check_ms": median(checks),
                             "solve_ms": median(solves), "reset_ms": median(resets),
                             "baseline_check_ms": median(baselines), "baseline_passed": base_ok,
                             "all_passed": all_passed, "all_clean": all_clean})
        finally:
            for lab_id in LABS:
                engine.reset(lab_id)
            shutil.rmtree(work, ignore_errors=True)
            for root in context(catalog.get("ns-cgroup")).lab_cgroup_roots():
                for d in (root, root.parent):
                    try:
                        d.rmdir()
                    except OSError:
                        pass
    return rows


def run(rounds: int = 10) -> dict[str, Any]:
    """The per-step medians; the lead's ``benchmarks/labs/run.py`` calls this and formats the result."""
    reaper.become_subreaper()
    return {"steps": step_medians(rounds)}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} ms"


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
        print(f"| {r['step']} | {_fmt(r['check_ms'])} | {_fmt(r['baseline_check_ms'])} | {ratio:.1f}x faster | "
              f"{_fmt(r['solve_ms'])} | {_fmt(r['reset_ms'])} | {met} | "
              f"{r['all_passed']} / {r['all_clean']} / {r['baseline_passed']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: the benchmark creates namespaces, cgroups and an attendee account")
    print_header("namespace labs", args)
    print_report(run(args.rounds))


if __name__ == "__main__":
    main()
