"""The help queue: the agent raises its node's hand; instructors list, claim, reply and resolve.

``agent_bp`` is on the agent API: the node is the one the token belongs to
(``require_node``), so a node raises a hand only for itself. ``bp`` is the
instructor's (``/api/v1/help``, ``/api/v1/stuck``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Blueprint, g, jsonify, request

from controller import help_requests
from controller.api import responses as r
from controller.api.auth import require_instructor, require_node
from controller.api.db_session import get_session
from controller.api.openapi import Param, documented
from controller.api.validation import parse_body
from controller.errors import ValidationFailed
from controller.models import HelpRequest as HelpRow
from controller.models import Node
from controller.runtime.app_state import app_state
from controller.stuck import store as stuck_store
from node_agent.protocol import AGENT_API, HELP_MESSAGE_MAX, HelpRaised, HelpRequest, encode

agent_bp = Blueprint("agent_help_api", __name__, url_prefix=AGENT_API)
bp = Blueprint("help_api", __name__, url_prefix="/api/v1")

MAX_LISTED = 1000


@dataclass
class ReplyBody:
    __pydantic_config__ = {"strict": True, "extra": "forbid"}

    text: str = field(metadata={"min_length": 1, "max_length": HELP_MESSAGE_MAX})


@agent_bp.post("/nodes/<node_id>/help")
@documented("Raise the node's hand (again: update its message)", request=HelpRequest,
            responses={201: HelpRaised, 200: HelpRaised}, security="node")
def raise_hand(node_id: str):
    identity = require_node(node_id)
    body = parse_body(HelpRequest)
    session = get_session()
    node = session.get(Node, identity.id)
    row, created = help_requests.raise_hand(session, node, lab=body.lab, step=body.step, reason=body.reason,
                                            message=body.message, actor=g.principal.actor)
    session.commit()
    return jsonify(encode(HelpRaised(id=row.id, state=row.state))), 201 if created else 200


@bp.before_request
def _authenticate():
    require_instructor()


@bp.get("/help")
@documented("The help queue and the stuck attendees", responses={200: r.HelpQueue},
            query=[Param("state", {"type": "string", "enum": ["up", "all", *help_requests.STATES]},
                         "up (default): open and claimed; or one state; or all")])
def list_help():
    """Raised hands (``?state=open|claimed|resolved|all``; default: the ones still up) and stuck nodes."""
    wanted = request.args.get("state", "up")
    choices = {"up": help_requests.UP, "all": help_requests.STATES, **{s: (s,) for s in help_requests.STATES}}
    if wanted not in choices:
        raise ValidationFailed(f"state: one of {', '.join(choices)}", field="state")
    session = get_session()
    rows = session.execute(help_requests.list_query(choices[wanted]).limit(MAX_LISTED)).all()
    return jsonify({"requests": [help_requests.to_dict(*row) for row in rows],
                    "stuck": stuck_store.listing(session)})


@bp.get("/stuck")
@documented("Attendees the stuck rules flag", responses={200: r.StuckList})
def list_stuck():
    return jsonify({"stuck": stuck_store.listing(get_session())})


@bp.post("/stuck/<node_ref>/raise")
@documented("Raise a hand for a stuck attendee", responses={201: r.HelpView}, errors=(409,))
def raise_for_stuck(node_ref: str):
    session = get_session()
    row = help_requests.raise_for_stuck(session, node_ref, actor=g.principal.actor)
    session.commit()
    return _one(row), 201


@bp.post("/help/<help_id>/claim")
@documented("Claim a raised hand: the attendee sees who is coming", responses={200: r.HelpView}, errors=(409,))
def claim(help_id: str):
    return _act(help_id, help_requests.claim)


@bp.post("/help/<help_id>/reply")
@documented("Reply: shown in the attendee's lab status and on their next prompt", request=ReplyBody,
            responses={200: r.HelpView}, errors=(409,))
def reply(help_id: str):
    body = parse_body(ReplyBody)
    return _act(help_id, lambda session, row, **who: help_requests.reply(session, row, body.text, **who))


@bp.post("/help/<help_id>/resolve")
@documented("Resolve a raised hand", responses={200: r.HelpView}, errors=(409,))
def resolve(help_id: str):
    return _act(help_id, help_requests.resolve)


def _act(help_id: str, action):
    session = get_session()
    row = help_requests.get_or_404(session, help_id)
    wake = action(session, row, actor=g.principal.actor, name=g.principal.name)
    session.commit()
    app_state().notifier.notify(node.id for node in wake)
    return _one(row)


def _one(row):
    session = get_session()
    found = session.execute(help_requests.list_query(help_requests.STATES).where(
        HelpRow.id == row.id)).one()
    return jsonify(help_requests.to_dict(*found))
