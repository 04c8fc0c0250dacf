"""One lab host of the local fleet, as callers (inventory driver, tests, demo) see it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from controller.fleet.config import LABS_LEAF, SESSIONS_LEAF


@dataclass(frozen=True)
class FleetHost:
    """How to reach one host over SSH and what the kernel calls its parts."""

    name: str
    address: str
    ssh_port: int
    private_key_path: str
    known_hosts_path: str
    cgroup_parent: str  # the host's own group; its processes are in <cgroup_parent>/system
    netns: str
    ssh_user: str = "root"
    lab_cgroup_parent: str = ""  # the host's labs' own subtree: the agent's lab_cgroup_parent

    def __post_init__(self) -> None:
        if not self.lab_cgroup_parent:  # a state file written before hosts had a labs subtree
            object.__setattr__(self, "lab_cgroup_parent", f"{self.cgroup_parent}/{LABS_LEAF}")

    @property
    def session_cgroup(self) -> str:
        """Where the attendee's login sessions run, under their ceiling (the playbook makes it)."""
        return f"{self.cgroup_parent}/{SESSIONS_LEAF}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FleetHost:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
