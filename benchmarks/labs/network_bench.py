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
Goals (issue 3, docs/benchmarks.md floor: solve ≈ 10 ms, check with probe 12 ms, reset 7 ms): check ≤ 5 ms
(the step with the probe is compared with the 12 ms floor), reset ≤ 10 ms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import median
from benchmarks.labs import common
from benchmarks.labs.common import attendee_account, baseline_ms, fmt_ms, lab_engine, measure_step, timed
from node_agent.kernel import links, reaper

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


def step_medians(rounds: int) -> list[dict[str, Any]]:
    rows = []
    with attendee_account("lfn") as attendee, lab_engine(attendee, reset={lab for lab, _ in STEPS}) as labs:
        engine, prefix = labs.engine, labs.prefix
        for lab_id, step in STEPS:
            probes: list[float] = []

            def probe_five(probes=probes) -> bool:
                connected = True
                for _ in range(5):
                    probe, ms = timed(lambda: links.probe_tcp(Path(f"/run/netns/{prefix}vnet10"), "10.11.12.1", 1500))
                    probes.append(ms)
                    connected = connected and probe.connected
                return connected

            t = measure_step(engine, lab_id, step, rounds,
                             lambda step=step: baseline_ms(BASELINE[step], [prefix, attendee.user], 5),
                             probe_five if step == "server" else None)
            rows.append({"step": f"{lab_id}/{step}", "rounds": rounds, **t.medians(),
                         "probe_ms": median(probes) if probes else None})
    return rows


def run(rounds: int = 10) -> dict[str, Any]:
    """The lead's ``benchmarks/labs/run.py`` calls this and formats the result."""
    reaper.become_subreaper()
    return {"steps": step_medians(rounds)}


def print_report(out: dict[str, Any]) -> None:
    print("\n## per step (medians)")
    print("| step | check | probe alone | shell lsns/ip/grep check | ratio | solve | reset | goals | "
          "all passed / clean |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in out["steps"]:
        goal = GOAL_CHECK_PROBE_MS if r["probe_ms"] is not None else GOAL_CHECK_MS
        met = "yes" if r["check_ms"] <= goal and r["reset_ms"] <= GOAL_RESET_MS else "**no**"
        ratio = r["baseline_check_ms"] / r["check_ms"] if r["check_ms"] else float("nan")
        print(f"| {r['step']} | {fmt_ms(r['check_ms'])} | {fmt_ms(r['probe_ms'])} | {fmt_ms(r['baseline_check_ms'])}"
              f"{'' if r['baseline_passed'] else ' (failed)'} | {ratio:.1f}x faster | {fmt_ms(r['solve_ms'])} | "
              f"{fmt_ms(r['reset_ms'])} | check ≤ {goal:.0f}, reset ≤ {GOAL_RESET_MS:.0f}: {met} | "
              f"{r['all_passed']} / {r['all_clean']} |")


def main() -> None:
    common.main(__doc__, "network namespace labs", "the benchmark creates network namespaces and veths",
                lambda rounds: print_report(run(rounds)))


if __name__ == "__main__":
    main()
