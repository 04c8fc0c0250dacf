"""The instructor's REST API (used by the CLI and, later, the dashboard)."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from controller import audit, commands, enrollment, events, nodes, states
from controller import lab_progress as lab_progress_module
from controller.api import responses as r
from controller.api.auth import node_changed, require_instructor
from controller.api.db_session import get_session
from controller.api.openapi import TEXT64, Param, documented
from controller.api.pagination import Key, page
from controller.api.schemas import CreateEnrollmentTokenRequest, IssueCommandRequest
from controller.api.validation import parse_body
from controller.errors import ValidationFailed
from controller.models import AuditEntry, Command, EnrollmentToken, LabProgress, Node
from controller.runtime.app_state import app_state

bp = Blueprint("instructor_api", __name__, url_prefix="/api/v1")


@bp.before_request
def _authenticate():
    require_instructor()


@bp.get("/whoami")
@documented("The caller's instructor name", responses={200: r.WhoAmI})
def whoami():
    return jsonify({"kind": g.principal.kind, "name": g.principal.name})


@bp.get("/nodes")
@documented("List nodes, by name", responses={200: r.NodePage}, paged=True)
def list_nodes():
    found = page(get_session(), nodes.list_query(), [Key(Node.name), Key(Node.id)])
    return jsonify({"nodes": [nodes.to_dict(n) for n in found.items], "next": found.next})


@bp.get("/nodes/<node_ref>")
@documented("One node (by name or id) with its state snapshot", responses={200: r.NodeDetail})
def get_node(node_ref: str):
    (node,) = nodes.resolve(get_session(), names=[node_ref], all_nodes=False)
    return jsonify(nodes.to_dict(node, with_state=True))


@bp.post("/nodes/<node_ref>/revoke")
@documented("Revoke a node's token", responses={200: r.NodeView}, errors=(409,))
def revoke_node(node_ref: str):
    session = get_session()
    (node,) = nodes.resolve(session, names=[node_ref], all_nodes=False)
    nodes.revoke(session, node, actor=g.principal.actor)
    session.commit()
    node_changed(node.id)
    return jsonify(nodes.to_dict(node))


@bp.post("/commands")
@documented("Issue a command to nodes", request=IssueCommandRequest, responses={201: r.IssuedBatch})
def issue_command():
    body = parse_body(IssueCommandRequest)
    settings = app_state().settings
    session = get_session()
    targets = nodes.resolve(session, names=body.nodes, all_nodes=body.all)
    if not targets:
        raise ValidationFailed("no enrolled node to run this on", field="nodes")
    issued = commands.issue(
        session, actor=g.principal.actor, kind=body.kind, args=body.args, nodes=targets,
        timeout=body.timeout or settings.command_timeout, deadline_in=body.deadline or settings.command_deadline,
    )
    session.commit()
    app_state().notifier.notify(node.id for node in targets)
    return jsonify({
        "batch_id": issued.batch_id,
        "commands": [{"id": command_id, "node": node.name, "node_id": node.id}
                     for command_id, node in zip(issued.command_ids, targets, strict=True)],
    }), 201


@bp.get("/batches/<batch_id>")
@documented("A command batch's counts and a page of its commands", responses={200: r.Batch}, paged=True,
            query=[Param("summary", {"type": "integer", "enum": [0, 1]}, "1: only the counts")])
def get_batch(batch_id: str):
    """A batch's counts and a page of its commands with their results; ``?summary=1`` gives only the counts."""
    counts = commands.batch_progress(get_session(), batch_id)
    done = sum(n for state, n in counts.items() if state in states.COMMAND_DONE_STATES)
    summary = {"batch_id": batch_id, "total": sum(counts.values()), "done": done, "states": counts}
    if request.args.get("summary") in ("1", "true"):
        return jsonify(summary)
    found = page(get_session(), commands.batch_query(batch_id), [Key(Node.name), Key(Command.id)])
    return jsonify({**summary, "commands": [commands.to_dict(c) for c in found.items], "next": found.next})


@bp.get("/commands/<command_id>")
@documented("One command and its result", responses={200: r.CommandView})
def get_command(command_id: str):
    return jsonify(commands.to_dict(commands.get_or_404(get_session(), command_id)))


