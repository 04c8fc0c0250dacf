"""Lab progress per node (and its attendee) and step: from lab command results and from state reports.

Both sources come from the node itself (the caller is authenticated as that
node), so a node only ever writes its own rows. What a node sends is untrusted
(the attendee is root there): ids must look like lab ids, statuses must be
known, evidence is capped, and anything else is ignored rather than stored.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.models import Attendee, LabProgress, Node, utcnow

ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
# "skipped": the attendee reset to a later step, and the steps before it were not solved for them.
STATUSES = frozenset({"passed", "failed", "unavailable", "forged", "skipped"})
MAX_EVIDENCE_BYTES = 4096
MAX_ENTRIES = 2000


def from_result(session: Session, node_id: str, kind: str, output: dict[str, Any]) -> int:
    """Record what a ``lab.check``/``lab.solve`` result says; a ``lab.reset`` clears the lab's rows, then
    records the steps a reset to a later step solved or skipped."""
    lab = output.get("lab") if isinstance(output, dict) else None
    if not isinstance(lab, str) or not ID.match(lab):
        return 0
    if kind == "lab.reset":
        session.execute(delete(LabProgress).where(LabProgress.node_id == node_id, LabProgress.lab == lab))
    entries = {}
    for step in output.get("steps", [])[:MAX_ENTRIES]:
        if isinstance(step, dict):
            entries[(lab, step.get("step"))] = (step.get("status"), step.get("evidence"), step.get("reason"))
    return _upsert(session, node_id, entries)


def from_snapshot(session: Session, node_id: str, snapshot: dict[str, Any]) -> int:
    """Record the progress file the agent reports (attendee checks from the `lab` command land here)."""
    labs = snapshot.get("labs") if isinstance(snapshot, dict) else None
    progress = labs.get("progress") if isinstance(labs, dict) else None
    if not isinstance(progress, dict):
        return 0
    entries = {}
    for lab, steps in list(progress.items())[:MAX_ENTRIES]:
        if isinstance(steps, dict):
            for step, info in list(steps.items())[:MAX_ENTRIES]:
                if isinstance(info, dict):
                    entries[(lab, step)] = (info.get("status"), None, info.get("reason"))
    return _upsert(session, node_id, entries, keep_evidence=True)


def _upsert(session: Session, node_id: str, entries: dict, keep_evidence: bool = False) -> int:
    valid = {(lab, step): value for (lab, step), value in entries.items()
             if isinstance(lab, str) and isinstance(step, str) and ID.match(lab) and ID.match(step)
             and value[0] in STATUSES}
    if not valid:
        return 0
    attendee_id = session.scalar(select(Attendee.id).where(Attendee.node_id == node_id))
    existing = {(row.lab, row.step): row for row in session.scalars(
        select(LabProgress).where(LabProgress.node_id == node_id,
                                  LabProgress.lab.in_({lab for lab, _ in valid})))}
    now = utcnow()
    changed = 0
    for (lab, step), (status, evidence, reason) in valid.items():
        row = existing.get((lab, step))
        record = _evidence(evidence, reason)
        if row is None:
            session.add(LabProgress(node_id=node_id, attendee_id=attendee_id, lab=lab, step=step, status=status,
                                    evidence=record, updated_at=now))
            changed += 1
        elif row.status != status or (not keep_evidence and row.evidence != record):
            # A state report carries no evidence: it keeps the last result's evidence unless the status moved.
            if not keep_evidence or row.status != status:
                row.evidence = record
            row.status, row.attendee_id, row.updated_at = status, attendee_id, now
            changed += 1
    return changed


def _evidence(evidence: Any, reason: Any) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if isinstance(reason, str) and reason:
        record["reason"] = reason[:500]
    if isinstance(evidence, dict):
        encoded = json.dumps(evidence, default=str)
        record["evidence"] = evidence if len(encoded) <= MAX_EVIDENCE_BYTES else {"truncated": encoded[:1000]}
    return record


def table(session: Session, *, lab: str | None = None, node: str | None = None) -> list[dict[str, Any]]:
    query = (select(LabProgress, Node.name, Attendee.name.label("attendee"))
             .join(Node, Node.id == LabProgress.node_id)
             .outerjoin(Attendee, Attendee.id == LabProgress.attendee_id)
             .order_by(Node.name, LabProgress.lab, LabProgress.step))
    if lab:
        query = query.where(LabProgress.lab == lab)
    if node:
        query = query.where((Node.name == node) | (Node.id == node))
    return [{"node": name, "attendee": attendee, "lab": row.lab, "step": row.step, "status": row.status,
             "reason": (row.evidence or {}).get("reason", ""), "updated_at": row.updated_at.isoformat()}
            for row, name, attendee in session.execute(query)]
