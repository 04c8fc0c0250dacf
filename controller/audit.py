"""The audit log: every instructor action on a node, every command and its result."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from controller.models import AuditEntry


def record(session: Session, *, actor: str, action: str, target: str = "", **detail: Any) -> AuditEntry:
    """Add an entry to the session; it is committed with the action it describes."""
    entry = AuditEntry(actor=actor, action=action, target=target, detail=detail)
    session.add(entry)
    return entry


def list_query(*, action: str | None = None) -> Select:
    """Entries, newest first when paged by id descending; ``action`` narrows to one action."""
    query = select(AuditEntry)
    if action:
        query = query.where(AuditEntry.action == action)
    return query


def to_dict(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at.isoformat(), "actor": entry.actor, "action": entry.action,
            "target": entry.target, "detail": entry.detail}