@bp.get("/enroll-tokens")
@documented("List enrollment tokens, newest first", responses={200: r.EnrollTokenPage}, paged=True)
def list_enroll_tokens():
    found = page(get_session(), enrollment.list_query(),
                 [Key(EnrollmentToken.created_at, descending=True), Key(EnrollmentToken.id, descending=True)])
    return jsonify({"tokens": [enrollment.token_to_dict(t) for t in found.items], "next": found.next})


@bp.post("/enroll-tokens")
@documented("Create an enrollment token", request=CreateEnrollmentTokenRequest,
            responses={201: r.CreatedEnrollToken})
def create_enroll_token():
    body = parse_body(CreateEnrollmentTokenRequest)
    session = get_session()
    row, token = enrollment.create_token(
        session, event=events.get_or_create(session), created_by=g.principal.actor,
        ttl=body.ttl or app_state().settings.enrollment_token_ttl, label=body.label, uses=body.uses,
    )
    session.commit()
    return jsonify({**enrollment.token_to_dict(row), "token": token}), 201


@bp.post("/enroll-tokens/<token_id>/revoke")
@documented("Revoke an enrollment token", responses={200: r.EnrollTokenView})
def revoke_enroll_token(token_id: str):
    session = get_session()
    row = enrollment.revoke_token(session, token_id=token_id, actor=g.principal.actor)
    session.commit()
    return jsonify(enrollment.token_to_dict(row))


AUDIT_FILTERS = [
    Param("action", {"type": "string", "minLength": 1, "maxLength": 64}, "only this action, e.g. command.issue"),
    Param("actor", {"type": "string", "minLength": 1, "maxLength": 160},
          "who: instructor:ada, node:lab-01, or a bare name (any kind)"),
    Param("node", {"type": "string", "minLength": 1, "maxLength": 160},
          "entries about this node (name or id): its posts, actions on it, batches naming it"),
    Param("since", {"type": "string", "format": "date-time"}, "at or after this time (ISO 8601, UTC by default)"),
    Param("until", {"type": "string", "format": "date-time"}, "before this time (ISO 8601, UTC by default)"),
]


def audit_filters(args, session) -> dict:
    """The audit log's filters from query arguments (the API and the /audit page use the same)."""
    for name, limit in (("action", 64), ("actor", 160), ("node", 160)):
        value = args.get(name)
        if value is not None and len(value) > limit:
            raise ValidationFailed(f"{name}: at most {limit} characters", field=name)
    since, until = audit.parse_time(args.get("since"), "since"), audit.parse_time(args.get("until"), "until")
    if since and until and since >= until:
        raise ValidationFailed("until: must be after since", field="until")
    return {"action": args.get("action") or None, "actor": (args.get("actor") or "").strip() or None,
            "node": audit.node_refs(session, (args.get("node") or "").strip()), "since": since, "until": until}


@bp.get("/audit")
@documented("Audit entries, newest first; filter by who, action, node and time", responses={200: r.AuditPage},
            paged=True, query=AUDIT_FILTERS)
def list_audit():
    """Audit entries, newest first."""
    session = get_session()
    found = page(session, audit.list_query(**audit_filters(request.args, session)),
                 [Key(AuditEntry.id, descending=True)], default_limit=50)
    return jsonify({"entries": [audit.to_dict(e) for e in found.items], "next": found.next})


@bp.get("/progress")
@documented("Lab progress per node and step", responses={200: r.ProgressPage}, paged=True,
            query=[Param("lab", TEXT64, "only this lab"), Param("node", TEXT64, "only this node (name or id)")])
def lab_progress_table():
    """Lab progress per node and step; ``?lab=`` and ``?node=`` narrow it."""
    lab, node = request.args.get("lab"), request.args.get("node")
    for field, value in (("lab", lab), ("node", node)):
        if value is not None and not 0 < len(value) <= 64:
            raise ValidationFailed(f"{field}: expected 1 to 64 characters", field=field)
    found = page(get_session(), lab_progress_module.table_query(lab=lab, node=node),
                 [Key(Node.name), Key(LabProgress.node_id), Key(LabProgress.lab), Key(LabProgress.step)])
    return jsonify({"progress": [lab_progress_module.table_row(r) for r in found.items], "next": found.next})
