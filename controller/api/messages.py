"""Messages and hints from the instructor to attendees' terminals (``labfleet message``).

``bp`` is the instructor's: send (``POST /api/v1/messages``) and what was sent
(``GET /api/v1/messages``). ``agent_bp`` is scoped to one attendee: the node
comes from the node token (``require_node``), so a caller sees only its own
node's unread messages (the attendee page uses the same scope).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flask import Blueprint, g, jsonify, request

from controller import messages, nodes
from controller.api import responses as r
from controller.api.auth import require_instructor, require_node
from controller.api.db_session import get_session
from controller.api.openapi import Param, documented
from controller.api.validation import parse_body
from controller.errors import ValidationFailed
from controller.models import Node
from controller.runtime.app_state import app_state
from node_agent.protocol import AGENT_API, MESSAGE_TEXT_MAX

agent_bp = Blueprint("agent_messages_api", __name__, url_prefix=AGENT_API)
bp = Blueprint("messages_api", __name__, url_prefix="/api/v1")

_HINT = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63})/([a-z0-9][a-z0-9_-]{0,63})$")


@dataclass
class SendMessageRequest:
    """A message (``text``) or a lab hint (``hint`` = ``LAB/STEP``, ``level``) to named nodes or ``all``."""

    __pydantic_config__ = {"strict": True, "extra": "forbid"}

    text: str | None = field(default=None, metadata={"max_length": MESSAGE_TEXT_MAX})
    hint: str | None = field(default=None, metadata={"max_length": 130})
    level: int = field(default=1, metadata={"ge": 1, "le": 10})
    nodes: list[str] = field(default_factory=list, metadata={"max_length": 5000})
    all: bool = False


@bp.before_request
def _authenticate():
    require_instructor()


@bp.post("/messages")
@documented("Send a message or a lab hint to attendees' terminals", request=SendMessageRequest,
            responses={201: r.MessagesSent})
def send_message():
    body = parse_body(SendMessageRequest)
    if (body.text is None) == (body.hint is None):
        raise ValidationFailed("give either text or hint (LAB/STEP)", field="text")
    if body.all and body.nodes:
        raise ValidationFailed("name nodes or ask for all, not both", field="nodes")
    session = get_session()
    kind, lab, step, text = "message", "", "", body.text or ""
    if body.hint is not None:
        match = _HINT.match(body.hint)
        if match is None:
            raise ValidationFailed("hint: LAB/STEP, e.g. ns-uts/hostname", field="hint")
        kind, (lab, step) = "hint", match.groups()
        text = messages.hint_text(lab, step, body.level)
    targets = nodes.resolve(session, names=body.nodes, all_nodes=body.all)
    if not targets:
        raise ValidationFailed("no enrolled node to send it to", field="nodes")
    batch_id, rows = messages.send(session, targets, text=text, kind=kind, lab=lab, step=step,
                                   actor=g.principal.actor, name=g.principal.name)
    session.commit()
    app_state().notifier.notify(node.id for node in targets)
    by_id = {node.id: node.name for node in targets}
    return jsonify({"batch_id": batch_id, "kind": kind, "text": text,
                    "messages": [{"id": row.id, "node": by_id[row.node_id]} for row in rows]}), 201


@bp.get("/messages")
@documented("Messages sent, newest first, and whether each attendee has seen theirs",
            responses={200: r.MessageList}, query=[Param("node", {"type": "string"}, "only this node")])
def list_messages():
    return jsonify({"messages": messages.listing(get_session(), node_ref=request.args.get("node") or None)})


@agent_bp.get("/nodes/<node_id>/messages")
@documented("The node's attendee's unread messages (attendee-scoped: the token's own node)",
            responses={200: r.UnreadMessages}, security="node")
def unread_messages(node_id: str):
    identity = require_node(node_id)
    session = get_session()
    node = session.get(Node, identity.id)
    return jsonify({"messages": [messages.to_dict(row) for row in messages.unread(session, node)]})
