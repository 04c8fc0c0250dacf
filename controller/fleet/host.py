"""One lab host of the local fleet, as callers (inventory driver, tests, demo) see it."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FleetHost:
    """How to reach one host over SSH and what the kernel calls its parts."""

    name: str
    address: str
    ssh_port: int
    private_key_path: str
    known_hosts_path: str
    cgroup_parent: str
    netns: str
    ssh_user: str = "root"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FleetHost:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
