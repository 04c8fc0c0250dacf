"""Messages and hints: an instructor writes to one attendee, a selection, or the room.

``send`` stores one row per node (the record of what was sent, and to whom),
audits it once per node (``message.send``) and issues a ``message.notice``
command to each node: its agent keeps the message on disk until the attendee
has seen it (``lab status``, ``lab messages``, or their next prompt) and then
lists its id under ``messages.read`` in the state snapshot it reports. So the
controller knows what is still unread without a write per read: ``unread``
compares its rows with the node's last snapshot.

A hint is a message whose text comes from the lab catalog (``labs/<id>/
lab.toml``, the step's hints; placeholders shown as ``<name>``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller import audit, commands
from controller.errors import NotFound, ValidationFailed
from controller.models import Attendee, Message, Node, new_id, utcnow
from controller.stuck import labs as lab_catalog
from node_agent.protocol import MESSAGE_TEXT_MAX

NOTICE_TIMEOUT = 30.0
NOTICE_DEADLINE = 3600.0  # a node that is away for a while still gets it when it is back
UNREAD_LISTED = 100  # the newest unread messages a listing shows


def hint_text(lab: str, step: str, level: int, labs_dir: Path = lab_catalog.DEFAULT_LABS_DIR) -> str:
    """The catalog's hint ``level`` (1 = gentlest) for ``lab``/``step``; a 4xx naming the field otherwise."""
    steps = lab_catalog.catalog(labs_dir).get(lab)
    if steps is None:
        raise NotFound(f"no lab {lab!r} in the catalog", field="hint")
    if step not in steps.steps:
        raise NotFound(f"lab {lab} has no step {step!r} (steps: {', '.join(steps.steps)})", field="hint")
    hints = steps.hints.get(step, ())
    if not hints:
        raise NotFound(f"{lab}/{step} has no hints", field="hint")
    if not 1 <= level <= len(hints):
        raise ValidationFailed(f"level: {lab}/{step} has hints 1..{len(hints)}", field="level")
    return steps.hint(step, level - 1)


def send(session: Session, targets: list[Node], *, text: str, actor: str, name: str, kind: str = "message",
         lab: str = "", step: str = "") -> tuple[str, list[Message]]:
    """Store, audit and deliver one message to each node; returns the batch id and the rows."""
    text = text.strip()
    if not text:
        raise ValidationFailed("text: must not be blank", field="text")
    if len(text) > MESSAGE_TEXT_MAX:
        raise ValidationFailed(f"text: at most {MESSAGE_TEXT_MAX} characters", field="text")
    batch_id, now = new_id(), utcnow()
    attendees = dict(session.execute(select(Attendee.node_id, Attendee.id).where(
        Attendee.node_id.in_([n.id for n in targets]))).all())
    rows = []
    for node in targets:
        row = Message(id=new_id(), node_id=node.id, attendee_id=attendees.get(node.id), batch_id=batch_id,
                      kind=kind, lab=lab, step=step, text=text, sent_by=name, created_at=now)
        session.add(row)
        rows.append(row)
        audit.record(session, actor=actor, action="message.send", target=row.id, node=node.name, kind=kind,
                     lab=lab, step=step, chars=len(text), batch=batch_id)
        # One command per node: each carries its own message id (the agent keeps and reports it).
        commands.issue(session, actor=actor, kind="message.notice", nodes=[node], timeout=NOTICE_TIMEOUT,
                       deadline_in=NOTICE_DEADLINE,
                       args={"message_id": row.id, "text": text, "kind": kind, "by": name[:120],
                             "lab": lab, "step": step})
    session.flush()
    return batch_id, rows


def mark_read(session: Session, node: Node, message_id: str, *, actor: str) -> str:
    """The attendee marked one of their node's messages read on their page: a ``message.read`` command to
    its agent, which marks it in the same message box as ``lab status`` (the agent owns read state).
    Audited as ``message.read``; returns the command id. Another node's message is a 404."""
    row = session.get(Message, message_id) if isinstance(message_id, str) else None
    if row is None or row.node_id != node.id:
        raise NotFound("no such message of yours", field="message_id")
    audit.record(session, actor=actor, action="message.read", target=row.id, node=node.name)
    issued = commands.issue(session, actor=actor, kind="message.read", nodes=[node], timeout=NOTICE_TIMEOUT,
                            deadline_in=NOTICE_DEADLINE, args={"message_id": row.id})
    return issued.command_ids[0]


def read_ids(snapshot: Any) -> set[str]:
    """The message ids a node's agent says its attendee has seen (``messages.read`` of its snapshot)."""
    messages = snapshot.get("messages") if isinstance(snapshot, dict) else None
    read = messages.get("read") if isinstance(messages, dict) else None
    return {i for i in read if isinstance(i, str)} if isinstance(read, list) else set()


def unread(session: Session, node: Node) -> list[Message]:
    """The node's messages its attendee has not seen yet, oldest first (at most the newest 100)."""
    seen = read_ids(node.state_snapshot)
    rows = session.scalars(select(Message).where(Message.node_id == node.id)
                           .order_by(Message.created_at.desc(), Message.id).limit(UNREAD_LISTED * 4)).all()
    return [row for row in reversed(rows) if row.id not in seen][-UNREAD_LISTED:]


def listing(session: Session, *, node_ref: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """What was sent, newest first, with whether each attendee has seen it (the instructor's view)."""
    query = select(Message, Node.name, Node.state_snapshot).join(Node, Node.id == Message.node_id)
    if node_ref:
        node = session.scalar(select(Node).where((Node.name == node_ref) | (Node.id == node_ref)))
        if node is None:
            raise NotFound(f"no node {node_ref!r}", field="node")
        query = query.where(Message.node_id == node.id)
    rows = session.execute(query.order_by(Message.created_at.desc(), Message.id).limit(limit)).all()
    return [{**to_dict(row), "node": name, "read": row.id in read_ids(snapshot)} for row, name, snapshot in rows]


def to_dict(row: Message) -> dict[str, Any]:
    return {"id": row.id, "batch_id": row.batch_id, "kind": row.kind, "lab": row.lab, "step": row.step,
            "text": row.text, "sent_by": row.sent_by, "created_at": _iso(row.created_at)}


def _iso(value: datetime) -> str:
    return value.isoformat()
