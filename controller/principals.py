"""Who acts on the fleet, as the domain sees it: no HTTP here (controller/api/auth.py decides who a
request is and builds these)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    kind: str  # "instructor" | "node" | "system"
    id: str
    name: str

    @property
    def actor(self) -> str:
        """How this principal appears in the audit log."""
        return f"{self.kind}:{self.name}"


# The controller itself (the sweep marking silent nodes offline, ...).
SYSTEM = Principal("system", "system", "sweep")


@dataclass(frozen=True)
class NodeIdentity:
    """What a request needs to know about the calling node (not the whole row: heartbeats are hot)."""

    id: str
    name: str
    state: str
    state_digest: str
    heartbeat_interval: float
