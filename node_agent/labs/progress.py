"""The attendee's progress per lab and step, kept on the VM so ``lab status`` works offline."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from node_agent.clock import utc_now


class ProgressStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def record(self, lab_id: str, step_id: str, status: str, reason: str = "") -> None:
        with self._lock:
            data = self.load()
            data.setdefault(lab_id, {})[step_id] = {"status": status, "reason": reason, "at": utc_now()}
            self._write(data)

    def clear(self, lab_id: str, step_ids: list[str]) -> None:
        with self._lock:
            data = self.load()
            for step_id in step_ids:
                data.get(lab_id, {}).pop(step_id, None)
            self._write(data)

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)
