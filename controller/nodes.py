"""Nodes: listing, lookup by name, revocation, and their public view."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from controller import audit, lab_progress, states
from controller.errors import NotFound, ValidationFailed
from controller.models import Node


def list_query() -> Select:
    return select(Node)


def get_or_404(session: Session, node_id: str) -> Node:
    node = session.get(Node, node_id)
    if node is None:
        raise NotFound(f"no node {node_id!r}", field="node_id")
    return node


def resolve(session: Session, *, names: list[str], all_nodes: bool) -> list[Node]:
    """The nodes a request targets: named ones (each must exist) or every reachable one."""
    if all_nodes:
        return list(session.scalars(
            select(Node).where(Node.state.in_((states.NODE_ONLINE, states.NODE_OFFLINE))).order_by(Node.name)
        ))
    if not names:
        raise ValidationFailed("name at least one node, or ask for all", field="nodes")
    found = {n.name: n for n in session.scalars(select(Node).where(Node.name.in_(names)))}
    found.update({n.id: n for n in session.scalars(select(Node).where(Node.id.in_(names)))})
    missing = [name for name in names if name not in found]
    if missing:
        raise NotFound(f"no node named {', '.join(missing)}", field="nodes")
    unique = {found[name].id: found[name] for name in names}
    return list(unique.values())


def store_state(session: Session, node_id: str, *, digest: str, snapshot: dict[str, Any],
                max_progress_rows: int) -> None:
    session.execute(update(Node).where(Node.id == node_id).values(state_digest=digest, state_snapshot=snapshot))
    lab_progress.from_snapshot(session, node_id, snapshot, max_rows=max_progress_rows)


def revoke(session: Session, node: Node, *, actor: str) -> Node:
    states.check_node_move(node.state, states.NODE_REVOKED)
    node.state = states.NODE_REVOKED
    node.token_hash = None
    audit.record(session, actor=actor, action="node.revoke", target=node.id, node=node.name)
    return node


def count_by_state(session: Session) -> dict[str, int]:
    counts = dict.fromkeys(states.NODE_STATES, 0)
    for state, n in session.execute(select(Node.state, func.count()).group_by(Node.state)):
        counts[state] = n
    return counts


def to_dict(node: Node, *, with_state: bool = False) -> dict[str, Any]:
    view = {
        "id": node.id, "name": node.name, "state": node.state, "address": node.address,
        "hostname": node.hostname, "agent_version": node.agent_version, "provision_host": node.provision_host,
        "last_seen_at": node.last_seen_at.isoformat() if node.last_seen_at else None,
        "enrolled_at": node.enrolled_at.isoformat(), "heartbeat_interval": node.heartbeat_interval,
        "beats_every": node.beats_every,
    }
    if with_state:
        view["state_snapshot"] = node.state_snapshot
        view["state_digest"] = node.state_digest
    return view
