"""Rescue requests: create one (instructor or the silent-agent beat), run it, and read it back.

``create`` stores a run and one row per node (audited) and returns it; the
Celery task ``labfleet.rescue`` calls ``run`` with its id, which runs the
hosts ``rescue_parallel`` at a time, each inside ``rescue_host_timeout``
seconds, writes each step as it ends (so ``labfleet rescue`` shows live
progress), audits every step, and stores the redacted transcript and result.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller import audit, states
from controller.errors import NotFound, ValidationFailed
from controller.models import Node, RescueHost, RescueRun, utcnow
from controller.provision.redact import Redactor
from controller.rescue import steps
from controller.rescue.target import NoSshRecord, resolve

RUN_PENDING, RUN_RUNNING, RUN_DONE = "pending", "running", "done"
HOST_PENDING, HOST_RUNNING = "pending", "running"
NO_RECORD = "no_record"
HOST_STATES = (HOST_PENDING, HOST_RUNNING, steps.RECOVERED, steps.FAILED, steps.REFUSED, steps.UNREACHABLE,
               NO_RECORD)
MAX_NODES = 500


def silent_nodes(session: Session, *, older_than: float | None = None) -> list[Node]:
    """Offline nodes (silent past the sweep's missed heartbeats); ``older_than``: silent at least that long."""
    query = select(Node).where(Node.state == states.NODE_OFFLINE)
    if older_than is not None:
        query = query.where(Node.last_seen_at < utcnow() - timedelta(seconds=older_than))
    return list(session.scalars(query.order_by(Node.name)))


def create(session: Session, nodes: list[Node], *, actor: str, trigger: str) -> RescueRun:
    if not nodes:
        raise ValidationFailed("no node to rescue (no silent node, or none named)", field="nodes")
    if len(nodes) > MAX_NODES:
        raise ValidationFailed(f"at most {MAX_NODES} nodes per rescue", field="nodes")
    run = RescueRun(trigger=trigger, requested_by=actor, state=RUN_PENDING)
    session.add(run)
    session.flush()
    for node in nodes:
        session.add(RescueHost(run_id=run.id, node_id=node.id, node_name=node.name, state=HOST_PENDING,
                               steps=[], diagnostics={}))
        audit.record(session, actor=actor, action="rescue.request", target=node.id, node=node.name,
                     rescue=run.id, trigger=trigger)
    return run


def get_or_404(session: Session, run_id: str) -> RescueRun:
    run = session.get(RescueRun, run_id)
    if run is None:
        raise NotFound(f"no rescue {run_id!r}", field="rescue_id")
    return run


def host_rows(session: Session, run_id: str) -> list[RescueHost]:
    return list(session.scalars(select(RescueHost).where(RescueHost.run_id == run_id).order_by(RescueHost.node_name)))


def run_view(session: Session, run: RescueRun) -> dict[str, Any]:
    return {"id": run.id, "trigger": run.trigger, "requested_by": run.requested_by, "state": run.state,
            "created_at": run.created_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "hosts": [host_view(h) for h in host_rows(session, run.id)]}


def host_view(row: RescueHost, *, transcript: bool = False) -> dict[str, Any]:
    view = {"node": row.node_name, "node_id": row.node_id, "address": row.address, "state": row.state,
            "current_step": row.current_step, "message": row.message, "steps": row.steps or [],
            "seconds": round(sum(s.get("seconds", 0.0) for s in row.steps or []), 3)}
    if transcript:
        view.update(diagnostics=row.diagnostics or {}, transcript=row.transcript)
    return view


# -- running ---------------------------------------------------------------

def run(state, run_id: str) -> dict[str, Any]:
    """Rescue every host of run ``run_id`` (the Celery task's body); returns {node: state}."""
    settings = state.settings
    with state.db.session() as session:
        rescue = get_or_404(session, run_id)
        if rescue.state != RUN_PENDING:
            return {"skipped": rescue.state}
        rescue.state = RUN_RUNNING
        actor = rescue.requested_by
        row_ids = [(h.id, h.node_id) for h in host_rows(session, run_id)]
    results: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(settings.rescue_parallel, len(row_ids) or 1)),
                            thread_name_prefix="rescue") as pool:
        for name, outcome in pool.map(lambda ids: _one(state, run_id, actor, *ids), row_ids):
            results[name] = outcome
    with state.db.session() as session:
        rescue = session.get(RescueRun, run_id)
        rescue.state, rescue.finished_at = RUN_DONE, utcnow()
        audit.record(session, actor=actor, action="rescue.finish", target=run_id, hosts=results)
    return results


