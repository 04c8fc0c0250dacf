"""What a lab is once loaded, and what running one of its parts returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOPICS = ("namespaces", "cgroups", "seccomp")

# A check's status. "unavailable" is not a failure: the VM lacks what the step needs.
PASSED, FAILED, UNAVAILABLE, FORGED = "passed", "failed", "unavailable", "forged"
# A step an attendee skipped with `lab reset --to-step` (nothing was solved for them): not passed.
SKIPPED = "skipped"


class LabError(Exception):
    """A lab folder that cannot be used: says which file, which key and what was expected."""

    def __init__(self, path: Path | str, key: str, expected: str, got: Any = None) -> None:
        self.path, self.key, self.expected = str(path), key, expected
        message = f"{path}: {key}: expected {expected}"
        if got is not None:
            message += f", got {got!r}"
        super().__init__(message)


@dataclass(frozen=True)
class ActionSpec:
    """One ``check``/``solve``/``reset`` entry of a step: a registered kind and its decoded parameters."""

    kind: str
    params: Any


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    instructions: str  # Markdown, placeholders not yet filled in
    hints: tuple[str, ...]
    check: ActionSpec
    solve: tuple[ActionSpec, ...]
    reset: tuple[ActionSpec, ...]
    walkthrough: Path | None = None


@dataclass(frozen=True)
class Lab:
    id: str
    title: str
    topic: str
    minutes: int
    summary: str
    requires: tuple[str, ...]
    steps: tuple[Step, ...]
    path: Path
    # The lab cgroup its text shows as {cgroup_dir}: (name under the parent, controller).
    cgroup: tuple[str, str] = ("cglab1", "pids")

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"lab {self.id} has no step {step_id!r}; steps: {', '.join(s.id for s in self.steps)}")

    def step_index(self, step_id: str) -> int:
        return self.steps.index(self.step(step_id))


@dataclass
class CheckResult:
    """A check's verdict, the evidence it rests on, and (unless passed) why, in the attendee's words."""

    status: str
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @classmethod
    def ok(cls, evidence: dict[str, Any] | None = None, reason: str = "") -> CheckResult:
        return cls(PASSED, reason, evidence or {})

    @classmethod
    def fail(cls, reason: str, evidence: dict[str, Any] | None = None) -> CheckResult:
        return cls(FAILED, reason, evidence or {})

    @classmethod
    def unavailable(cls, reason: str, evidence: dict[str, Any] | None = None) -> CheckResult:
        return cls(UNAVAILABLE, reason, evidence or {})

    @classmethod
    def forged(cls, reason: str, evidence: dict[str, Any] | None = None) -> CheckResult:
        return cls(FORGED, reason, evidence or {})

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "passed": self.passed, "reason": self.reason, "evidence": self.evidence}


@dataclass
class ResetReport:
    """What a reset removed and what it could not: leftovers are reported, never hidden."""

    removed: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    def merge(self, other: ResetReport | None) -> ResetReport:
        if other is not None:
            self.removed.extend(other.removed)
            self.leftovers.extend(other.leftovers)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"removed": self.removed, "leftovers": self.leftovers, "clean": not self.leftovers}
