"""The instructor's provisioning API (used by ``labfleet provision``); attendee routes: controller/api/attendees.py.

Every action is audited by the service it calls; every bad request is a 4xx
naming the field.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from controller.api import responses as r
from controller.api.auth import require_instructor
from controller.api.db_session import get_session
from controller.api.openapi import TEXT64, Param, documented
from controller.api.pagination import Key, page
from controller.api.query_args import int_arg
from controller.api.validation import parse_body
from controller.errors import ApiError
from controller.models import ProvisionEvent, ProvisionRun
from controller.provision import runs
from controller.provision.inventory.request import InventorySettings
from controller.provision.runner import Tuning
from controller.provision.schemas import (
    StartRunRequest,
)
from controller.runtime.app_state import app_state

bp = Blueprint("provision_api", __name__, url_prefix="/api/v1")


class BrokerUnavailable(ApiError):
    """The job broker refused the task."""

    status = 503
    error = "broker_unavailable"


@bp.before_request
def _authenticate():
    require_instructor()


@bp.post("/provision-runs")
@documented("Start a provisioning run", request=StartRunRequest, responses={201: r.RunDetail},
            errors=(409, 503))
def start_run():
    body = parse_body(StartRunRequest)
    session = get_session()
    run = launch(session, actor=g.principal.actor, body=body)
    return jsonify(runs.to_dict(run, runs.host_statuses(session, run.id))), 201


def launch(session, *, actor: str, body: StartRunRequest) -> ProvisionRun:
    """Store the run (or the retry of the latest run's failed hosts), commit it and queue it for the worker.

    The API route and the provisioning page (controller/pages/provisioning_page.py) both start runs here.
    """
    settings = app_state().settings
    tuning = Tuning.from_settings(settings, forks=body.forks, tune=body.tune)
    stale_after = settings.provision_time_limit + runs.RUN_GRACE
    if body.retry_failed:
        run = runs.retry_failed(session, actor=actor, playbook=body.playbook, tuning=tuning,
                                stale_after=stale_after)
    else:
        run = runs.start(session, actor=actor, playbook=body.playbook, driver=body.driver,
                         inventory=body.inventory, tuning=tuning, default_controller_url=settings.base_url,
                         stale_after=stale_after, sources=InventorySettings.from_settings(settings))
    session.commit()
    from kombu.exceptions import OperationalError

    from controller.tasks.provision import enqueue

    try:
        enqueue(run.id, time_limit=settings.provision_time_limit)
    except OperationalError as exc:
        # Nothing will ever run it: say so on the run too, so it does not block the next one.
        runs.mark_unqueued(session, run, reason=str(exc))
        session.commit()
        raise BrokerUnavailable(f"the run could not be queued (is the broker up?): {exc}") from None
    return run


@bp.get("/provision-runs")
@documented("Provisioning runs, newest first", responses={200: r.RunPage}, paged=True)
def list_runs():
    found = page(get_session(), runs.list_query(),
                 [Key(ProvisionRun.created_at, descending=True), Key(ProvisionRun.id, descending=True)],
                 default_limit=20)
    return jsonify({"runs": [runs.to_dict(r) for r in found.items], "next": found.next})


@bp.get("/provision-runs/<run_id>")
@documented("One run with its hosts", responses={200: r.RunDetail})
def get_run(run_id: str):
    session = get_session()
    run = runs.get_or_404(session, run_id)
    return jsonify(runs.to_dict(run, runs.host_statuses(session, run.id)))


@bp.get("/provision-runs/<run_id>/events")
@documented("A run's events in order", responses={200: r.RunEvents}, paged=True, query=[
    Param("after", {"type": "integer", "minimum": 0, "maximum": 2**31}, "events after this seq"),
    Param("host", TEXT64, "only this host")])
def run_events(run_id: str):
    session = get_session()
    runs.get_or_404(session, run_id)
    query = runs.events_query(run_id, after=int_arg("after", 0, 0, 2**31), host=request.args.get("host"))
    found = page(session, query, [Key(ProvisionEvent.seq), Key(ProvisionEvent.id)], default_limit=500)
    return jsonify({"run_id": run_id, "events": [runs.event_to_dict(e) for e in found.items], "next": found.next})


@bp.post("/provision-runs/<run_id>/cancel")
@documented("Cancel a run", responses={200: r.RunDetail}, errors=(409,))
def cancel_run(run_id: str):
    session = get_session()
    run = runs.request_cancel(session, run_id=run_id, actor=g.principal.actor,
                              stale_after=app_state().settings.provision_time_limit + runs.RUN_GRACE)
    session.commit()
    return jsonify(runs.to_dict(run, runs.host_statuses(session, run.id)))
