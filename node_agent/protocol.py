"""The agent <-> controller wire protocol, defined once for both sides.

Every message is a standard-library dataclass so the agent, which runs on
attendee VMs, needs nothing beyond the standard library to speak it (its RSS
budget is 30 MB; pydantic alone costs ~14 MB). The controller validates the
very same classes with pydantic (``controller/validation.py``), which gives it
strict typing, field-level error locations and the JSON schemas of the OpenAPI
document.

All requests are initiated by the agent (docs/architecture.md: "agents never
listen"). Paths, relative to the controller's base URL:

=======  ===========================================  ==================  =================
method   path                                         body                answer
=======  ===========================================  ==================  =================
POST     /api/agent/v1/enroll                         EnrollRequest       EnrollResponse
POST     /api/agent/v1/nodes/<node_id>/heartbeat      Heartbeat           HeartbeatResponse
PUT      /api/agent/v1/nodes/<node_id>/state          StateReport         Ack
GET      /api/agent/v1/nodes/<node_id>/commands       (query: wait,       CommandBatch
                                                       resync)
POST     /api/agent/v1/nodes/<node_id>/results        CommandResult       Ack
=======  ===========================================  ==================  =================

Every path but enroll needs ``Authorization: Bearer <node token>``, and the
token must belong to ``<node_id>``. Errors are ``ErrorBody``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
AGENT_API = "/api/agent/v1"


def enroll_path() -> str:
    return f"{AGENT_API}/enroll"


def heartbeat_path(node_id: str) -> str:
    return f"{AGENT_API}/nodes/{node_id}/heartbeat"


def state_path(node_id: str) -> str:
    return f"{AGENT_API}/nodes/{node_id}/state"


def commands_path(node_id: str) -> str:
    return f"{AGENT_API}/nodes/{node_id}/commands"


def results_path(node_id: str) -> str:
    return f"{AGENT_API}/nodes/{node_id}/results"


def help_path(node_id: str) -> str:
    return f"{AGENT_API}/nodes/{node_id}/help"


# Pydantic reads this attribute on standard dataclasses: no silent coercion of
# "5" into 5, unknown keys from a newer agent are ignored.
_STRICT = {"strict": True, "extra": "ignore"}


@dataclass
class EnrollRequest:
    """A machine asks to join an event with a one-time enrollment token.

    ``machine_id`` and ``machine_secret`` are generated once by the agent and
    kept in its state directory: presenting the same pair again (a reinstalled
    agent, a revoked node token) keeps the node's identity, and knowing only
    another machine's id is not enough to take its identity over.
    """

    __pydantic_config__ = _STRICT

    enrollment_token: str = field(metadata={"max_length": 200})
    machine_id: str = field(metadata={"max_length": 64})
    machine_secret: str = field(metadata={"max_length": 200})
    name: str = field(metadata={"max_length": 64})
    hostname: str = field(default="", metadata={"max_length": 255})
    agent_version: str = field(default="", metadata={"max_length": 64})


@dataclass
class EnrollResponse:
    __pydantic_config__ = _STRICT

    node_id: str
    node_token: str
    name: str
    heartbeat_interval: float
    poll_wait: float


@dataclass
class Heartbeat:
    """Small and frequent: a sequence number and the digest of the node's state."""

    __pydantic_config__ = _STRICT

    # The controller keeps it in a 32-bit column: one node past it would fail every node's flush.
    seq: int = field(metadata={"ge": 0, "le": 2**31 - 1})
    digest: str = field(metadata={"max_length": 128})
    agent_version: str = field(default="", metadata={"max_length": 64})
    # The interval the agent beats at now (the last one the controller answered with); 0 = not said.
    # The controller counts a stretched node's beats as the load it would be at its own interval.
    interval: float = field(default=0.0, metadata={"ge": 0, "le": 3600})


@dataclass
class HeartbeatResponse:
    __pydantic_config__ = _STRICT

    send_state: bool
    # The next interval: the node's own, or longer while the controller is over its heartbeat budget.
    heartbeat_interval: float


