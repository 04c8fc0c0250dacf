"""The progress matrix (attendees × lab steps) and the bulk actions of the matrix and the room.

The matrix is read from the same rows as ``GET /api/v1/progress`` (lab
progress per node and step) and the nodes' reported lab catalogs (the
columns, in the catalog's order). Each cell is passed, failing or not started,
with the check's reason; each column counts who fails there and groups the
most common reasons. ``/matrix/data`` is the same as JSON: the page re-reads
it when the room's live stream (``/room/stream``) says something changed.

Bulk actions issue ``lab.check`` / ``lab.solve`` / ``lab.reset`` through
``commands.issue`` — the service ``POST /api/v1/commands`` uses, which audits
the batch (``command.issue``, actor ``instructor:NAME``) — and the page
follows the batch's per-node results at ``/bulk/<batch_id>``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from flask import jsonify, render_template, request
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller import commands, states
from controller.api.openapi import documented
from controller.errors import ValidationFailed
from controller.models import Attendee, Command, LabProgress, Node
from controller.pages import answers
from controller.pages.room import GONE, ordered_catalog
from controller.pages.views import bp
from controller.runtime.app_state import app_state

# A cell's class: what the page shows (a word, a glyph and a colour; never colour alone).
CELL_CLASS = {"passed": "passed", "skipped": "passed", "failed": "failing", "forged": "failing",
              "unavailable": "failing"}
CELL_GLYPH = {"passed": "✓", "failing": "✗", "none": "·"}
TOP_REASONS = 3
BULK_KINDS = {"lab.check": "check", "lab.solve": "solve", "lab.reset": "reset"}
MAX_BULK_NODES = 2000


@dataclass
class Column:
    lab: str
    step: str
    failing: int = 0
    passed: int = 0
    reasons: list[tuple[int, str]] = field(default_factory=list)  # (attendees, reason), most common first

    @property
    def key(self) -> str:
        return f"{self.lab}/{self.step}"


@dataclass
class Matrix:
    columns: list[Column]
    rows: list[dict[str, Any]]  # id, attendee, name, state, cells: [(class, status, reason)] per column
    catalog: dict[str, list[str]]  # lab -> steps, for the bulk action's selects

    def as_json(self) -> dict[str, Any]:
        return {
            "columns": [{"lab": c.lab, "step": c.step, "failing": c.failing, "passed": c.passed,
                         "reasons": [[n, reason] for n, reason in c.reasons]} for c in self.columns],
            "rows": [{**row, "cells": [list(cell) for cell in row["cells"]]} for row in self.rows],
            # Pairs, not an object: JSON objects lose their order (and Flask sorts their keys).
            "catalog": catalog_pairs(self.catalog),
        }


def read_matrix(session: Session) -> Matrix:
    nodes = session.execute(
        select(Node.id, Node.name, Node.state, Node.state_snapshot, Attendee.name)
        .outerjoin(Attendee, Attendee.node_id == Node.id)
        .where(Node.state.not_in(GONE))
    ).all()
    order: dict[str, dict[str, None]] = {}  # lab -> steps, first seen first (dicts keep order)
    rows: dict[str, dict[str, Any]] = {}
    for node_id, name, state, snapshot, attendee in nodes:
        if node_id in rows:
            continue
        rows[node_id] = {"id": node_id, "attendee": attendee or "", "name": name,
                         "state": "offline" if state == states.NODE_OFFLINE else "online"}
        for lab, steps in ordered_catalog(snapshot).items():
            known = order.setdefault(lab, {})
            for step in steps:
                known.setdefault(step, None)
    found: dict[tuple[str, str, str], tuple[str, str]] = {}
    for node_id, lab, step, status, evidence in session.execute(
            select(LabProgress.node_id, LabProgress.lab, LabProgress.step, LabProgress.status,
                   LabProgress.evidence)):
        if node_id in rows:
            order.setdefault(lab, {}).setdefault(step, None)
            found[(node_id, lab, step)] = (status, str((evidence or {}).get("reason", "") or ""))
    columns = [Column(lab, step) for lab, steps in order.items() for step in steps]
    reasons: list[Counter[str]] = [Counter() for _ in columns]
    ordered_rows = sorted(rows.values(), key=lambda r: ((r["attendee"] or "\uffff").lower(), r["name"].lower()))
    for row in ordered_rows:
        cells = []
        for i, column in enumerate(columns):
            status, reason = found.get((row["id"], column.lab, column.step), ("", ""))
            kind = CELL_CLASS.get(status, "none")
            if kind == "failing":
                column.failing += 1
                reasons[i][reason or "(no reason given)"] += 1
            elif kind == "passed":
                column.passed += 1
            cells.append((kind, status, reason))
        row["cells"] = cells
    for column, counted in zip(columns, reasons, strict=True):
        column.reasons = [(n, reason) for reason, n in counted.most_common(TOP_REASONS)]
    return Matrix(columns, ordered_rows, {lab: list(steps) for lab, steps in order.items()})


def catalog_pairs(catalog: dict[str, list[str]]) -> list[list[Any]]:
    return [[lab, steps] for lab, steps in catalog.items()]


@bp.app_template_filter("cell_text")
def cell_text(cell: tuple[str, str, str]) -> str:
    """What a cell says to a screen reader and on hover: its status and the check's reason."""
    kind, status, reason = cell
    if kind == "none":
        return "not started"
    return f"{status}: {reason}" if reason else status