def _one(state, run_id: str, actor: str, row_id: int, node_id: str) -> tuple[str, str]:
    settings = state.settings
    with state.db.session() as session:
        node = session.get(Node, node_id)
        row = session.get(RescueHost, row_id)
        row.state, row.started_at = HOST_RUNNING, utcnow()
        try:
            target = resolve(session, node, settings.data_dir)
        except NoSshRecord as exc:
            target = None
            row.state, row.message, row.finished_at = NO_RECORD, str(exc), utcnow()
            audit.record(session, actor=actor, action="rescue.result", target=node_id, node=node.name,
                         rescue=run_id, state=NO_RECORD, message=str(exc))
        else:
            row.address = target.address
        name = node.name
    if target is None:
        return name, NO_RECORD

    restarted_at: dict[str, Any] = {}

    def on_step(step: str, done: dict | None) -> None:
        with state.db.session() as session:
            row = session.get(RescueHost, row_id)
            if done is None:
                row.current_step = step
                if step == "wait_online":
                    restarted_at["at"] = utcnow()
                return
            row.steps = [*(row.steps or []), done]
            audit.record(session, actor=actor, action="rescue.step", target=node_id, node=name, rescue=run_id,
                         step=step, ok=done["ok"], seconds=done["seconds"], summary=done["summary"][:500])

    def wait_online(seconds: float) -> bool:
        since = restarted_at.get("at") or utcnow()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with state.db.session() as session:
                node = session.get(Node, node_id)
                session.refresh(node)
                if node.state == states.NODE_ONLINE and node.last_seen_at and node.last_seen_at >= since:
                    return True
            time.sleep(0.25)
        return False

    outcome = steps.rescue_host(target, time_bound=settings.rescue_host_timeout,
                                runaway_limit=settings.rescue_runaway_processes,
                                wait_online=wait_online, on_step=on_step, redact=Redactor())
    with state.db.session() as session:
        row = session.get(RescueHost, row_id)
        row.state, row.message, row.finished_at = outcome.state, outcome.message, utcnow()
        row.current_step = ""
        row.diagnostics, row.transcript = outcome.diagnostics, outcome.text()
        action = "rescue.refused" if outcome.state == steps.REFUSED else "rescue.result"
        audit.record(session, actor=actor, action=action, target=node_id, node=name, rescue=run_id,
                     state=outcome.state, message=outcome.message[:500], address=target.address)
    return name, outcome.state


def auto_rescue(session: Session, *, silent_after: float, retry_after: float) -> RescueRun | None:
    """The beat's check: nodes silent past ``silent_after`` seconds, not rescued within ``retry_after``."""
    candidates = [n for n in silent_nodes(session, older_than=silent_after) if n.provision_host]
    if not candidates:
        return None
    recent = utcnow() - timedelta(seconds=retry_after)
    tried = set(session.scalars(select(RescueHost.node_id).join(RescueRun, RescueRun.id == RescueHost.run_id)
                                .where(RescueHost.node_id.in_([n.id for n in candidates]),
                                       RescueRun.created_at >= recent)))
    nodes = [n for n in candidates if n.id not in tried]
    if not nodes:
        return None
    return create(session, nodes, actor="system:rescue", trigger="silent")