@dataclass
class StateReport:
    """The full snapshot, sent when the digest the controller holds is stale."""

    __pydantic_config__ = _STRICT

    digest: str = field(metadata={"max_length": 128})
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class CommandMessage:
    """One command for one node. ``id`` is the idempotency key on both sides."""

    __pydantic_config__ = _STRICT

    id: str
    kind: str
    args: dict[str, Any]
    deadline: str  # ISO 8601, UTC
    timeout: float  # seconds the agent may spend running it


@dataclass
class CommandBatch:
    __pydantic_config__ = _STRICT

    commands: list[CommandMessage]


@dataclass
class CommandResult:
    """What running a command produced. Posting the same result twice stores it once."""

    __pydantic_config__ = _STRICT

    command_id: str = field(metadata={"max_length": 64})
    ok: bool
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = field(default=None, metadata={"max_length": 8192})
    started_at: str = ""
    finished_at: str = ""
    duration_ms: float = field(default=0.0, metadata={"ge": 0})


@dataclass
class LabStepOutcome:
    """One step's verdict inside a lab command's result output (the agent adds more keys; they are ignored)."""

    __pydantic_config__ = _STRICT

    step: str = field(metadata={"max_length": 64})
    status: str = field(default="", metadata={"max_length": 32})
    reason: str | None = field(default=None, metadata={"max_length": 8192})
    evidence: dict[str, Any] | None = None


@dataclass
class LabOutcome:
    """The part of a ``lab.check``/``lab.solve``/``lab.reset`` result the controller records as progress."""

    __pydantic_config__ = _STRICT

    lab: str = field(metadata={"max_length": 64})
    steps: list[LabStepOutcome] = field(default_factory=list, metadata={"max_length": 2000})


@dataclass
class Ack:
    __pydantic_config__ = _STRICT

    ok: bool = True
    duplicate: bool = False


@dataclass
class ErrorBody:
    """Every 4xx/5xx answer of the controller's API."""

    __pydantic_config__ = _STRICT

    error: str
    detail: str
    field: str | None = None


# ---------------------------------------------------------------------------
# The closed set of command kinds and their arguments. The controller refuses
# any other kind; the agent registers one handler per kind
# (``node_agent/commands/``). There is no free shell.


@dataclass
class NoArgs:
    __pydantic_config__ = {"strict": True, "extra": "forbid"}


@dataclass
class PingArgs:
    """``delay_ms`` makes a ping take a while: useful to test in-flight commands."""

    __pydantic_config__ = {"strict": True, "extra": "forbid"}

    delay_ms: int = field(default=0, metadata={"ge": 0, "le": 60_000})


LAB_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"


@dataclass
class LabArgs:
    """A lab and optionally one of its steps (all steps when ``step`` is None)."""

    __pydantic_config__ = {"strict": True, "extra": "forbid"}

    lab: str = field(metadata={"pattern": LAB_ID_PATTERN})
    step: str | None = field(default=None, metadata={"pattern": LAB_ID_PATTERN})


@dataclass
class LabResetArgs:
    """Reset a lab to its start, or to the start of ``to_step`` (earlier steps are re-solved)."""

    __pydantic_config__ = {"strict": True, "extra": "forbid"}

    lab: str = field(metadata={"pattern": LAB_ID_PATTERN})
    to_step: str | None = field(default=None, metadata={"pattern": LAB_ID_PATTERN})
    # From the attendee's web page: the attendee's permissions (earlier steps skipped, never solved).
    as_attendee: bool = False


@dataclass
class LabHintArgs:
    """The attendee's ``level``-th hint for a step (recorded in the VM's activity, like `lab hint`)."""

    __pydantic_config__ = {"strict": True, "extra": "forbid"}

    lab: str = field(metadata={"pattern": LAB_ID_PATTERN})
    step: str = field(metadata={"pattern": LAB_ID_PATTERN})
    level: int = field(default=1, metadata={"ge": 1, "le": 20})


HELP_MESSAGE_MAX = 500  # what an attendee may type with `lab help` (and an instructor's reply)


