"""Every step of the catalog through the engine: check, solve and reset medians, against the goals.

``python -m benchmarks.labs.catalog_bench [--rounds N]`` as root. A real
attendee account is created for the run and removed afterwards; each step is
measured where an attendee would be (earlier steps solved). Goals (issue 3,
from docs/benchmarks.md's floor): check ≤ 5 ms median per step (≤ 80 ms for sc-docker),
reset ≤ 10 ms. The topic benchmarks (cgroups_bench, namespaces_bench, ...)
add the fork-bomb figures and the ratio against shell-script checks.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import median
from benchmarks.labs import common
from benchmarks.labs.common import attendee_account, lab_engine, timed
from node_agent.kernel import reaper
from node_agent.labs.engine import Engine

CHECK_GOAL_MS = {"sc-docker": 80.0}
DEFAULT_CHECK_GOAL_MS, RESET_GOAL_MS = 5.0, 10.0


def measure(engine: Engine, rounds: int) -> list[dict[str, Any]]:
    rows = []
    for lab in engine.catalog.labs.values():
        if engine.unavailable_reasons(lab):
            rows.append({"lab": lab.id, "step": "*", "unavailable": engine.unavailable_reasons(lab)})
            continue
        for index, step in enumerate(lab.steps):
            checks, solves, resets, failures = [], [], [], 0
            for _ in range(rounds):
                if index:
                    engine.solve(lab.id, lab.steps[index - 1].id)
                _, solve_ms = timed(lambda: engine._solve_step(engine.context(lab), step))  # noqa: B023
                solves.append(solve_ms)
                ctx = engine.context(lab)
                for _ in range(5):
                    result, check_ms = timed(lambda: engine._check_step(ctx, step)[0])  # noqa: B023
                    checks.append(check_ms)
                    failures += not result.passed
                report, reset_ms = timed(lambda: engine.reset(lab.id))  # noqa: B023
                resets.append(reset_ms)
                if not report["clean"]:
                    failures += 1
            goal = CHECK_GOAL_MS.get(lab.id, DEFAULT_CHECK_GOAL_MS)
            rows.append({"lab": lab.id, "step": step.id, "check_ms": median(checks), "solve_ms": median(solves),
                         "reset_ms": median(resets), "check_goal_ms": goal, "failures": failures})
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(f"{'lab/step':<30} {'check':>9} {'goal':>6} {'solve':>9} {'reset':>9} {'goal':>6}  notes")
    for r in rows:
        if "unavailable" in r:
            print(f"{r['lab'] + '/*':<30} unavailable on this machine: {'; '.join(r['unavailable'])}")
            continue
        check_ok = "met" if r["check_ms"] <= r["check_goal_ms"] else "MISSED"
        reset_ok = "met" if r["reset_ms"] <= RESET_GOAL_MS else "MISSED"
        notes = f"{r['failures']} failed round(s)" if r["failures"] else ""
        print(f"{r['lab'] + '/' + r['step']:<30} {r['check_ms']:>7.2f}ms {check_ok:>6} {r['solve_ms']:>7.1f}ms "
              f"{r['reset_ms']:>7.2f}ms {reset_ok:>6}  {notes}")
    measured = [r for r in rows if "check_ms" in r]
    if measured:
        print(f"steps: {len(measured)}; check goal met by {sum(r['check_ms'] <= r['check_goal_ms'] for r in measured)}, "
              f"reset goal met by {sum(r['reset_ms'] <= RESET_GOAL_MS for r in measured)}; "
              f"slowest check {max(measured, key=lambda r: r['check_ms'])['lab']} "
              f"{max(r['check_ms'] for r in measured):.2f} ms, slowest reset "
              f"{max(r['reset_ms'] for r in measured):.2f} ms")


def main() -> None:
    def report(rounds: int) -> None:
        reaper.become_subreaper()
        with attendee_account() as attendee, lab_engine(attendee, progress=True) as labs:
            print_rows(measure(labs.engine, rounds))

    common.main(__doc__, "lab catalog: check / solve / reset per step",
                "the benchmark creates an attendee account, namespaces and cgroups", report, rounds=5)


if __name__ == "__main__":
    main()
