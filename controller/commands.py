"""Commands: issuing them, handing them to their node, storing results, expiring them.

Delivery is at-least-once. A command is offered to its node while it is
pending; once delivered it is offered again only when the agent says it lost
its connection (``resync``) or when no result came within ``redeliver_after``.
The agent's journal makes the effect exactly-once; the unique result row per
command makes storage exactly-once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller import audit, states
from controller.errors import NotFound, ValidationFailed
from controller.models import Command, CommandResult, Node, new_id, utcnow
from controller.validation import parse
from node_agent.protocol import COMMAND_KINDS, CommandMessage
from node_agent.protocol import CommandResult as ResultMessage


@dataclass
class Issued:
    batch_id: str
    commands: list[Command]


def validate_kind(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments, checked against the kind's schema; unknown kinds are refused."""
    if kind not in COMMAND_KINDS:
        known = ", ".join(sorted(COMMAND_KINDS))
        raise ValidationFailed(f"unknown command kind {kind!r}; known kinds: {known}", field="kind")
    from dataclasses import asdict

    return asdict(parse(COMMAND_KINDS[kind], args, prefix="args."))


def issue(
    session: Session, *, actor: str, kind: str, args: dict[str, Any], nodes: list[Node],
    timeout: float, deadline_in: float,
) -> Issued:
    args = validate_kind(kind, args)
    batch_id = new_id()
    now = utcnow()
    deadline = now + timedelta(seconds=deadline_in)
    commands = [
        Command(batch_id=batch_id, node_id=node.id, kind=kind, args=args, issued_by=actor, issued_at=now,
                deadline=deadline, timeout=timeout)
        for node in nodes
    ]
    session.add_all(commands)
    session.flush()
    audit.record(session, actor=actor, action="command.issue", target=batch_id, kind=kind, args=args,
                 nodes=[n.name for n in nodes], deadline=deadline.isoformat())
    return Issued(batch_id, commands)


def take_for_delivery(
    session: Session, node_id: str, *, resync: bool, redeliver_after: float
) -> list[Command]:
    """Commands to hand to this node now, marked delivered in the same transaction."""
    now = utcnow()
    offer = Command.state == states.COMMAND_PENDING
    if resync:
        offer = Command.state.in_(states.COMMAND_OPEN_STATES)
    else:
        stale = now - timedelta(seconds=redeliver_after)
        offer = or_(offer, and_(Command.state == states.COMMAND_DELIVERED, Command.delivered_at < stale))
    commands = list(session.scalars(
        select(Command).where(Command.node_id == node_id, offer, Command.deadline > now)
        .order_by(Command.issued_at).limit(100)
    ))
    for command in commands:
        command.state = states.COMMAND_DELIVERED
        command.delivered_at = now
        command.delivery_count += 1
    return commands


def to_message(command: Command) -> CommandMessage:
    return CommandMessage(id=command.id, kind=command.kind, args=command.args,
                          deadline=command.deadline.isoformat(), timeout=command.timeout)


def store_result(session: Session, node: Node, message: ResultMessage) -> tuple[CommandResult, bool]:
    """Store a node's result once. Returns (result, duplicate)."""
    command = session.get(Command, message.command_id)
    if command is None or command.node_id != node.id:
        # Same answer for "no such command" and "another node's command": no probing.
        raise NotFound(f"no command {message.command_id!r} for this node", field="command_id")
    if command.result is not None:
        return command.result, True
    result = CommandResult(
        command_id=command.id, node_id=node.id, ok=message.ok, output=message.output, error=message.error,
        started_at=message.started_at, finished_at=message.finished_at, duration_ms=message.duration_ms,
    )
    new_state = states.COMMAND_SUCCEEDED if message.ok else states.COMMAND_FAILED
    if command.state == states.COMMAND_EXPIRED:
        new_state = states.COMMAND_EXPIRED  # a late result is kept, the outcome stays "expired"
    else:
        states.check_command_move(command.state, new_state)
    command.state = new_state
    command.finished_at = utcnow()
    session.add(result)
    try:
        session.flush()
    except IntegrityError:
        # Two posts of the same result raced; the other one won.
        session.rollback()
        return session.scalar(select(CommandResult).where(CommandResult.command_id == command.id)), True
    audit.record(session, actor=f"node:{node.name}", action="command.result", target=command.id,
                 kind=command.kind, batch=command.batch_id, ok=message.ok, error=message.error)
    return result, False


def expire_overdue(session: Session, *, now: datetime | None = None) -> int:
    """Mark commands past their deadline without a result as expired."""
    now = now or utcnow()
    result = session.execute(
        update(Command)
        .where(Command.state.in_(states.COMMAND_OPEN_STATES), Command.deadline <= now)
        .values(state=states.COMMAND_EXPIRED, finished_at=now)
    )
    return result.rowcount or 0


def batch(session: Session, batch_id: str) -> list[Command]:
    commands = list(session.scalars(select(Command).where(Command.batch_id == batch_id)))
    if not commands:
        raise NotFound(f"no command batch {batch_id!r}", field="batch_id")
    return commands


def get_or_404(session: Session, command_id: str) -> Command:
    command = session.get(Command, command_id)
    if command is None:
        raise NotFound(f"no command {command_id!r}", field="command_id")
    return command


def count_by_kind_and_state(session: Session) -> list[tuple[str, str, int]]:
    query = select(Command.kind, Command.state, func.count()).group_by(Command.kind, Command.state)
    return [(kind, state, n) for kind, state, n in session.execute(query)]


def to_dict(command: Command) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": command.id, "batch_id": command.batch_id, "node_id": command.node_id,
        "node": command.node.name, "kind": command.kind, "args": command.args, "state": command.state,
        "issued_by": command.issued_by, "issued_at": command.issued_at.isoformat(),
        "deadline": command.deadline.isoformat(), "delivery_count": command.delivery_count,
        "result": None,
    }
    if command.result is not None:
        r = command.result
        view["result"] = {"ok": r.ok, "output": r.output, "error": r.error, "duration_ms": r.duration_ms,
                          "received_at": r.received_at.isoformat()}
    return view
