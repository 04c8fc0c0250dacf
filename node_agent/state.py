"""The node's state snapshot, and a digest that changes only when something meaningful changes.

The heartbeat carries the digest; the controller asks for the full snapshot
(``send_state``) when the digest it holds is stale. Values that move on every
read (uptime, load, free memory) are in the snapshot but not in the digest,
or every heartbeat would ship the whole state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from node_agent import __version__
from node_agent.kernel import cgroup_layout, namespaces, procfs, seccomp

VOLATILE_KEYS = frozenset({"uptime_seconds", "loadavg", "mem_available_kb"})


def collect_state(labs: Any = None) -> dict[str, Any]:
    """What the controller shows about this machine, and with ``labs`` (a LabService) the live lab view.

    A part the kernel does not let us read (no /sys/fs/cgroup in a minimal
    container, say) becomes ``{"error": ...}`` rather than no state at all.
    """
    mem = _read(procfs.meminfo) or {}
    return {
        "hostname": procfs.hostname(),
        "kernel_release": procfs.kernel_release(),
        "agent_version": __version__,
        "uptime_seconds": _read(procfs.uptime),
        "loadavg": _read(lambda: list(procfs.loadavg())),
        "mem_total_kb": mem.get("MemTotal", 0),
        "mem_available_kb": mem.get("MemAvailable", 0),
        "cgroup": _read(cgroup_layout.describe),
        "namespaces": _read(namespaces.ns_types),
        "seccomp": _read(_seccomp),
        **({"labs": _read(labs.inspect)} if labs is not None else {}),
        **({"messages": labs.message_box.snapshot()} if getattr(labs, "message_box", None) else {}),
        **({"session": _read(labs.session_watch.read)} if getattr(labs, "session_watch", None) else {}),
    }


def _read(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except OSError as exc:
        return {"error": f"{exc.filename or ''}: {exc.strerror or exc}"}


def _seccomp() -> dict[str, Any]:
    mode = seccomp.status_seccomp()
    return {"supported": mode is not None, "actions_avail": seccomp.actions_avail()}


def state_digest(state: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of ``state`` without its volatile keys."""
    stable = {k: v for k, v in state.items() if k not in VOLATILE_KEYS}
    canonical = json.dumps(stable, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
