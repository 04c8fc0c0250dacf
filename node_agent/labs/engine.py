"""Runs a lab's checks, solves and resets, and proves a reset clean with the residue scan.

- ``check``: one step, or every step; each verdict carries evidence and, unless
  passed, a reason for the attendee. A lab whose requirements the VM lacks is
  "unavailable" with the reason.
- ``solve``: carries out the step for real, after re-solving earlier steps that
  do not pass; then checks it.
- ``reset``: every step's reset in reverse order, the lab's holders killed, then
  the residue scan; leftovers are reported. ``to_step`` starts the attendee at
  that step: with ``solve_earlier`` (a caller who may solve) the steps before it
  are solved for real; without, nothing runs as root and they are recorded
  "skipped", which is not "passed" and stays so until their check passes.
See docs/labs.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from node_agent.labs import registry, requirements, residue
from node_agent.labs.attendee_files import AttendeeFileError
from node_agent.labs.context import LabContext
from node_agent.labs.loader import Catalog
from node_agent.labs.model import FAILED, SKIPPED, UNAVAILABLE, CheckResult, Lab, ResetReport, Step
from node_agent.labs.progress import ProgressStore
from node_agent.logs import get_logger

log = get_logger(__name__)

SKIPPED_REASON = "skipped by a reset to a later step; not done (only root may have it solved)."


class Engine:
    def __init__(self, catalog: Catalog, make_context: Callable[[Lab], LabContext],
                 progress: ProgressStore | None = None) -> None:
        self.catalog, self._make_context, self.progress = catalog, make_context, progress

    def context(self, lab: Lab) -> LabContext:
        return self._make_context(lab)

    # -- reading ----------------------------------------------------------------------
    def unavailable_reasons(self, lab: Lab, ctx: LabContext | None = None) -> list[str]:
        ctx = ctx or self.context(lab)
        return requirements.missing(lab.requires, ctx.cgroup_backend)

    def list(self) -> dict[str, Any]:
        progress = self.progress.load() if self.progress else {}
        labs = []
        for lab in self.catalog.labs.values():
            reasons = self.unavailable_reasons(lab)
            done = progress.get(lab.id, {})
            labs.append({
                "id": lab.id, "title": lab.title, "topic": lab.topic, "minutes": lab.minutes,
                "available": not reasons, "unavailable_reasons": reasons,
                "steps": [{"id": s.id, "title": s.title, "status": done.get(s.id, {}).get("status", "not checked")}
                          for s in lab.steps],
            })
        return {"labs": labs, "errors": [str(e) for e in self.catalog.errors]}

    def instructions(self, lab_id: str, step_id: str | None = None) -> dict[str, Any]:
        lab = self.catalog.get(lab_id)
        ctx = self.context(lab)
        values = ctx.placeholders()
        steps = [lab.step(step_id)] if step_id else list(lab.steps)
        return {"lab": lab.id, "title": lab.title, "summary": fill(lab.summary, values),
                "steps": [{"id": s.id, "title": s.title, "instructions": fill(s.instructions, values),
                           "hints": [fill(h, values) for h in s.hints]} for s in steps]}

    def hint(self, lab_id: str, step_id: str, level: int) -> dict[str, Any]:
        lab = self.catalog.get(lab_id)
        step = lab.step(step_id)
        if not step.hints:
            return {"lab": lab.id, "step": step.id, "level": 0, "of": 0, "hint": "This step has no hints."}
        level = max(1, min(level, len(step.hints)))
        values = self.context(lab).placeholders()
        return {"lab": lab.id, "step": step.id, "level": level, "of": len(step.hints),
                "hint": fill(step.hints[level - 1], values)}

    # -- check --------------------------------------------------------------------------
    def check(self, lab_id: str, step_id: str | None = None) -> dict[str, Any]:
        lab = self.catalog.get(lab_id)
        ctx = self.context(lab)
        steps = [lab.step(step_id)] if step_id else list(lab.steps)
        reasons = self.unavailable_reasons(lab, ctx)
        recorded = self.progress.load().get(lab.id, {}) if self.progress else {}
        results = []
        for step in steps:
            if reasons:
                result, ms = CheckResult.unavailable("unavailable on this VM: " + "; ".join(reasons)), 0.0
            else:
                result, ms = self._check_step(ctx, step)
            if result.status == FAILED and recorded.get(step.id, {}).get("status") == SKIPPED:
                # Skipped by a reset and not done since: still skipped, not a new failure (nor a pass).
                result = CheckResult(SKIPPED, f"{SKIPPED_REASON} {result.reason}".strip(), result.evidence)
            if self.progress:
                self.progress.record(lab.id, step.id, result.status, result.reason)
            results.append({"step": step.id, "title": step.title, **result.to_dict(), "ms": round(ms, 3)})
        return {"lab": lab.id, "passed": all(r["passed"] for r in results),
                "status": _overall(results), "steps": results}

    def _check_step(self, ctx: LabContext, step: Step) -> tuple[CheckResult, float]:
        builtin = registry.lookup("check", step.check.kind)
        t0 = time.perf_counter()
        try:
            result = builtin.fn(ctx, step.check.params)
        except AttendeeFileError as exc:  # a file in the home the agent will not read as it stands
            result = CheckResult.fail(str(exc))
        except PermissionError as exc:
            result = CheckResult.fail(f"the agent was not allowed to look: {exc}")
        except Exception as exc:  # a checker bug must read as a failed check, not a dead command
            log.error("lab.checker_crashed", exc_info=True, kind=step.check.kind)
            result = CheckResult.fail(f"the check itself failed ({type(exc).__name__}: {exc}); tell the instructor")
        return result, (time.perf_counter() - t0) * 1000

    # -- solve --------------------------------------------------------------------------
    def solve(self, lab_id: str, step_id: str | None = None) -> dict[str, Any]:
        lab = self.catalog.get(lab_id)
        ctx = self.context(lab)
        reasons = self.unavailable_reasons(lab, ctx)
        if reasons:
            return {"lab": lab.id, "status": UNAVAILABLE, "passed": False,
                    "reason": "unavailable on this VM: " + "; ".join(reasons), "steps": []}
        last = lab.step_index(step_id) if step_id else len(lab.steps) - 1
        done = []
        for step in lab.steps[: last + 1]:
            target = step.id == (step_id or lab.steps[-1].id)
            if not target:
                before, _ = self._check_step(ctx, step)
                if before.passed:
                    continue
            done.append(self._solve_step(ctx, step))
        results = []
        for step in lab.steps[: last + 1]:
            result, ms = self._check_step(ctx, step)
            if self.progress:
                self.progress.record(lab.id, step.id, result.status, result.reason)
            results.append({"step": step.id, **result.to_dict(), "ms": round(ms, 3)})
        return {"lab": lab.id, "solved": done, "passed": all(r["passed"] for r in results),
                "status": _overall(results), "steps": results}

    def _solve_step(self, ctx: LabContext, step: Step) -> dict[str, Any]:
        t0 = time.perf_counter()
        evidence = []
        for spec in step.solve:
            evidence.append(registry.lookup("solve", spec.kind).fn(ctx, spec.params) or {})
        return {"step": step.id, "evidence": evidence, "ms": round((time.perf_counter() - t0) * 1000, 3)}

    # -- reset --------------------------------------------------------------------------
    def reset(self, lab_id: str, to_step: str | None = None, *, solve_earlier: bool = False) -> dict[str, Any]:
        """Reset the lab; with ``to_step``, start at it. ``solve_earlier`` (root only, decided by the
        caller's service) solves the steps before it; otherwise they are marked skipped, never solved."""
        lab = self.catalog.get(lab_id)
        index = lab.step_index(to_step) if to_step else 0  # an unknown step is refused before anything is reset
        ctx = self.context(lab)
        t0 = time.perf_counter()
        report = ResetReport()
        for step in reversed(lab.steps):
            for spec in step.reset:
                try:
                    report.merge(registry.lookup("reset", spec.kind).fn(ctx, spec.params))
                except Exception as exc:  # keep going: the other resets and the scan must still run
                    log.error("lab.resetter_crashed", exc_info=True, kind=spec.kind)
                    report.leftovers.append(f"reset {spec.kind} of step {step.id} failed: {exc}")
        killed = ctx.kill_holders()
        if killed:
            report.removed.append(f"holder processes {killed}")
        report.leftovers.extend(x for x in residue.scan(ctx) if x not in report.leftovers)
        if self.progress:
            self.progress.clear(lab.id, [s.id for s in lab.steps])
        out: dict[str, Any] = {"lab": lab.id, **report.to_dict(), "ms": round((time.perf_counter() - t0) * 1000, 3)}
        if to_step:
            out["to_step"] = to_step
            earlier = lab.steps[:index]
            if earlier and solve_earlier:
                solved = self.solve(lab.id, earlier[-1].id)
                out.update(resolved=solved["solved"], steps=solved["steps"])
            elif earlier:
                out.update(skipped=[s.id for s in earlier], steps=self._skip(lab, earlier))
        return out

    def _skip(self, lab: Lab, steps: tuple[Step, ...]) -> list[dict[str, Any]]:
        results = []
        for step in steps:
            if self.progress:
                self.progress.record(lab.id, step.id, SKIPPED, SKIPPED_REASON)
            results.append({"step": step.id, "title": step.title, "status": SKIPPED, "passed": False,
                            "reason": SKIPPED_REASON, "evidence": {}})
        return results


def _overall(results: list[dict[str, Any]]) -> str:
    statuses = {r["status"] for r in results}
    for status in ("forged", "unavailable", "failed", SKIPPED):
        if status in statuses:
            return status
    return "passed"


def fill(text: str, values: dict[str, str]) -> str:
    """Replace ``{name}`` placeholders; unknown names and other braces (shell, C code) stay as they are."""
    out = text
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return out
