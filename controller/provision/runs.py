"""Provisioning runs in the database: asking for one, retrying the failed hosts, cancelling, views.

Keyword-only functions of an explicit session, like the other domain modules;
the API and the CLI both go through these, the Celery task through
``execute.py``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from controller import audit, enrollment, events
from controller.errors import Conflict, NotFound, ValidationFailed
from controller.models import ProvisionEvent, ProvisionHostStatus, ProvisionRun, utcnow
from controller.provision import states
from controller.provision.inventory import InventoryError, InventoryHost, hosts_from_dicts
from controller.provision.inventory.request import InventorySettings, open_requested
from controller.provision.runner import Tuning

# Seconds past LABFLEET_PROVISION_TIME_LIMIT after which no worker can still be running a run:
# ansible-runner stops at the limit, Celery kills the task 300 s later (controller/tasks/provision.py),
# and the other 300 s cover the queue wait and settling. Past limit + RUN_GRACE an open run is stale
# (it can be cancelled or replaced) and the host tokens minted for it have no use left.
RUN_GRACE = 600.0


def start(session: Session, *, actor: str, playbook: str, driver: str, inventory: dict[str, Any],
          tuning: Tuning, default_controller_url: str, stale_after: float,
          sources: InventorySettings) -> ProvisionRun:
    """A new pending run over every host of the inventory; refused while another run is open.

    ``inventory`` is the request's; ``sources`` the operator's settings (where keys, the local
    fleet and the Vagrantfile are): the request never names a place on the controller.
    """
    _check_playbook(playbook)
    try:
        source = open_requested(driver, inventory, sources)
        hosts = source.hosts()
        controller_url = source.controller_url(default_controller_url)
    except InventoryError as exc:
        # The field is the key at fault: `driver`, `inventory.state_dir`, `hosts[2].vars.ansible_connection`.
        raise ValidationFailed(str(exc), field=exc.key or "inventory") from None
    _refuse_if_open(session, stale_after=stale_after)
    return _create(session, actor=actor, playbook=playbook, driver=driver, hosts=hosts, limit=[],
                   tuning=tuning, controller_url=controller_url, retry_of=None)


def retry_failed(session: Session, *, actor: str, playbook: str, tuning: Tuning, stale_after: float) -> ProvisionRun:
    """A run of the latest run's failed hosts only (same inventory, ``limit`` = those hosts)."""
    _check_playbook(playbook)
    _refuse_if_open(session, stale_after=stale_after)
    latest = session.scalar(select(ProvisionRun).where(ProvisionRun.playbook == playbook)
                            .order_by(ProvisionRun.created_at.desc()).limit(1))
    if latest is None:
        raise Conflict(f"no earlier {playbook} run to retry", field="retry_failed")
    failed = [h.host for h in host_statuses(session, latest.id) if h.state in states.HOST_RETRY_STATES]
    if not failed:
        raise Conflict(f"every host of the latest run {latest.id} is ok: nothing to retry", field="retry_failed")
    return _create(session, actor=actor, playbook=playbook, driver=latest.driver,
                   hosts=hosts_from_dicts(latest.hosts), limit=failed, tuning=tuning,
                   controller_url=latest.controller_url, retry_of=latest.id)


def _create(session: Session, *, actor: str, playbook: str, driver: str, hosts: list[InventoryHost],
            limit: list[str], tuning: Tuning, controller_url: str, retry_of: str | None) -> ProvisionRun:
    run = ProvisionRun(event_id=events.get_or_create(session).id, playbook=playbook, driver=driver,
                       hosts=[h.to_dict() for h in hosts], limit_hosts=limit, tuning=tuning.to_dict(),
                       controller_url=controller_url, state=states.RUN_PENDING, retry_of=retry_of,
                       requested_by=actor)
    session.add(run)
    session.flush()
    addresses = {h.name: h.address for h in hosts}
    for name in limit or [h.name for h in hosts]:
        session.add(ProvisionHostStatus(run_id=run.id, host=name, address=addresses.get(name, "")))
    audit.record(session, actor=actor, action=f"provision.{'retry' if retry_of else 'start'}", target=run.id,
                 playbook=playbook, driver=driver, hosts=limit or [h.name for h in hosts], tuning=tuning.to_dict(),
                 **({"retry_of": retry_of} if retry_of else {}))
    return run