@bp.get("/matrix")
@login_required
def matrix():
    with app_state().db.session() as session:
        found = read_matrix(session)
    return render_template("matrix.html", matrix=found, glyphs=CELL_GLYPH, bulk_catalog=catalog_pairs(found.catalog),
                           kinds=BULK_KINDS)


@bp.get("/matrix/data")
@documented("The progress matrix as JSON (the page re-reads it on a live change)", responses={200: answers.MatrixData},
            security="instructor_session", common_errors=False)
@login_required
def matrix_data():
    with app_state().db.session() as session:
        return jsonify(read_matrix(session).as_json())


@bp.get("/bulk/labs")
@documented("The labs and steps the bulk action offers", responses={200: answers.BulkLabs},
            security="instructor_session", common_errors=False)
@login_required
def bulk_labs():
    """The labs and steps the room's bulk action offers (the matrix page has them in its markup)."""
    with app_state().db.session() as session:
        catalog: dict[str, dict[str, None]] = {}
        for (snapshot,) in session.execute(select(Node.state_snapshot).where(Node.state.not_in(GONE))):
            for lab, steps in ordered_catalog(snapshot).items():
                known = catalog.setdefault(lab, {})
                for step in steps:
                    known.setdefault(step, None)
    return jsonify({"catalog": [[lab, list(steps)] for lab, steps in catalog.items()]})


def _bulk_request(body: Any) -> tuple[str, dict[str, Any], list[str]]:
    if not isinstance(body, dict):
        raise ValidationFailed("expected a JSON object", field=None)
    kind = body.get("kind")
    if kind not in BULK_KINDS:
        raise ValidationFailed(f"kind: one of {', '.join(BULK_KINDS)}", field="kind")
    lab, step = body.get("lab"), body.get("step") or None
    if not isinstance(lab, str) or not lab:
        raise ValidationFailed("lab: name the lab", field="lab")
    if step is not None and not isinstance(step, str):
        raise ValidationFailed("step: a step id or empty", field="step")
    ids = body.get("nodes")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
        raise ValidationFailed("nodes: select at least one machine", field="nodes")
    if len(ids) > MAX_BULK_NODES:
        raise ValidationFailed(f"nodes: at most {MAX_BULK_NODES} at once", field="nodes")
    args: dict[str, Any] = {"lab": lab}
    if step:
        args["to_step" if kind == "lab.reset" else "step"] = step
    return kind, args, list(dict.fromkeys(ids))


@bp.post("/bulk")
@documented("Issue a bulk check, solve or reset to the selected nodes", request=answers.BulkRequest,
            responses={201: answers.BulkIssued}, security="instructor_session", common_errors=False,
            errors=(400, 413))
@login_required
def bulk_issue():
    """Issue one command to the selected nodes: ``{kind, lab, step, nodes: [node id, ...]}`` (CSRF header)."""
    kind, args, ids = _bulk_request(request.get_json(silent=True))
    settings = app_state().settings
    with app_state().db.session() as session:
        targets = list(session.scalars(
            select(Node).where(Node.id.in_(ids), Node.state.in_((states.NODE_ONLINE, states.NODE_OFFLINE)))
            .order_by(Node.name)))
        missing = len(ids) - len(targets)
        if missing:
            raise ValidationFailed(f"nodes: {missing} of the selected machines are not enrolled nodes "
                                   "(provisioning, revoked or gone)", field="nodes")
        issued = commands.issue(session, actor=f"instructor:{current_user.name}", kind=kind, args=args,
                                nodes=targets, timeout=settings.command_timeout,
                                deadline_in=settings.command_deadline)
        answer = {"batch_id": issued.batch_id, "kind": kind, "args": args,
                  "commands": [{"id": command_id, "node": node.name, "node_id": node.id}
                               for command_id, node in zip(issued.command_ids, targets, strict=True)]}
    app_state().notifier.notify(node_id for node_id in (c["node_id"] for c in answer["commands"]))
    return jsonify(answer), 201


@bp.get("/bulk/<batch_id>")
@documented("A bulk action's per-node results", responses={200: answers.BulkResults},
            security="instructor_session", common_errors=False)
@login_required
def bulk_results(batch_id: str):
    """A batch's per-node results, as ``GET /api/v1/batches/<id>`` gives them, with each node's attendee."""
    with app_state().db.session() as session:
        counts = commands.batch_progress(session, batch_id)
        found = session.scalars(commands.batch_query(batch_id).order_by(Node.name, Command.id)
                                .limit(MAX_BULK_NODES)).all()
        attendees = dict(session.execute(select(Attendee.node_id, Attendee.name)
                                          .where(Attendee.node_id.in_([c.node_id for c in found]))).all())
        results = [{**commands.to_dict(c), "attendee": attendees.get(c.node_id, ""),
                    "summary": _summary(commands.to_dict(c))} for c in found]
    done = sum(n for state, n in counts.items() if state in states.COMMAND_DONE_STATES)
    return jsonify({"batch_id": batch_id, "total": sum(counts.values()), "done": done, "states": counts,
                    "commands": results})


def _summary(command: dict[str, Any]) -> str:
    """One line per node for the result list: the error, or each step's status."""
    result = command["result"]
    if result is None:
        return {"pending": "waiting for the node", "delivered": "running on the node"}.get(
            command["state"], command["state"])
    if not result["ok"]:
        return str(result["error"] or "failed")
    steps = (result["output"] or {}).get("steps") if isinstance(result["output"], dict) else None
    if isinstance(steps, list) and steps:
        return ", ".join(f"{s.get('step')}: {s.get('status')}" for s in steps[:30] if isinstance(s, dict))
    return "done"
