"""The one bounded poll every solve waits with: it stops at the first pass, and a solve that cannot
pass answers with the check's own reason instead of hanging."""

from __future__ import annotations

from node_agent.labs import solve_wait
from node_agent.labs.model import CheckResult


def test_a_solve_stops_polling_at_the_first_passing_check() -> None:
    calls = []

    def check() -> CheckResult:
        calls.append(1)
        return CheckResult.ok({"calls": len(calls)}) if len(calls) == 3 else CheckResult.fail("not yet")

    result = solve_wait.passing(check)

    assert result.passed and result.evidence == {"calls": 3}
    assert len(calls) == 3


def test_a_check_that_never_passes_ends_the_wait_with_its_reason() -> None:
    result = solve_wait.passing(lambda: CheckResult.fail("no holder in a new UTS namespace"), timeout=0.05)

    assert not result.passed and result.reason == "no holder in a new UTS namespace"


def test_until_answers_the_last_value_when_the_condition_never_holds() -> None:
    values = iter(range(1_000_000))
    assert solve_wait.until(lambda: next(values) > 10**9, timeout=0.02) is False
    assert solve_wait.until(lambda: next(values) % 5 == 0) is True
