"""Lab progress per node (and its attendee) and step: from lab command results and from state reports.

Both sources come from the node itself (the caller is authenticated as that
node), so a node only ever writes its own rows. What a node sends is untrusted
(the attendee is root there): a row is kept only for a (lab, step) of the
catalog the node reports in its state snapshot (``labs.catalog``), and for a
result only for the lab the instructor asked about; statuses must be known,
evidence is capped, and a node holds at most ``max_rows`` rows (new ones
beyond that are dropped, known ones still move).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from controller.models import Attendee, LabProgress, Node, utcnow
from node_agent.protocol import LabOutcome

log = logging.getLogger(__name__)

ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
# "skipped": the attendee reset to a later step, and the steps before it were not solved for them.
STATUSES = frozenset({"passed", "failed", "unavailable", "forged", "skipped"})
MAX_EVIDENCE_BYTES = 4096
# What we read of a reported catalog: far above any real one (17 labs), far below what fills a table.
MAX_CATALOG_LABS = 200
MAX_CATALOG_STEPS = 50

Catalog = dict[str, frozenset[str]]


def reported_catalog(snapshot: Any) -> Catalog:
    """The (bounded) lab id -> step ids a node's state snapshot declares; empty when it declares none."""
    labs = snapshot.get("labs") if isinstance(snapshot, dict) else None
    catalog = labs.get("catalog") if isinstance(labs, dict) else None
    if not isinstance(catalog, dict):
        return {}
    known: Catalog = {}
    for lab, steps in list(catalog.items())[:MAX_CATALOG_LABS]:
        if isinstance(lab, str) and ID.match(lab) and isinstance(steps, list):
            known[lab] = frozenset(s for s in steps[:MAX_CATALOG_STEPS] if isinstance(s, str) and ID.match(s))
    return known


def node_catalog(session: Session, node_id: str) -> Catalog:
    return reported_catalog(session.scalar(select(Node.state_snapshot).where(Node.id == node_id)))


def from_result(session: Session, node_id: str, kind: str, outcome: LabOutcome, *, asked_lab: Any,
                max_rows: int) -> int:
    """Record what a ``lab.check``/``lab.solve`` result says; a ``lab.reset`` clears the lab's rows, then
    records the steps a reset to a later step solved or skipped.

    ``outcome`` was validated before anything was written (``command_bulk.ResultPost``).
    """
    if outcome.lab != asked_lab or not ID.match(outcome.lab):
        return 0
    if kind == "lab.reset":
        session.execute(delete(LabProgress).where(LabProgress.node_id == node_id, LabProgress.lab == outcome.lab))
    checked = utcnow().isoformat()
    entries = {(outcome.lab, step.step): (step.status, step.evidence, step.reason, checked) for step in outcome.steps}
    return _upsert(session, node_id, entries, catalog=node_catalog(session, node_id), max_rows=max_rows)


def from_snapshot(session: Session, node_id: str, snapshot: dict[str, Any], *, max_rows: int) -> int:
    """Record the progress file the agent reports (attendee checks from the `lab` command land here)."""
    labs = snapshot.get("labs") if isinstance(snapshot, dict) else None
    progress = labs.get("progress") if isinstance(labs, dict) else None
    catalog = reported_catalog(snapshot)
    if not isinstance(progress, dict) or not catalog:
        return 0
    entries = {}
    for lab, steps in progress.items():
        if lab in catalog and isinstance(steps, dict):
            for step, info in steps.items():
                if step in catalog[lab] and isinstance(info, dict):
                    entries[(lab, step)] = (info.get("status"), None, info.get("reason"), info.get("at"))
    return _upsert(session, node_id, entries, catalog=catalog, max_rows=max_rows, keep_evidence=True)


def _upsert(session: Session, node_id: str, entries: dict, *, catalog: Catalog, max_rows: int,
            keep_evidence: bool = False) -> int:
    valid = {(lab, step): value for (lab, step), value in entries.items()
             if step in catalog.get(lab, ()) and value[0] in STATUSES}
    if not valid:
        return 0
    attendee_id = session.scalar(select(Attendee.id).where(Attendee.node_id == node_id))
    existing = {(row.lab, row.step): row for row in session.scalars(
        select(LabProgress).where(LabProgress.node_id == node_id,
                                  LabProgress.lab.in_({lab for lab, _ in valid})))}
    room = max_rows - session.scalar(select(func.count()).select_from(LabProgress)
                                     .where(LabProgress.node_id == node_id))
    now = utcnow()
    changed = dropped = 0
    for (lab, step), (status, evidence, reason, checked_at) in valid.items():
        row = existing.get((lab, step))
        record = _evidence(evidence, reason)
        checked_at = checked_at[:40] if isinstance(checked_at, str) else ""
        if row is not None and checked_at and checked_at != row.checked_at:
            # A new check (stuck detection counts failures in a row with the same reason).
            same = status == row.status == "failed" and record.get("reason") == (row.evidence or {}).get("reason")
            row.fail_streak = row.fail_streak + 1 if same else int(status == "failed")
            row.checked_at = checked_at
            if record.get("reason") != (row.evidence or {}).get("reason"):
                row.evidence = record  # a newer check's reason: the older evidence no longer explains it
        if row is None:
            if room <= 0:
                dropped += 1
                continue
            room -= 1
            session.add(LabProgress(node_id=node_id, attendee_id=attendee_id, lab=lab, step=step, status=status,
                                    evidence=record, updated_at=now, fail_streak=int(status == "failed"),
                                    checked_at=checked_at))
            changed += 1
        elif row.status != status or (not keep_evidence and row.evidence != record):
            # A state report carries no evidence: it keeps the last result's evidence unless the status moved.
            if not keep_evidence or row.status != status:
                row.evidence = record
            row.status, row.attendee_id, row.updated_at = status, attendee_id, now
            changed += 1
    if dropped:
        log.warning("node %s is at its %d progress rows: %d new rows dropped", node_id, max_rows, dropped)
    return changed


def _evidence(evidence: Any, reason: Any) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if isinstance(reason, str) and reason:
        record["reason"] = reason[:500]
    if isinstance(evidence, dict):
        encoded = json.dumps(evidence, default=str)
        record["evidence"] = evidence if len(encoded) <= MAX_EVIDENCE_BYTES else {"truncated": encoded[:1000]}
    return record


def table_query(*, lab: str | None = None, node: str | None = None) -> Select:
    """(row, node name, attendee name) per progress row; ``lab`` and ``node`` (name or id) narrow it."""
    query = (select(LabProgress, Node.name, Attendee.name.label("attendee"))
             .join(Node, Node.id == LabProgress.node_id)
             .outerjoin(Attendee, Attendee.id == LabProgress.attendee_id))
    if lab:
        query = query.where(LabProgress.lab == lab)
    if node:
        query = query.where((Node.name == node) | (Node.id == node))
    return query


def table_row(found: tuple) -> dict[str, Any]:
    row, name, attendee = found
    return {"node": name, "attendee": attendee, "lab": row.lab, "step": row.step, "status": row.status,
            "reason": (row.evidence or {}).get("reason", ""), "updated_at": row.updated_at.isoformat()}
