"""What the controller reads of the lab catalog (``labs/<id>/lab.toml``): step order and hints.

Only the two keys the stuck rules need, read with tomllib (the agent's lab
loader is not imported: the controller runs no lab code). Cached per folder.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LABS_DIR = Path(__file__).resolve().parents[2] / "labs"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class LabSteps:
    steps: tuple[str, ...]
    hints: dict[str, tuple[str, ...]]

    def hint(self, step: str, used: int) -> str:
        """The next hint the attendee has not read (the last one if they read them all)."""
        hints = self.hints.get(step, ())
        if not hints:
            return ""
        text = hints[min(used, len(hints) - 1)]
        return _PLACEHOLDER.sub(lambda m: f"<{m.group(1)}>", text)  # filled in on the VM, not here


@functools.cache
def catalog(labs_dir: Path = DEFAULT_LABS_DIR) -> dict[str, LabSteps]:
    found: dict[str, LabSteps] = {}
    for path in sorted(Path(labs_dir).glob("*/lab.toml")):
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        steps = [s for s in data.get("steps", []) if isinstance(s, dict) and isinstance(s.get("id"), str)]
        found[path.parent.name] = LabSteps(
            steps=tuple(s["id"] for s in steps),
            hints={s["id"]: tuple(h for h in s.get("hints", []) if isinstance(h, str)) for s in steps})
    return found
