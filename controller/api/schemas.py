"""Bodies of the instructor API (the agent's are in node_agent/protocol.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_STRICT = {"strict": True, "extra": "forbid"}


@dataclass
class IssueCommandRequest:
    """Run one command kind on named nodes, or on every node (``all``)."""

    __pydantic_config__ = _STRICT

    kind: str = field(metadata={"max_length": 64})
    args: dict[str, Any] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list, metadata={"max_length": 5000})
    all: bool = False
    timeout: float | None = field(default=None, metadata={"gt": 0, "le": 3600})
    deadline: float | None = field(default=None, metadata={"gt": 0, "le": 7 * 24 * 3600})


@dataclass
class CreateEnrollmentTokenRequest:
    __pydantic_config__ = _STRICT

    label: str = field(default="", metadata={"max_length": 120})
    ttl: float | None = field(default=None, metadata={"gt": 0, "le": 30 * 24 * 3600})
    uses: int = field(default=1, metadata={"ge": 1, "le": 10_000})
