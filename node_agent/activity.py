"""Hints read and resets per lab and step, counted on the VM and reported in the state snapshot.

The controller's stuck detection reads them (``labs.activity``): an attendee
who read every hint of a step, or reset the lab again and again on it, may
need a person. Kept in the agent's state directory, next to the progress file.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class ActivityStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, dict[str, int]]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def hint(self, lab: str, step: str, level: int) -> None:
        """``level`` was read: the count is the most explicit hint read on the step."""
        self._update(lab, step, lambda entry: entry.update(hints=max(entry.get("hints", 0), level)))

    def reset(self, lab: str, step: str) -> None:
        self._update(lab, step, lambda entry: entry.update(resets=entry.get("resets", 0) + 1))

    def _update(self, lab: str, step: str, change: Any) -> None:
        with self._lock:
            data = self.load()
            change(data.setdefault(lab, {}).setdefault(step, {}))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, sort_keys=True))
            os.replace(tmp, self.path)
