"""SSH rescue and diagnostics bundles (instructors only; every action audited).

``POST /api/v1/rescue`` queues a rescue of named nodes or of every silent one
(the Celery task ``labfleet.rescue`` runs it); ``GET /api/v1/rescue/<id>`` is
its live progress and result; ``GET /api/v1/rescue/<id>/hosts/<node>`` one
host's steps, diagnostics and transcript. ``GET /api/v1/nodes/<node>/diagnostics``
answers a node's diagnostics bundle (tar.gz).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import Blueprint, Response, g, jsonify
from sqlalchemy import select

from controller import audit, commands, nodes, states
from controller.api import responses as r
from controller.api.auth import require_instructor
from controller.api.db_session import get_session
from controller.api.openapi import GZIP, documented
from controller.api.validation import parse_body
from controller.errors import NotFound, ValidationFailed
from controller.models import CommandResult, Node, RescueHost
from controller.rescue import bundle, service
from controller.runtime.app_state import app_state

bp = Blueprint("rescue_api", __name__, url_prefix="/api/v1")
ASK_AGENT_WAIT = 10.0  # seconds the bundle waits for an online agent's collect-state


@dataclass
class RescueBody:
    __pydantic_config__ = {"strict": True, "extra": "forbid"}

    nodes: list[str] = field(default_factory=list, metadata={"max_length": service.MAX_NODES})
    silent: bool = False


@bp.before_request
def _authenticate():
    require_instructor()


@bp.post("/rescue")
@documented("Rescue nodes over SSH: named ones, or every silent one", request=RescueBody,
            responses={202: r.RescueRunView})
def start_rescue():
    """Queues the rescue and answers at once; follow it with GET /api/v1/rescue/{rescue_id}."""
    body = parse_body(RescueBody)
    if bool(body.nodes) == body.silent:
        raise ValidationFailed("give nodes, or silent: true (not both)", field="nodes")
    session = get_session()
    found = service.silent_nodes(session) if body.silent else nodes.resolve(session, names=body.nodes,
                                                                              all_nodes=False)
    if body.silent and not found:
        raise ValidationFailed("no silent node to rescue", field="silent")
    run = service.create(session, found, actor=g.principal.actor, trigger="instructor")
    session.commit()
    from controller.tasks.rescue import enqueue

    enqueue(run.id, host_count=len(found))
    return jsonify(service.run_view(session, run)), 202


@bp.get("/rescue")
@documented("Recent rescues", responses={200: r.RescueRunList})
def list_rescues():
    from controller.models import RescueRun

    session = get_session()
    runs = session.scalars(select(RescueRun).order_by(RescueRun.created_at.desc()).limit(50))
    return jsonify({"rescues": [service.run_view(session, run) for run in runs]})


@bp.get("/rescue/<rescue_id>")
@documented("A rescue's per-host progress and result", responses={200: r.RescueRunView})
def get_rescue(rescue_id: str):
    session = get_session()
    return jsonify(service.run_view(session, service.get_or_404(session, rescue_id)))


@bp.get("/rescue/<rescue_id>/hosts/<node_ref>")
@documented("One host of a rescue: its steps, diagnostics and redacted transcript",
            responses={200: r.RescueHostDetail})
def get_rescue_host(rescue_id: str, node_ref: str):
    session = get_session()
    service.get_or_404(session, rescue_id)
    row = session.scalar(select(RescueHost).where(RescueHost.run_id == rescue_id,
                                                  (RescueHost.node_name == node_ref) | (RescueHost.node_id == node_ref)))
    if row is None:
        raise NotFound(f"no node {node_ref!r} in this rescue", field="node")
    return jsonify(service.host_view(row, transcript=True))


@bp.get("/nodes/<node_ref>/diagnostics")
@documented("A node's diagnostics bundle (tar.gz): state, agent log, lab progress, commands, readiness, facts",
            responses={200: GZIP})
def diagnostics(node_ref: str):
    session = get_session()
    node = session.scalar(select(Node).where((Node.name == node_ref) | (Node.id == node_ref)))
    if node is None:
        raise NotFound(f"no node {node_ref!r}", field="node")
    state = app_state()
    data, manifest = bundle.collect(session, node, data_dir=state.settings.data_dir, actor=g.principal.actor,
                                    ask_agent=_ask_agent)
    audit.record(session, actor=g.principal.actor, action="node.diagnostics", target=node.id, node=node.name,
                 parts=sorted(manifest["parts"]), ssh=manifest.get("ssh", ""))
    session.commit()
    name = f"{node.name}-diagnostics.tar.gz"
    return Response(data, mimetype=GZIP, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _ask_agent(node: Node) -> dict | None:
    """collect-state through the agent's own channel; None when it does not answer within ASK_AGENT_WAIT."""
    session = get_session()
    issued = commands.issue(session, actor=g.principal.actor, kind="collect-state", args={}, nodes=[node],
                            timeout=ASK_AGENT_WAIT, deadline_in=ASK_AGENT_WAIT + 5)
    session.commit()
    app_state().notifier.notify([node.id])
    deadline = time.monotonic() + ASK_AGENT_WAIT
    while time.monotonic() < deadline and node.state == states.NODE_ONLINE:
        result = session.scalar(select(CommandResult).where(CommandResult.command_id == issued.command_ids[0]))
        if result is not None:
            return result.output if result.ok else None
        session.rollback()  # a fresh snapshot on the next look
        time.sleep(0.2)
    return None
