"""The instructor's provisioning page (docs/web.md): start a run from an uploaded inventory, follow each
host live, see the failing task and message of a failed host, retry the failed hosts, cancel, tear down;
import attendees, assign them, download the credentials sheet.

Every action goes through the same services as the JSON API (controller/api/provision.py and
controller/api/attendees.py), with the same request schemas and the same audit entries (actor
``instructor:<name>``): runs through ``api.provision.launch`` and ``runs.request_cancel``, attendees through
``controller.attendees``. The inventory is uploaded as the API takes it (its text and the key files it
names); the page never names a path on the controller. Host and attendee text is set with textContent only.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request
from flask_login import current_user, login_required
from sqlalchemy import select

from controller import attendees
from controller.api import attendees as attendees_api
from controller.api import responses as r
from controller.api.db_session import get_session
from controller.api.openapi import documented
from controller.api.provision import launch
from controller.api.validation import parse_body
from controller.credential_sheet import sheet_csv, sheet_html
from controller.errors import ValidationFailed
from controller.models import Attendee, Node, ProvisionRun
from controller.pages import answers
from controller.pages.room import GONE
from controller.provision import runs
from controller.provision.schemas import (
    AssignRequest,
    CredentialsRequest,
    ImportAttendeesRequest,
    StartRunRequest,
)
from controller.runtime.app_state import app_state

bp = Blueprint("provisioning", __name__)  # nested in the pages blueprint (views.py)

RECENT_RUNS = 10
SHEETS = {"html": ("text/html", "credentials.html"), "csv": ("text/csv", "credentials.csv")}


def _actor() -> str:
    return f"instructor:{current_user.name}"


def _run_view(session, run: ProvisionRun) -> dict[str, Any]:
    return runs.to_dict(run, runs.host_statuses(session, run.id))


def _attendee_rows(session) -> list[dict[str, Any]]:
    found = attendees.list_attendees(session)
    nodes = {n.id: n for n in session.scalars(select(Node).where(Node.id.in_({a.node_id for a in found if a.node_id})))}
    return [attendees.to_dict(a, nodes.get(a.node_id)) for a in found]


def _free_nodes(session) -> list[str]:
    taken = set(session.scalars(select(Attendee.node_id).where(Attendee.node_id.is_not(None))))
    return sorted(n.name for n in session.scalars(select(Node)) if n.state not in GONE and n.id not in taken)


def _state(session) -> dict[str, Any]:
    recent = session.scalars(select(ProvisionRun).order_by(ProvisionRun.created_at.desc(), ProvisionRun.id.desc())
                             .limit(RECENT_RUNS)).all()
    return {"latest": _run_view(session, recent[0]) if recent else None,
            "runs": [runs.to_dict(r) for r in recent],
            "attendees": _attendee_rows(session), "free_nodes": _free_nodes(session)}


@bp.get("/provisioning")
@login_required
def page():
    state = _state(get_session())
    return render_template("provisioning.html", state=state)


@bp.get("/provisioning/state")
@documented("The provisioning page's state", responses={200: answers.ProvisioningState}, security="instructor_session", common_errors=False)
@login_required
def state():
    """What the page polls: the latest run with its hosts, recent runs, attendees and free nodes."""
    response = jsonify(_state(get_session()))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/provisioning/runs/<run_id>")
@documented("One run with its hosts", responses={200: r.RunDetail}, security="instructor_session", common_errors=False, errors=(404,))
@login_required
def run(run_id: str):
    session = get_session()
    response = jsonify(_run_view(session, runs.get_or_404(session, run_id)))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/provisioning/runs")
@documented("Start a provisioning run", request=StartRunRequest, responses={201: r.RunDetail}, security="instructor_session", common_errors=False,
            errors=(400, 409, 413, 503))
@login_required
def start():
    """The body of ``POST /api/v1/provision-runs`` (StartRunRequest), checked by the same schema."""
    body = parse_body(StartRunRequest)
    session = get_session()
    started = launch(session, actor=_actor(), body=body)
    return jsonify(_run_view(session, started)), 201


@bp.post("/provisioning/runs/<run_id>/cancel")
@documented("Cancel a run", responses={200: r.RunDetail}, security="instructor_session", common_errors=False, errors=(404, 409))
@login_required
def cancel(run_id: str):
    session = get_session()
    cancelled = runs.request_cancel(session, run_id=run_id, actor=_actor(),
                                    stale_after=app_state().settings.provision_time_limit + runs.RUN_GRACE)
    session.commit()
    return jsonify(_run_view(session, cancelled))


@bp.post("/provisioning/attendees/import")
@documented("Import attendees from CSV", request=ImportAttendeesRequest, responses={201: r.ImportReport},
            security="instructor_session", common_errors=False, errors=(400, 409, 413))
@login_required
def import_attendees():
    body = parse_body(ImportAttendeesRequest)
    session = get_session()
    report = attendees.import_csv(session, text=body.csv, source=body.source, actor=_actor())
    session.commit()
    return jsonify(report.as_dict()), 201


@bp.post("/provisioning/attendees/assign")
@documented("Assign attendees to nodes", request=AssignRequest, responses={200: r.Assignments}, security="instructor_session", common_errors=False,
            errors=(400, 404, 409, 413))
@login_required
def assign():
    return attendees_api.assign_as(_actor())


@bp.post("/provisioning/credentials")
@login_required
def credentials():
    """The credentials sheet as a download (a form POST: it issues codes, so it is CSRF-checked and audited)."""
    fmt = request.form.get("format", "html")
    if fmt not in SHEETS:
        raise ValidationFailed("format: html or csv", field="format")
    reissue = request.form.get("reissue") in ("1", "on", "true")
    body = CredentialsRequest(reissue=reissue)
    session = get_session()
    rows = attendees.issue_credentials(session, actor=_actor(), reissue=body.reissue)
    session.commit()
    mimetype, filename = SHEETS[fmt]
    text = sheet_html(rows) if fmt == "html" else sheet_csv(rows)
    response = Response(text, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/provisioning/inventory/check")
@documented("The hosts an uploaded inventory names", request=StartRunRequest, responses={200: answers.InventoryHosts},
            security="instructor_session", common_errors=False, errors=(400, 413))
@login_required
def check_inventory():
    """The hosts an uploaded inventory names, read as a run would read it (same errors, nothing stored as a
    run): the page names how many hosts a teardown touches before asking to confirm it."""
    from controller.provision.inventory.base import InventoryError
    from controller.provision.inventory.request import InventorySettings, open_requested

    body = parse_body(StartRunRequest)
    try:
        hosts = open_requested(body.driver, body.inventory,
                               InventorySettings.from_settings(app_state().settings)).hosts()
    except InventoryError as exc:
        raise ValidationFailed(str(exc), field=exc.key or "inventory") from None
    return jsonify({"hosts": [h.name for h in hosts]})
