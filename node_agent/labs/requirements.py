"""Whether this VM can run a lab: each ``requires`` string evaluated against the running kernel.

A lab whose requirement is missing is "unavailable on this VM" with the reason,
never failed: the attendee cannot fix a kernel without the pids controller.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from node_agent.kernel import seccomp

REQUIREMENT_KINDS = ("ns", "cgroup", "seccomp", "libseccomp", "program", "file")


def missing(requires: tuple[str, ...], cgroup_backend) -> list[str]:
    """The reasons this VM cannot run a lab with ``requires`` ([] when it can).

    ``cgroup_backend(controller)`` is the context's back-end chooser (v1, v2 or None).
    """
    reasons = []
    for req in requires:
        kind, _, arg = req.partition(":")
        reason = _check(kind, arg, cgroup_backend)
        if reason:
            reasons.append(reason)
    return reasons


def _check(kind: str, arg: str, cgroup_backend) -> str | None:
    if kind == "ns":
        return None if os.path.exists(f"/proc/self/ns/{arg}") else f"the kernel has no {arg} namespaces"
    if kind == "cgroup":
        return None if cgroup_backend(arg) else f"no cgroup hierarchy (v1 or v2) offers the {arg} controller"
    if kind == "seccomp":
        if seccomp.status_seccomp() is None:
            return "the kernel is built without seccomp"
        if arg == "filter" and "errno" not in seccomp.actions_avail():
            return "the kernel's seccomp has no filter mode (actions_avail lacks errno)"
        return None
    if kind == "libseccomp":
        try:
            import seccomp as _bindings  # noqa: F401 - Debian's python3-seccomp
        except ImportError:
            return "libseccomp's Python bindings (python3-seccomp) are not installed"
        return None
    if kind == "program":
        return None if shutil.which(arg) else f"the program {arg} is not installed"
    if kind == "file":
        return None if Path(arg).exists() else f"{arg} is missing"
    return f"unknown requirement {kind}:{arg}"
