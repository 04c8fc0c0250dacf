"""Request bodies of the provisioning and attendee API (validated strictly, errors name the field)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_STRICT = {"strict": True, "extra": "forbid"}


@dataclass
class StartRunRequest:
    """Run a playbook over an inventory, or (``retry_failed``) over the latest run's failed hosts.

    ``inventory`` holds the driver's options: static ``{path, content, keys}`` (the file's name
    and text, and the key files it names as ``{name as written: key text}``); vagrant and netns
    take none (their folders are the operator's settings, ``inventory/request.py``).
    """

    __pydantic_config__ = _STRICT

    driver: str = field(default="static", metadata={"max_length": 32})
    inventory: dict[str, Any] = field(default_factory=dict)
    playbook: str = field(default="site", metadata={"max_length": 32})
    retry_failed: bool = False
    forks: int | None = field(default=None, metadata={"ge": 1, "le": 500})
    tune: bool = True


@dataclass
class ImportAttendeesRequest:
    __pydantic_config__ = _STRICT

    csv: str = field(metadata={"max_length": 1_000_000})
    source: str = field(default="attendees.csv", metadata={"max_length": 255})


@dataclass
class AssignRequest:
    """Both empty: round-robin of every unassigned attendee; both given: this attendee on this node."""

    __pydantic_config__ = _STRICT

    attendee: str | None = field(default=None, metadata={"max_length": 254})
    node: str | None = field(default=None, metadata={"max_length": 64})


@dataclass
class CredentialsRequest:
    __pydantic_config__ = _STRICT

    reissue: bool = False
