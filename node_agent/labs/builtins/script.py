"""The escape hatch: a check, solve or reset done by a script in the lab folder.

The script runs as root with the lab's placeholders in its environment
(``LAB_NONCE``, ``LAB_HOSTNAME``, ...). A check passes on exit status 0; its
last line of output is the reason shown when it fails, and a JSON object on
stdout's first line becomes the evidence.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from node_agent.labs.context import LabContext
from node_agent.labs.model import CheckResult, ResetReport
from node_agent.labs.registry import checker, resetter, solver


@dataclass(frozen=True)
class ScriptParams:
    path: str
    timeout: float = 10.0


def _run(ctx: LabContext, p: ScriptParams):
    script = (ctx.lab_dir / p.path).resolve()
    if ctx.lab_dir.resolve() not in script.parents:
        raise PermissionError(f"{p.path}: a lab script must be inside the lab folder")
    env = {f"LAB_{k.upper()}": v for k, v in ctx.placeholders().items()}
    return ctx.run(["env", *(f"{k}={v}" for k, v in env.items()), "bash", str(script)], timeout=p.timeout,
                   cwd=str(ctx.lab_dir))


@checker("script", ScriptParams)
def check_script(ctx: LabContext, p: ScriptParams) -> CheckResult:
    done = _run(ctx, p)
    lines = done.stdout.strip().splitlines()
    evidence = {"exit_status": done.returncode}
    if lines:
        try:
            parsed = json.loads(lines[0])
            if isinstance(parsed, dict):
                evidence.update(parsed)
        except ValueError:
            pass
    if done.returncode == 0:
        return CheckResult.ok(evidence)
    return CheckResult.fail(lines[-1] if lines else f"the check script exited with {done.returncode}", evidence)


@solver("script", ScriptParams)
def solve_script(ctx: LabContext, p: ScriptParams) -> dict:
    done = _run(ctx, p)
    if done.returncode:
        raise RuntimeError(f"solve script {p.path} exited with {done.returncode}: {done.stderr.strip()[-300:]}")
    return {"script": p.path}


@resetter("script", ScriptParams)
def reset_script(ctx: LabContext, p: ScriptParams) -> ResetReport:
    done = _run(ctx, p)
    if done.returncode:
        return ResetReport(leftovers=[f"reset script {p.path} exited with {done.returncode}: "
                                      f"{done.stderr.strip()[-300:] or os.strerror(0)}"])
    return ResetReport(removed=[f"reset script {p.path}"])
