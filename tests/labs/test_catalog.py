"""Every step of every lab in the repo's catalog, on the real kernel, as a real non-root attendee.

Per step: from a clean start (earlier steps solved) the check fails with a
reason; the attendee's own commands (the step's walkthrough, in bash, with
sudo where the lab needs root) make it pass; reset makes it fail again and the
residue scan finds nothing. The same with the agent's solve instead of the
walkthrough. Then twenty solve/reset cycles of the whole catalog leave
nothing behind. Topic files (test_namespaces.py, ...) hold the cheat cases.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from node_agent.labs.loader import load_catalog

LABS_DIR = Path(__file__).resolve().parents[2] / "labs"
CATALOG = load_catalog(LABS_DIR)
STEPS = [(lab.id, step.id) for lab in CATALOG.labs.values() for step in lab.steps]
CYCLES = 20


def test_the_catalog_loads_without_errors():
    assert CATALOG.errors == []
    assert CATALOG.labs, "the catalog is empty"


def _prepare(env, lab_id: str, step_id: str) -> None:
    """Solve the steps before ``step_id``, so the step starts where an attendee would start it."""
    lab = env.catalog.get(lab_id)
    index = lab.step_index(step_id)
    if index:
        solved = env.engine.solve(lab_id, lab.steps[index - 1].id)
        assert solved["passed"], solved


def _available(env, lab_id: str) -> None:
    reasons = env.engine.unavailable_reasons(env.catalog.get(lab_id))
    if reasons:
        pytest.skip(f"{lab_id} is unavailable on this machine: {'; '.join(reasons)}")


def _assert_fails_with_reason(env, lab_id: str, step_id: str, when: str) -> None:
    (result,) = env.engine.check(lab_id, step_id)["steps"]
    assert result["status"] == "failed", f"{when}: {lab_id}/{step_id} should fail, got {result}"
    assert len(result["reason"]) > 10, f"{when}: {lab_id}/{step_id} failed without a reason an attendee can read"


def _assert_reset_clean(env, lab_id: str, step_id: str) -> None:
    report = env.engine.reset(lab_id)
    assert report["clean"], f"reset of {lab_id} left: {report['leftovers']}"
    assert env.residue(lab_id) == []
    _assert_fails_with_reason(env, lab_id, step_id, "after reset")


@pytest.mark.parametrize("lab_id, step_id", STEPS, ids=[f"{lab}/{step}" for lab, step in STEPS])
def test_walkthrough_passes_and_reset_cleans(lab_env, lab_id, step_id):
    _available(lab_env, lab_id)
    _prepare(lab_env, lab_id, step_id)
    _assert_fails_with_reason(lab_env, lab_id, step_id, "before the walkthrough")
    lab_env.run_walkthrough(lab_id, step_id)
    (result,) = lab_env.engine.check(lab_id, step_id)["steps"]
    assert result["status"] == "passed", f"after the walkthrough: {result}"
    assert result["evidence"], "a passed check must say what it saw"
    _assert_reset_clean(lab_env, lab_id, step_id)


@pytest.mark.parametrize("lab_id, step_id", STEPS, ids=[f"{lab}/{step}" for lab, step in STEPS])
def test_solve_passes_and_reset_cleans(lab_env, lab_id, step_id):
    _available(lab_env, lab_id)
    _prepare(lab_env, lab_id, step_id)
    _assert_fails_with_reason(lab_env, lab_id, step_id, "before solve")
    solved = lab_env.engine.solve(lab_id, step_id)
    assert solved["passed"], solved
    _assert_reset_clean(lab_env, lab_id, step_id)


def test_reset_to_a_step_starts_the_attendee_exactly_there(lab_env):
    multi = [lab for lab in CATALOG.labs.values() if len(lab.steps) > 1
             and not lab_env.engine.unavailable_reasons(lab)]
    if not multi:
        pytest.skip("no multi-step lab in the catalog yet")
    lab = multi[0]
    last = lab.steps[-1]
    out = lab_env.engine.reset(lab.id, to_step=last.id, solve_earlier=True)
    assert out["clean"], out
    checks = {s["step"]: s["status"] for s in lab_env.engine.check(lab.id)["steps"]}
    assert all(checks[s.id] == "passed" for s in lab.steps[:-1]), checks
    assert checks[last.id] == "failed", checks


def test_twenty_solve_reset_cycles_of_the_whole_catalog_leave_nothing(lab_env):
    labs = [lab for lab in CATALOG.labs.values() if not lab_env.engine.unavailable_reasons(lab)]
    for cycle in range(CYCLES):
        for lab in labs:
            solved = lab_env.engine.solve(lab.id)
            assert solved["passed"], f"cycle {cycle}: {solved}"
            report = lab_env.engine.reset(lab.id)
            assert report["clean"], f"cycle {cycle}: reset of {lab.id} left {report['leftovers']}"
        assert lab_env.residue("catalog") == [], f"cycle {cycle}"
