"""Raised hands: an attendee asks for help (``lab help``), an instructor claims, replies, resolves.

A node raises a hand only for itself: the node comes from its token (the
agent API), never from the body. One hand per node is up at a time: raising
it again while it is up updates the message. What the instructor does reaches
the attendee as a ``help.notice`` command to their node (shown by ``lab
status`` and on their next prompt). Every action is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from controller import audit, commands
from controller.errors import Conflict, NotFound, ValidationFailed
from controller.models import Attendee, HelpRequest, Node, StuckFlag, utcnow
from node_agent.protocol import HELP_MESSAGE_MAX

OPEN, CLAIMED, RESOLVED = "open", "claimed", "resolved"
STATES = (OPEN, CLAIMED, RESOLVED)
UP = (OPEN, CLAIMED)  # a hand that is still up
NOTICE_TIMEOUT = 30.0
NOTICE_DEADLINE = 600.0  # a notice for a node that is away for a while still reaches it when it is back


def raise_hand(session: Session, node: Node, *, lab: str | None, step: str | None, reason: str, message: str,
               actor: str, source: str = "attendee") -> tuple[HelpRequest, bool]:
    """The node's hand, raised (or, when it is already up, its message updated); True when it is new."""
    attendee_id = session.scalar(select(Attendee.id).where(Attendee.node_id == node.id))
    row = session.scalar(select(HelpRequest).where(HelpRequest.node_id == node.id, HelpRequest.state.in_(UP))
                         .order_by(HelpRequest.created_at.desc()).limit(1))
    created = row is None
    if row is None:
        row = HelpRequest(node_id=node.id, attendee_id=attendee_id, source=source, state=OPEN, created_at=utcnow())
        session.add(row)
    row.lab, row.step = lab or row.lab or "", step or row.step or ""
    row.reason = reason[:500] or row.reason or ""
    if message or created:
        row.message = message[:HELP_MESSAGE_MAX]
    session.flush()
    audit.record(session, actor=actor, action="help.raise" if created else "help.update", target=row.id,
                 node=node.name, source=source, lab=row.lab, step=row.step)
    return row, created


def raise_for_stuck(session: Session, node_ref: str, *, actor: str) -> HelpRequest:
    """An instructor turns a node's stuck flag into a raised hand (its reasons become the request's)."""
    node = _node(session, node_ref)
    flag = session.get(StuckFlag, node.id)
    if flag is None:
        raise NotFound(f"node {node.name} is not flagged as stuck", field="node")
    reason = "; ".join(r.get("text", "") for r in flag.reasons)
    row, _ = raise_hand(session, node, lab=flag.lab, step=flag.step, reason=reason, message="",
                        actor=actor, source="stuck")
    return row


def get_or_404(session: Session, help_id: str) -> HelpRequest:
    row = session.get(HelpRequest, help_id)
    if row is None:
        raise NotFound(f"no help request {help_id!r}", field="help_id")
    return row


def claim(session: Session, row: HelpRequest, *, actor: str, name: str) -> list[Node]:
    if row.state == RESOLVED:
        raise Conflict("this help request is resolved", field="help_id")
    if row.state == CLAIMED and row.claimed_by and row.claimed_by != name:
        raise Conflict(f"{row.claimed_by} has already claimed it", field="help_id")
    row.state, row.claimed_by, row.claimed_at = CLAIMED, name, utcnow()
    audit.record(session, actor=actor, action="help.claim", target=row.id, node=row.node.name)
    return _notice(session, row, actor=actor, event="claimed", by=name)


def reply(session: Session, row: HelpRequest, text: str, *, actor: str, name: str) -> list[Node]:
    if row.state == RESOLVED:
        raise Conflict("this help request is resolved", field="help_id")
    text = text.strip()
    if not text:
        raise ValidationFailed("text: must not be blank", field="text")
    row.reply, row.replied_by, row.replied_at = text, name, utcnow()
    audit.record(session, actor=actor, action="help.reply", target=row.id, node=row.node.name, chars=len(text))
    return _notice(session, row, actor=actor, event="reply", by=name, text=text)


def resolve(session: Session, row: HelpRequest, *, actor: str, name: str) -> list[Node]:
    if row.state == RESOLVED:
        raise Conflict("this help request is already resolved", field="help_id")
    row.state, row.resolved_by, row.resolved_at = RESOLVED, name, utcnow()
    audit.record(session, actor=actor, action="help.resolve", target=row.id, node=row.node.name)
    return _notice(session, row, actor=actor, event="resolved", by=name)


def _notice(session: Session, row: HelpRequest, *, actor: str, event: str, by: str, text: str = "") -> list[Node]:
    """Tell the attendee's agent; returns the nodes to wake after the commit."""
    commands.issue(session, actor=actor, kind="help.notice", nodes=[row.node], timeout=NOTICE_TIMEOUT,
                   deadline_in=NOTICE_DEADLINE, args={"help_id": row.id, "event": event, "by": by, "text": text})
    return [row.node]


def _node(session: Session, ref: str) -> Node:
    node = session.scalar(select(Node).where((Node.name == ref) | (Node.id == ref)))
    if node is None:
        raise NotFound(f"no node {ref!r}", field="node")
    return node


def list_query(states: tuple[str, ...]) -> Select:
    return (select(HelpRequest, Node.name, Attendee.name.label("attendee"))
            .join(Node, Node.id == HelpRequest.node_id)
            .outerjoin(Attendee, Attendee.id == HelpRequest.attendee_id)
            .where(HelpRequest.state.in_(states))
            .order_by(HelpRequest.created_at, HelpRequest.id))


def to_dict(row: HelpRequest, node: str, attendee: str | None, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    until = row.resolved_at or now
    return {
        "id": row.id, "node": node, "attendee": attendee, "source": row.source, "state": row.state,
        "lab": row.lab, "step": row.step, "reason": row.reason, "message": row.message,
        "created_at": row.created_at.isoformat(), "waited_s": round(max((until - row.created_at).total_seconds(), 0)),
        "claimed_by": row.claimed_by, "claimed_at": _iso(row.claimed_at),
        "reply": row.reply, "replied_by": row.replied_by, "replied_at": _iso(row.replied_at),
        "resolved_by": row.resolved_by, "resolved_at": _iso(row.resolved_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
