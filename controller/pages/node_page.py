"""The instructor's page for one node (docs/web.md): its live state, lab progress, command history with
outputs, provisioning log, and the actions the JSON API offers (check, solve, reset, collect, restart).

Actions go through ``controller.commands.issue`` as ``POST /api/v1/commands`` does: the same argument
validation, the same ``command.issue`` audit entry (actor ``instructor:<name>``), the same notifier wake-up.
Every text here may come from the node; the template and node.js never parse it as HTML.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, render_template, request
from flask_login import current_user, login_required
from sqlalchemy import select

from controller import commands, lab_progress
from controller.api.openapi import documented
from controller.errors import ValidationFailed
from controller.models import Attendee, Command, LabProgress, Node, ProvisionEvent
from controller.pages import answers
from controller.pages.room import GONE, ordered_catalog
from controller.runtime.app_state import app_state

bp = Blueprint("node", __name__)  # nested in the pages blueprint (views.py)

# What the page's buttons may ask for; the arguments are checked by commands.validate_kind.
ACTIONS = ("lab.check", "lab.solve", "lab.reset", "collect-state", "agent-restart", "inspect")
HISTORY = 30
PROVISION_LOG = 200


def _node(session, node_id: str) -> Node:
    node = session.get(Node, node_id)
    if node is None or node.state in GONE:
        abort(404)
    return node


def node_view(session, node: Node) -> dict[str, Any]:
    """Everything the node page shows, as JSON-able text (also what /nodes/<id>/live answers)."""
    snapshot = node.state_snapshot or {}
    labs = snapshot.get("labs") if isinstance(snapshot.get("labs"), dict) else {}
    catalog = ordered_catalog(snapshot)
    rows = session.execute(select(LabProgress.lab, LabProgress.step, LabProgress.status, LabProgress.evidence,
                                  LabProgress.updated_at).where(LabProgress.node_id == node.id)).all()
    done = {(lab, step): (status, str((evidence or {}).get("reason", "")), at.isoformat())
            for lab, step, status, evidence, at in rows}
    progress = [{"lab": lab, "steps": [
        {"step": step, "status": done.get((lab, step), ("not started", "", ""))[0],
         "reason": done.get((lab, step), ("", "", ""))[1], "at": done.get((lab, step), ("", "", ""))[2]}
        for step in steps]} for lab, steps in catalog.items()]
    history = session.scalars(select(Command).where(Command.node_id == node.id)
                              .order_by(Command.issued_at.desc()).limit(HISTORY)).all()
    attendee = session.scalar(select(Attendee.name).where(Attendee.node_id == node.id).limit(1))
    return {
        "id": node.id, "name": node.name, "hostname": node.hostname, "address": node.address,
        "state": node.state, "attendee": attendee or "", "agent_version": node.agent_version,
        "last_seen_at": node.last_seen_at.isoformat() if node.last_seen_at else "",
        "beats_every": node.beats_every, "heartbeat_interval": node.heartbeat_interval,
        "kernel": str(snapshot.get("kernel_release", "")),
        "seccomp": snapshot.get("seccomp") if isinstance(snapshot.get("seccomp"), dict) else {},
        "processes": labs.get("processes") if isinstance(labs.get("processes"), list) else [],
        "cgroups": labs.get("cgroups") if isinstance(labs.get("cgroups"), list) else [],
        "labs_error": str(labs.get("error", "")),
        "activity": labs.get("activity") if isinstance(labs.get("activity"), dict) else {},
        "progress": progress,
        "commands": [_command(c) for c in history],
    }


def _command(command: Command) -> dict[str, Any]:
    result = command.result
    return {"id": command.id, "kind": command.kind, "args": command.args, "state": command.state,
            "issued_by": command.issued_by, "issued_at": command.issued_at.isoformat(),
            "ok": result.ok if result else None, "error": (result.error or "") if result else "",
            "output": result.output if result else None}


def provision_log(session, node: Node) -> list[dict[str, Any]]:
    if not node.provision_host:
        return []
    events = session.scalars(select(ProvisionEvent).where(ProvisionEvent.host == node.provision_host)
                             .order_by(ProvisionEvent.at.desc(), ProvisionEvent.seq.desc())
                             .limit(PROVISION_LOG)).all()
    return [{"at": e.at.isoformat(), "task": e.task, "status": e.status, "message": e.message}
            for e in reversed(events)]


@bp.get("/nodes/<node_id>")
@login_required
def page(node_id: str):
    with app_state().db.session() as session:
        found = _node(session, node_id)
        view = node_view(session, found)
        log = provision_log(session, found)
    return render_template("node.html", node=view, provision_log=log, actions=ACTIONS)


@bp.get("/nodes/<node_id>/live")
@documented("The node page's live view: state, inspect view, progress, newest commands",
            responses={200: answers.NodeLive}, security="instructor_session", common_errors=False, errors=(404,))
@login_required
def live(node_id: str):
    with app_state().db.session() as session:
        view = node_view(session, _node(session, node_id))
    response = jsonify(view)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/nodes/<node_id>/actions")
@documented("One action on the node from its page (audited as command.issue)", request=answers.NodeActionRequest,
            responses={201: answers.NodeActionIssued}, security="instructor_session", common_errors=False,
            errors=(400, 404, 413))
@login_required
def act(node_id: str):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationFailed("expected a JSON object", field="body")
    kind = body.get("kind")
    if kind not in ACTIONS:
        raise ValidationFailed(f"kind: one of {', '.join(ACTIONS)}", field="kind")
    args = body.get("args") or {}
    if not isinstance(args, dict):
        raise ValidationFailed("args: expected an object", field="args")
    settings = app_state().settings
    with app_state().db.session() as session:
        target = _node(session, node_id)
        if kind.startswith("lab.") and args.get("lab") not in lab_progress.node_catalog(session, target.id):
            raise ValidationFailed(f"args.lab: not a lab node {target.name} has", field="args.lab")
        issued = commands.issue(session, actor=f"instructor:{current_user.name}", kind=kind, args=args,
                                nodes=[target], timeout=settings.command_timeout,
                                deadline_in=settings.command_deadline)
    app_state().notifier.notify([node_id])
    return jsonify({"command_id": issued.command_ids[0], "batch_id": issued.batch_id}), 201
