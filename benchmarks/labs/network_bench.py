"""Network namespace labs: check/solve/reset medians of ns-net-1 and of each ns-net-2 step, and the probe.

``python -m benchmarks.labs.network_bench [--rounds N]`` as root on a lab VM (or this machine kind).

- Per step, through the engine and a real attendee account created for the run (removed
  afterwards): solve (earlier steps included), check (five times per round, after the solve) and
  reset of the whole lab (holder scan, ``ip netns del``, a second scan that proves it clean).
- The active probe alone: one TCP connect from a forked child inside ``{prefix}vnet10`` to
  10.11.12.1:1500 (fork, setns, connect, report through a pipe).
- Baseline: the same check the way lab platforms usually write it, a shell script of ``lsns``,
  ``ip``, ``ss``, ``grep`` and ``cat`` (it checks less: no peer check, no attendee ownership,
  ``nc -z`` instead of a probe the agent owns).

The only traffic is between the lab's own two namespaces (10.11.12.0/24 and 10.11.13.0/24).
Goals (issue 3, LABS.md floor: solve ≈ 10 ms, check with probe 12 ms, reset 7 ms): check ≤ 5 ms
(the step with the probe is compared with the 12 ms floor), reset ≤ 10 ms.
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
from node_agent.kernel import links, reaper
from node_agent.labs.context import Attendee, LabContext
from node_agent.labs.engine import Engine
from node_agent.labs.loader import load_catalog

REPO = Path(__file__).resolve().parents[2]
STEPS = (("ns-net-1", "isolated"), ("ns-net-2", "namespaces"), ("ns-net-2", "veth"), ("ns-net-2", "server"))
GOAL_CHECK_MS, GOAL_CHECK_PROBE_MS, GOAL_RESET_MS = 5.0, 12.0, 10.0

# What a lab platform's check script for these steps usually is ($1: prefix, $2: attendee).
BASELINE = {
    "isolated": """for pid in $(lsns -t net -n -o PID,USER | awk -v u="$2" '$2 == u {print $1}'); do
  [ "$(grep -c : /proc/$pid/net/dev)" = 1 ] && exit 0
done; exit 1""",
    "namespaces": """ip netns list | grep -q "^${1}vnet0\\b" && ip netns list | grep -q "^${1}vnet10\\b" """,
    "veth": """ip -n "${1}vnet0" addr show "${1}veth0" | grep -q 'inet 10.11.12.1/24' &&
ip -n "${1}vnet10" addr show "${1}veth10" | grep -q 'inet 10.11.13.1/24' &&
ip -n "${1}vnet0" route | grep -q 10.11.13.0/24 && ip -n "${1}vnet10" route | grep -q 10.11.12.0/24""",
    "server": """ip netns exec "${1}vnet0" ss -ltn | grep -q ':1500 ' &&
ip netns exec "${1}vnet10" nc -z -w1 10.11.12.1 1500""",
}


class _Attendee:
    """A real account for the run (like ``class`` on a lab VM), removed afterwards."""

    def __enter__(self) -> Attendee:
        self.name = "lfn" + secrets.token_hex(3)
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", self.name], check=True)
        pw = pwd.getpwnam(self.name)
        return Attendee(self.name, pw.pw_uid, pw.pw_gid, Path(pw.pw_dir))

    def __exit__(self, *exc: object) -> None:
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
    catalog = load_catalog(REPO / "labs")
    rows = []
    with _Attendee() as attendee:

        def context(lab) -> LabContext:
            return LabContext(lab_id=lab.id, lab_dir=lab.path, attendee=attendee, nonce=417, prefix=prefix,
                              cgroup_parent=f"labfleet-bench/{prefix}", work_root=work, cgroup=lab.cgroup)

        engine = Engine(catalog, context)
        try:
            for lab_id, step in STEPS:
                solves, checks, resets, probes, baselines = [], [], [], [], []
                all_passed, all_clean, base_ok = True, True, True
                for _ in range(rounds):
                    solved, ms = _timed(lambda lab_id=lab_id, step=step: engine.solve(lab_id, step))
                    solves.append(ms)
                    all_passed = all_passed and solved["passed"]
                    for _ in range(5):
                        result, ms = _timed(lambda lab_id=lab_id, step=step: engine.check(lab_id, step))
                        checks.append(ms)
                        all_passed = all_passed and result["passed"]
                    if step == "server":
                        for _ in range(5):
                            probe, ms = _timed(lambda: links.probe_tcp(Path(f"/run/netns/{prefix}vnet10"),
                                                                       "10.11.12.1", 1500))
                            probes.append(ms)
                            all_passed = all_passed and probe.connected
                    base, ok = _baseline_ms(BASELINE[step], [prefix, attendee.user], 5)
                    baselines.append(base)
                    base_ok = base_ok and ok
                    report, ms = _timed(lambda lab_id=lab_id: engine.reset(lab_id))
                    resets.append(ms)
                    all_clean = all_clean and report["clean"]
                rows.append({"step": f"{lab_id}/{step}", "rounds": rounds, "check_ms": median(checks),
                             "solve_ms": median(solves), "reset_ms": median(resets),
                             "probe_ms": median(probes) if probes else None,
                             "baseline_check_ms": median(baselines), "baseline_passed": base_ok,
                             "all_passed": all_passed, "all_clean": all_clean})
        finally:
            for lab_id in {lab for lab, _ in STEPS}:
                engine.reset(lab_id)
            shutil.rmtree(work, ignore_errors=True)
    return rows


def run(rounds: int = 10) -> dict[str, Any]:
    """The lead's ``benchmarks/labs/run.py`` calls this and formats the result."""
    reaper.become_subreaper()
    return {"steps": step_medians(rounds)}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} ms"


def print_report(out: dict[str, Any]) -> None:
    print("\n## per step (medians)")
    print("| step | check | probe alone | shell lsns/ip/grep check | ratio | solve | reset | goals | "
          "all passed / clean |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in out["steps"]:
        goal = GOAL_CHECK_PROBE_MS if r["probe_ms"] is not None else GOAL_CHECK_MS
        met = "yes" if r["check_ms"] <= goal and r["reset_ms"] <= GOAL_RESET_MS else "**no**"
        ratio = r["baseline_check_ms"] / r["check_ms"] if r["check_ms"] else float("nan")
        print(f"| {r['step']} | {_fmt(r['check_ms'])} | {_fmt(r['probe_ms'])} | {_fmt(r['baseline_check_ms'])}"
              f"{'' if r['baseline_passed'] else ' (failed)'} | {ratio:.1f}x faster | {_fmt(r['solve_ms'])} | "
              f"{_fmt(r['reset_ms'])} | check ≤ {goal:.0f}, reset ≤ {GOAL_RESET_MS:.0f}: {met} | "
              f"{r['all_passed']} / {r['all_clean']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: the benchmark creates network namespaces and veths")
    print_header("network namespace labs", args)
    print_report(run(args.rounds))


if __name__ == "__main__":
    main()