def request_cancel(session: Session, *, run_id: str, actor: str, stale_after: float) -> ProvisionRun:
    """Ask a run to stop. A pending run (or one whose worker is gone) is cancelled at once."""
    run = get_or_404(session, run_id)
    if run.state in states.RUN_DONE_STATES:
        raise Conflict(f"run {run.id} is already {run.state}", field="run_id")
    now = utcnow()
    run.cancel_requested_at = run.cancel_requested_at or now
    # At once, not when the worker notices: a cancelled run hands no VM anything any more.
    enrollment.revoke_run_tokens(session, run_id=run.id, actor=actor, reason="the provisioning run was cancelled")
    if run.state == states.RUN_PENDING or _stale(run, stale_after):
        run.state = states.RUN_CANCELLED
        run.finished_at = now
        for status in host_statuses(session, run.id):
            if status.state not in states.HOST_DONE_STATES:
                status.state = states.HOST_CANCELLED
                status.message = "cancelled before this host finished"
    audit.record(session, actor=actor, action="provision.cancel", target=run.id, state=run.state)
    return run


def mark_unqueued(session: Session, run: ProvisionRun, *, reason: str) -> None:
    run.state, run.finished_at, run.error = states.RUN_ERROR, utcnow(), f"not queued: {reason}"[:2000]
    for status in host_statuses(session, run.id):
        status.state, status.message = states.HOST_FAILED, "the run was never queued"


def get_or_404(session: Session, run_id: str) -> ProvisionRun:
    run = session.get(ProvisionRun, run_id)
    if run is None:
        raise NotFound(f"no provisioning run {run_id!r}", field="run_id")
    return run


def list_query() -> Select:
    return select(ProvisionRun)


def host_statuses(session: Session, run_id: str) -> list[ProvisionHostStatus]:
    return list(session.scalars(select(ProvisionHostStatus).where(ProvisionHostStatus.run_id == run_id)
                                .order_by(ProvisionHostStatus.host)))


def events_query(run_id: str, *, after: int = 0, host: str | None = None) -> Select:
    """A run's events past sequence number ``after`` (page them by seq), of one host if given."""
    query = select(ProvisionEvent).where(ProvisionEvent.run_id == run_id, ProvisionEvent.seq > after)
    if host:
        query = query.where(ProvisionEvent.host == host)
    return query


def to_dict(run: ProvisionRun, hosts: list[ProvisionHostStatus] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": run.id, "playbook": run.playbook, "driver": run.driver, "state": run.state,
        "retry_of": run.retry_of, "requested_by": run.requested_by, "tuning": run.tuning,
        "limit": run.limit_hosts, "controller_url": run.controller_url, "tasks_total": run.tasks_total,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "cancel_requested": run.cancel_requested_at is not None, "error": run.error,
    }
    if hosts is not None:
        view["hosts"] = [host_to_dict(h) for h in hosts]
        view["summary"] = {state: sum(1 for h in hosts if h.state == state)
                           for state in (states.HOST_PENDING, states.HOST_RUNNING, *states.HOST_DONE_STATES)}
    return view


def host_to_dict(status: ProvisionHostStatus) -> dict[str, Any]:
    return {"host": status.host, "address": status.address, "state": status.state, "ok": status.ok,
            "changed": status.changed, "failed": status.failed, "unreachable": status.unreachable,
            "skipped": status.skipped, "tasks_done": status.tasks_done, "current_task": status.current_task,
            "failed_task": status.failed_task, "message": status.message}


def event_to_dict(event: ProvisionEvent) -> dict[str, Any]:
    return {"seq": event.seq, "at": event.at.isoformat(), "host": event.host, "task": event.task,
            "status": event.status, "message": event.message}


def _check_playbook(playbook: str) -> None:
    if playbook not in states.PLAYBOOKS:
        raise ValidationFailed(f"unknown playbook {playbook!r}; known: {', '.join(states.PLAYBOOKS)}",
                               field="playbook")


def _refuse_if_open(session: Session, *, stale_after: float) -> None:
    for run in session.scalars(select(ProvisionRun).where(ProvisionRun.state.in_(states.RUN_OPEN_STATES))):
        if not _stale(run, stale_after):
            raise Conflict(f"run {run.id} ({run.playbook}) is still {run.state}: wait for it or cancel it "
                           f"(labfleet provision cancel {run.id})", field="run_id")


def _stale(run: ProvisionRun, stale_after: float) -> bool:
    """A run past its time limit: its worker is gone (the task limit would have ended it)."""
    since = run.started_at or run.created_at
    return since < utcnow() - timedelta(seconds=stale_after)
