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

from sqlalchemy import Select, and_, func, insert, or_, select, update
from sqlalchemy.orm import Session, selectinload

from controller import audit, states
from controller.errors import NotFound, ValidationFailed
from controller.models import Command, Node, new_id, utcnow
from controller.validation import parse
from node_agent.protocol import COMMAND_KINDS, CommandMessage


@dataclass
class Issued:
    batch_id: str
    command_ids: list[str]  # in the order of the nodes given


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
    rows = [
        {"id": new_id(), "batch_id": batch_id, "node_id": node.id, "kind": kind, "args": args, "issued_by": actor,
         "issued_at": now, "deadline": deadline, "timeout": timeout, "state": states.COMMAND_PENDING,
         "delivery_count": 0}
        for node in nodes
    ]
    # One executemany: issuing to a room of 500 must not build 500 ORM objects.
    session.execute(insert(Command), rows)
    audit.record(session, actor=actor, action="command.issue", target=batch_id, kind=kind, args=args,
                 nodes=[n.name for n in nodes], deadline=deadline.isoformat())
    return Issued(batch_id, [row["id"] for row in rows])


def _offered(node_id: str, *, resync: bool, redeliver_after: float, now: datetime) -> tuple:
    """The conditions under which a command is handed to its node (both the look and the take use them)."""
    return (Command.node_id == node_id, *offer_conditions(resync=resync, redeliver_after=redeliver_after, now=now))


def offer_conditions(*, resync: bool, redeliver_after: float, now: datetime) -> tuple:
    """Which commands of a node are offered to it (controller/command_bulk.py applies them to many nodes)."""
    if resync:
        state = Command.state.in_(states.COMMAND_OPEN_STATES)
    else:
        stale = now - timedelta(seconds=redeliver_after)
        state = or_(Command.state == states.COMMAND_PENDING,
                    and_(Command.state == states.COMMAND_DELIVERED, Command.delivered_at < stale))
    return state, Command.deadline > now


def has_deliverable(session: Session, node_id: str, *, resync: bool, redeliver_after: float) -> bool:
    """A read-only look: most polls find nothing and must not queue for a write."""
    offered = _offered(node_id, resync=resync, redeliver_after=redeliver_after, now=utcnow())
    return session.execute(select(Command.id).where(*offered).limit(1)).first() is not None


def take_for_delivery(
    session: Session, node_id: str, *, resync: bool, redeliver_after: float
) -> list[CommandMessage]:
    """Commands to hand to this node now, marked delivered in the same transaction.

    The UPDATE repeats the offer's conditions and returns only the rows it
    changed: a result stored by another web process since the SELECT must not
    be turned back into "delivered".
    """
    now = utcnow()
    offered = _offered(node_id, resync=resync, redeliver_after=redeliver_after, now=now)
    ids = session.scalars(select(Command.id).where(*offered).order_by(Command.issued_at).limit(100)).all()
    if not ids:
        return []
    rows = session.execute(
        update(Command).where(Command.id.in_(ids), *offered)
        .values(state=states.COMMAND_DELIVERED, delivered_at=now, delivery_count=Command.delivery_count + 1)
        .returning(Command.id, Command.kind, Command.args, Command.deadline, Command.timeout, Command.issued_at)
    ).all()
    return [CommandMessage(id=r.id, kind=r.kind, args=r.args, deadline=r.deadline.isoformat(), timeout=r.timeout)
            for r in sorted(rows, key=lambda r: r.issued_at)]


@dataclass
class StoredResult:
    duplicate: bool
    kind: str
    latency: float  # seconds from issuing to storing the result


def expire_overdue(session: Session, *, now: datetime | None = None) -> int:
    """Mark commands past their deadline without a result as expired."""
    now = now or utcnow()
    result = session.execute(
        update(Command)
        .where(Command.state.in_(states.COMMAND_OPEN_STATES), Command.deadline <= now)
        .values(state=states.COMMAND_EXPIRED, finished_at=now)
    )
    return result.rowcount or 0


def batch_query(batch_id: str) -> Select:
    """A batch's commands with their node and result (page it by node name)."""
    return (select(Command).join(Node, Node.id == Command.node_id).where(Command.batch_id == batch_id)
            .options(selectinload(Command.node), selectinload(Command.result)))


def batch_progress(session: Session, batch_id: str) -> dict[str, int]:
    """How many commands of a batch are in each state: cheap enough to poll."""
    counts = dict(session.execute(
        select(Command.state, func.count()).where(Command.batch_id == batch_id).group_by(Command.state)
    ).all())
    if not counts:
        raise NotFound(f"no command batch {batch_id!r}", field="batch_id")
    return counts


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
        "delivered_at": command.delivered_at.isoformat() if command.delivered_at else None,
        "result": None,
    }
    if command.result is not None:
        r = command.result
        view["result"] = {"ok": r.ok, "output": r.output, "error": r.error, "duration_ms": r.duration_ms,
                          "received_at": r.received_at.isoformat()}
    return view