@dataclass
class HelpRequest:
    """The attendee's raised hand (``lab help``), sent by their node's agent; the node is the token's."""

    __pydantic_config__ = {"strict": True, "extra": "forbid"}

    lab: str | None = field(default=None, metadata={"pattern": LAB_ID_PATTERN})
    step: str | None = field(default=None, metadata={"pattern": LAB_ID_PATTERN})
    reason: str = field(default="", metadata={"max_length": 500})
    message: str = field(default="", metadata={"max_length": HELP_MESSAGE_MAX})


@dataclass
class HelpRaised:
    __pydantic_config__ = _STRICT

    id: str
    state: str


@dataclass
class HelpNoticeArgs:
    """What the instructor did about a raised hand: shown in ``lab status`` and on the next prompt."""

    __pydantic_config__ = {"strict": True, "extra": "forbid"}

    help_id: str = field(metadata={"pattern": r"^[0-9a-f]{32}$"})
    event: str = field(metadata={"pattern": r"^(claimed|reply|resolved)$"})
    by: str = field(default="", metadata={"max_length": 120})
    text: str = field(default="", metadata={"max_length": HELP_MESSAGE_MAX})


MESSAGE_TEXT_MAX = 1000  # an instructor's message or a lab hint sent with `labfleet message`


@dataclass
class MessageNoticeArgs:
    """A message or a lab hint from the instructor: kept by the agent until the attendee has seen it."""

    __pydantic_config__ = {"strict": True, "extra": "forbid"}

    message_id: str = field(metadata={"pattern": r"^[0-9a-f]{32}$"})
    text: str = field(metadata={"min_length": 1, "max_length": MESSAGE_TEXT_MAX})
    kind: str = field(default="message", metadata={"pattern": r"^(message|hint)$"})
    by: str = field(default="", metadata={"max_length": 120})
    lab: str = field(default="", metadata={"max_length": 64})
    step: str = field(default="", metadata={"max_length": 64})
@dataclass
class TerminalOpenArgs:
    """Open (or keep) the relay of the attendee's shared terminal for the controller's session ``session``."""

    __pydantic_config__ = {"strict": True, "extra": "forbid"}

    session: str = field(metadata={"pattern": r"^[0-9a-f]{32}$"})


COMMAND_KINDS: dict[str, type] = {
    "ping": PingArgs,
    "collect-state": NoArgs,
    "agent-restart": NoArgs,
    "lab.list": NoArgs,
    "lab.check": LabArgs,
    "lab.solve": LabArgs,
    "lab.reset": LabResetArgs,
    "lab.instructions": LabArgs,
    "lab.hint": LabHintArgs,
    "inspect": NoArgs,
    "help.notice": HelpNoticeArgs,
    "message.notice": MessageNoticeArgs,
    "terminal.open": TerminalOpenArgs,
}
LAB_COMMAND_KINDS = ("lab.check", "lab.solve", "lab.reset")


# ---------------------------------------------------------------------------
# Decoding on the agent side, without pydantic. The controller is trusted to
# send well-formed answers, but a proxy's HTML error page must still give a
# clear error rather than a KeyError deep in the daemon.


class ProtocolError(ValueError):
    """A message from the other side does not match the protocol."""


T = typing.TypeVar("T")


def decode(cls: type[T], data: Any) -> T:
    """Build ``cls`` from a decoded JSON object, checking required keys and types."""
    if not isinstance(data, dict):
        raise ProtocolError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{cls.__name__}: missing field {f.name!r}")
            continue
        kwargs[f.name] = _decode_value(cls.__name__, f.name, hints[f.name], data[f.name])
    return cls(**kwargs)


def _decode_value(owner: str, name: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ProtocolError(f"{owner}.{name}: expected a list")
        return [_decode_value(owner, name, item, v) for v in value]
    if dataclasses.is_dataclass(hint):
        return decode(hint, value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {str: str, int: int, float: float, bool: bool}.get(hint)
    if expected is not None and not isinstance(value, expected):
        raise ProtocolError(f"{owner}.{name}: expected {expected.__name__}")
    return value


def encode(message: Any) -> dict[str, Any]:
    """The JSON-ready dict of a protocol message."""
    return dataclasses.asdict(message)
