"""What a fleet made, on disk: ``<state_dir>/fleet.json``, written before each step it records.

The file names the fleet (prefix, subnet) and, per host, its FleetHost fields
plus the PID and start time of its init. It is written atomically, and only
under the fleet's lock, so two ``up``/``down`` on one state directory never
interleave. ``down`` trusts it for PIDs but also scans the kernel by name,
because a crash may have happened before a step was recorded.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from controller.fleet.errors import FleetError
from controller.fleet.host import FleetHost


@dataclass
class HostRecord:
    host: FleetHost
    index: int
    pid: int | None = None
    starttime: int | None = None


@dataclass
class FleetState:
    prefix: str
    subnet: str
    hosts: list[HostRecord] = field(default_factory=list)

    def record(self, name: str) -> HostRecord:
        for record in self.hosts:
            if record.host.name == name:
                return record
        known = ", ".join(r.host.name for r in self.hosts) or "none"
        raise FleetError(f"no host named {name!r} in this fleet (hosts: {known})")


def load(path: Path) -> FleetState | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise FleetError(f"fleet state file {path} is not valid JSON ({exc}); "
                         "`labfleet fleet down` still cleans up by name") from None
    try:
        hosts = [HostRecord(FleetHost.from_dict(h["host"]), h["index"], h.get("pid"), h.get("starttime"))
                 for h in data["hosts"]]
        return FleetState(data["prefix"], data["subnet"], hosts)
    except (KeyError, TypeError) as exc:
        raise FleetError(f"fleet state file {path} lacks key {exc}") from None


def save(path: Path, state: FleetState) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """An exclusive flock on the fleet's lock file, held for one operation."""
    lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
