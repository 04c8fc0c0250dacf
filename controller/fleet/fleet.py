"""The fleet as a whole: ``up``, ``down``, ``hosts``, ``status`` and sshd control."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controller.fleet.config import DEFAULT_PREFIX, DEFAULT_STATE_DIR, DEFAULT_SUBNET, FleetConfig
from controller.fleet.host import FleetHost


@dataclass(frozen=True)
class HostStatus:
    """What ``fleet list`` shows for one host."""

    host: FleetHost
    pid: int | None
    running: bool
    sshd_answers: bool


class Fleet:
    """Lab hosts made of namespaces on this machine (see the package docstring)."""

    def __init__(self, state_dir: str | Path = DEFAULT_STATE_DIR, subnet: str = DEFAULT_SUBNET,
                 prefix: str = DEFAULT_PREFIX) -> None:
        self.config = FleetConfig.build(state_dir, subnet, prefix)

    @property
    def bridge_address(self) -> str:
        return self.config.bridge_address

    def up(self, count: int) -> list[FleetHost]:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def hosts(self) -> list[FleetHost]:
        raise NotImplementedError

    def status(self) -> list[HostStatus]:
        raise NotImplementedError

    def stop_sshd(self, name: str) -> None:
        raise NotImplementedError

    def start_sshd(self, name: str) -> None:
        raise NotImplementedError
