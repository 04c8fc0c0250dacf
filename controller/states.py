"""Node and command states, and the moves allowed between them.

Dependency-free on purpose (like supervisor's ``states.py``): the models, the
sweep, the API and the CLI all import the same names.
"""

from __future__ import annotations

NODE_ONLINE = "online"
NODE_OFFLINE = "offline"
NODE_REVOKED = "revoked"
NODE_RETIRED = "retired"
NODE_STATES = (NODE_ONLINE, NODE_OFFLINE, NODE_REVOKED, NODE_RETIRED)

COMMAND_PENDING = "pending"
COMMAND_DELIVERED = "delivered"
COMMAND_SUCCEEDED = "succeeded"
COMMAND_FAILED = "failed"
COMMAND_EXPIRED = "expired"
COMMAND_STATES = (COMMAND_PENDING, COMMAND_DELIVERED, COMMAND_SUCCEEDED, COMMAND_FAILED, COMMAND_EXPIRED)
COMMAND_OPEN_STATES = (COMMAND_PENDING, COMMAND_DELIVERED)
COMMAND_DONE_STATES = (COMMAND_SUCCEEDED, COMMAND_FAILED, COMMAND_EXPIRED)

_NODE_MOVES = {
    NODE_ONLINE: {NODE_OFFLINE, NODE_REVOKED, NODE_RETIRED},
    NODE_OFFLINE: {NODE_ONLINE, NODE_REVOKED, NODE_RETIRED},
    # A revoked node comes back only by enrolling again with a new enrollment token.
    NODE_REVOKED: {NODE_ONLINE, NODE_RETIRED},
    NODE_RETIRED: {NODE_ONLINE},
}

_COMMAND_MOVES = {
    COMMAND_PENDING: {COMMAND_DELIVERED, COMMAND_SUCCEEDED, COMMAND_FAILED, COMMAND_EXPIRED},
    # Redelivery keeps a command "delivered"; a late result still lands.
    COMMAND_DELIVERED: {COMMAND_DELIVERED, COMMAND_SUCCEEDED, COMMAND_FAILED, COMMAND_EXPIRED},
    COMMAND_SUCCEEDED: set(),
    COMMAND_FAILED: set(),
    COMMAND_EXPIRED: set(),
}


class IllegalTransition(ValueError):
    """A state change that the state machine does not allow."""


def check_node_move(current: str, new: str) -> None:
    _check(_NODE_MOVES, "node", current, new)


def check_command_move(current: str, new: str) -> None:
    _check(_COMMAND_MOVES, "command", current, new)


def _check(moves: dict[str, set[str]], what: str, current: str, new: str) -> None:
    allowed = moves.get(current, set())
    if new not in allowed:
        names = ", ".join(sorted(allowed)) or "none (final state)"
        raise IllegalTransition(f"{what} cannot go from {current!r} to {new!r}; allowed: {names}")
