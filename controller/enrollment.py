"""Enrollment: a one-time token turns a new machine into a node with its own token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from controller import audit, states
from controller.errors import Conflict, NotFound, Unauthenticated
from controller.models import EnrollmentToken, Event, Node, utcnow
from controller.tokens import ENROLLMENT_TOKEN_PREFIX, NODE_TOKEN_PREFIX, hash_token, new_token, same_hash
from node_agent.protocol import EnrollRequest


def create_token(
    session: Session, *, event: Event, created_by: str, ttl: float, label: str = "", uses: int = 1
) -> tuple[EnrollmentToken, str]:
    """A new enrollment token; the clear value is returned once and never stored."""
    token = new_token(ENROLLMENT_TOKEN_PREFIX)
    row = EnrollmentToken(
        event_id=event.id, token_hash=hash_token(token), prefix=token[:10], label=label, uses_left=uses,
        created_by=created_by, expires_at=utcnow() + timedelta(seconds=ttl),
    )
    session.add(row)
    session.flush()
    audit.record(session, actor=created_by, action="enroll_token.create", target=row.id,
                 label=label, uses=uses, expires_at=row.expires_at.isoformat())
    return row, token


def list_query() -> Select:
    return select(EnrollmentToken)


def prefix_is_live(session: Session, prefix: str) -> bool:
    """Whether an enrollment token that can still be used starts with ``prefix`` (the limiter lets it through)."""
    now = utcnow()
    return session.scalar(
        select(EnrollmentToken.id).where(EnrollmentToken.prefix == prefix, EnrollmentToken.uses_left > 0,
                                         EnrollmentToken.revoked_at.is_(None), EnrollmentToken.expires_at > now)
        .limit(1)) is not None


def revoke_token(session: Session, *, token_id: str, actor: str) -> EnrollmentToken:
    row = session.get(EnrollmentToken, token_id)
    if row is None:
        raise NotFound(f"no enrollment token {token_id!r}", field="token_id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(session, actor=actor, action="enroll_token.revoke", target=row.id)
    return row


def token_status(row: EnrollmentToken) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.uses_left <= 0:
        return "consumed"
    if row.expires_at <= utcnow():
        return "expired"
    return "active"


def token_to_dict(row: EnrollmentToken) -> dict[str, Any]:
    return {"id": row.id, "prefix": row.prefix, "label": row.label, "status": token_status(row),
            "uses_left": row.uses_left, "created_by": row.created_by,
            "created_at": row.created_at.isoformat(), "expires_at": row.expires_at.isoformat()}


def enroll(session: Session, request: EnrollRequest, *, address: str, heartbeat_interval: float) -> tuple[Node, str]:
    """Consume one use of the enrollment token and return the node with a fresh node token.

    The same (machine_id, machine_secret) keeps its node; a machine_id presented
    with another secret is refused, so nobody takes over another VM's identity.
    """
    token_row = _consume(session, request.enrollment_token)
    node = session.scalar(
        select(Node).where(Node.event_id == token_row.event_id, Node.machine_id == request.machine_id)
    )
    node_token = new_token(NODE_TOKEN_PREFIX)
    if node is None:
        node = Node(
            event_id=token_row.event_id, machine_id=request.machine_id,
            machine_secret_hash=hash_token(request.machine_secret),
            name=_free_name(session, token_row.event_id, request.name), heartbeat_interval=heartbeat_interval,
        )
        session.add(node)
        action = "node.enroll"
    elif not same_hash(request.machine_secret, node.machine_secret_hash):
        raise Conflict("this machine id is enrolled already, with another machine secret", field="machine_id")
    else:
        if node.state != states.NODE_ONLINE:
            states.check_node_move(node.state, states.NODE_ONLINE)
        action = "node.re_enroll"
    node.token_hash = hash_token(node_token)
    node.state = states.NODE_ONLINE
    node.hostname = request.hostname
    node.agent_version = request.agent_version
    node.address = address
    node.last_seen_at = utcnow()
    node.heartbeat_interval = heartbeat_interval
    session.flush()
    audit.record(session, actor=f"node:{node.name}", action=action, target=node.id,
                 enrollment_token=token_row.id, address=address, hostname=request.hostname)
    return node, node_token


def _consume(session: Session, token: str) -> EnrollmentToken:
    # One atomic UPDATE, so two machines racing for a one-time token cannot both win.
    now = utcnow()
    token_hash = hash_token(token)
    result = session.execute(
        update(EnrollmentToken)
        .where(EnrollmentToken.token_hash == token_hash, EnrollmentToken.uses_left > 0,
               EnrollmentToken.revoked_at.is_(None), EnrollmentToken.expires_at > now)
        .values(uses_left=EnrollmentToken.uses_left - 1)
    )
    if result.rowcount != 1:
        raise Unauthenticated("enrollment token is unknown, revoked, expired or already used")
    return session.scalar(select(EnrollmentToken).where(EnrollmentToken.token_hash == token_hash))


def _free_name(session: Session, event_id: str, wanted: str) -> str:
    taken = set(session.scalars(select(Node.name).where(Node.event_id == event_id, Node.name.like(f"{wanted}%"))))
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"
