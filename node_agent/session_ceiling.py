"""The attendee's session ceiling, seen from the agent: has it been hit?

The playbook puts the attendee's login sessions into one cgroup with a pids
and a memory ceiling (a systemd slice on a VM, ``user.slice/user-<uid>.slice``;
on a local-fleet host a ``sessions`` group beside the host's own, joined at
login by pam_exec). A fork bomb typed outside any lab cgroup then stops at
the ceiling instead of taking the VM and this agent down with it.

``SessionWatch.read`` reports the ceiling and how often the kernel refused a
fork (``pids.events`` ``max``) or killed for memory (``memory.events``
``oom_kill`` on cgroup2, ``memory.oom_control`` on v1), plus when the agent
first saw the count grow (``last_hit_at``). The state report carries it; the
controller's stuck rules turn a recent hit into a flag with the reason.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

from node_agent.clock import utc_now
from node_agent.kernel.cgroup_control import find_hierarchy

_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")  # no "." or ".." components


class SessionWatch:
    """``state_file``: where the last counts seen are kept, so a restarted agent does not report an old
    hit as new (and a group made again, its counts back at 0, is followed from there)."""

    def __init__(self, relpath: str, state_file: Path | None = None) -> None:
        parts = relpath.strip("/").split("/")
        if not all(_PART.match(p) for p in parts):
            raise ValueError(f"session_cgroup: {relpath!r} is not a plain relative cgroup path")
        self.relpath = "/".join(parts)
        self._lock = threading.Lock()
        self._state_file = state_file
        saved = _load(state_file) if state_file else {}
        same = saved.get("cgroup") == self.relpath
        self._seen = saved["seen"] if same and isinstance(saved.get("seen"), int) else 0
        self._last_hit_at = saved["last_hit_at"] if same and isinstance(saved.get("last_hit_at"), str) else None

    def _group(self, controller: str) -> Path | None:
        hierarchy = find_hierarchy(controller)
        return None if hierarchy is None else hierarchy.mount / self.relpath

    def read(self) -> dict[str, Any]:
        pids, memory = self._group("pids"), self._group("memory")
        present = any(g is not None and g.is_dir() for g in (pids, memory))
        pids_max = _limit(_text(pids, "pids.max")) if pids else None
        pids_hits = _keyed(pids, "pids.events").get("max", 0) if pids else 0
        memory_max, oom_kills = None, 0
        if memory is not None:
            if (memory / "memory.max").exists():  # cgroup2
                memory_max = _limit(_text(memory, "memory.max"))
                oom_kills = _keyed(memory, "memory.events").get("oom_kill", 0)
            else:  # v1
                memory_max = _limit(_text(memory, "memory.limit_in_bytes"), unlimited_above=1 << 60)
                oom_kills = _keyed(memory, "memory.oom_control").get("oom_kill", 0)
        with self._lock:
            hits = pids_hits + oom_kills
            if hits > self._seen:
                self._last_hit_at = utc_now()
            if hits != self._seen:
                self._seen = hits
                self._save()
            last = self._last_hit_at
        return {"cgroup": self.relpath, "present": present, "pids_max": pids_max, "pids_hits": pids_hits,
                "memory_max": memory_max, "oom_kills": oom_kills, "last_hit_at": last}


    def _save(self) -> None:
        if self._state_file is None:
            return
        try:
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"cgroup": self.relpath, "seen": self._seen, "last_hit_at": self._last_hit_at}))
            os.replace(tmp, self._state_file)
        except OSError:
            pass  # a full disk must not stop the state report


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _text(group: Path | None, name: str) -> str:
    if group is None:
        return ""
    try:
        return (group / name).read_text().strip()
    except OSError:
        return ""


def _keyed(group: Path | None, name: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in _text(group, name).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            found[key] = int(value)
    return found


def _limit(text: str, unlimited_above: int | None = None) -> int | None:
    if not text.isdigit():
        return None  # "max", or not readable
    value = int(text)
    return None if unlimited_above is not None and value >= unlimited_above else value
