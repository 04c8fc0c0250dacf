"""Human output of lab results for the terminal (the ``lab`` and ``labfleet-agent lab`` commands)."""

from __future__ import annotations

import json
from typing import Any

MARKS = {"passed": "PASS", "failed": "FAIL", "unavailable": "N/A ", "forged": "FORGED", "skipped": "SKIP",
         "not checked": "    "}


def check(result: dict[str, Any], *, evidence: bool = False) -> str:
    lines = [f"{result['lab']}: {result['status']}"]
    for step in result.get("steps", []):
        lines.append(f"  [{MARKS.get(step['status'], step['status'])}] {step['step']}"
                     + (f" ({step['ms']:.1f} ms)" if "ms" in step else ""))
        if step.get("reason") and not step.get("passed"):
            lines.append(f"         {step['reason']}")
        if evidence and step.get("evidence"):
            lines.append("         evidence: " + json.dumps(step["evidence"], sort_keys=True))
    if result.get("reason"):
        lines.append(f"  {result['reason']}")
    return "\n".join(lines)


def reset(result: dict[str, Any]) -> str:
    lines = [f"{result['lab']}: reset {'clean' if result['clean'] else 'INCOMPLETE'} ({result['ms']:.1f} ms)"]
    lines += [f"  removed: {x}" for x in result["removed"]]
    lines += [f"  still there: {x}" for x in result["leftovers"]]
    if result.get("skipped"):
        lines.append(f"  skipped, not solved: {', '.join(result['skipped'])} (do them yourself, or ask your "
                     "instructor to solve them)")
    if result.get("to_step"):
        lines.append(f"  ready at step {result['to_step']}")
    return "\n".join(lines)


def lab_list(result: dict[str, Any]) -> str:
    lines = []
    for lab in result["labs"]:
        head = f"{lab['id']:<13} {lab['title']} ({lab['minutes']} min)"
        if not lab["available"]:
            head += "  -- unavailable on this VM: " + "; ".join(lab["unavailable_reasons"])
        lines.append(head)
        for step in lab["steps"]:
            lines.append(f"  [{MARKS.get(step['status'], step['status'])}] {step['id']}: {step['title']}")
    lines += [f"broken lab: {e}" for e in result.get("errors", [])]
    return "\n".join(lines) or "no labs installed"


def instructions(result: dict[str, Any]) -> str:
    out = [f"# {result['title']}", "", result["summary"].strip(), ""]
    for step in result["steps"]:
        out += [f"## {step['id']}: {step['title']}", "", step["instructions"].strip(), ""]
    return "\n".join(out)


def hint(result: dict[str, Any]) -> str:
    return f"hint {result['level']}/{result['of']} for {result['lab']}/{result['step']}:\n  {result['hint']}"
