"""The audit log: every instructor action on a node, every command and its result."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, String, cast, or_, select
from sqlalchemy.orm import Session

from controller.errors import ValidationFailed
from controller.models import AuditEntry, Node


def record(session: Session, *, actor: str, action: str, target: str = "", **detail: Any) -> AuditEntry:
    """Add an entry to the session; it is committed with the action it describes."""
    entry = AuditEntry(actor=actor, action=action, target=target, detail=detail)
    session.add(entry)
    return entry


def list_query(*, action: str | None = None, actor: str | None = None, node: Sequence[str] = (),
               since: datetime | None = None, until: datetime | None = None) -> Select:
    """Entries, newest first when paged by id descending.

    ``action``: one action; ``actor``: who (``instructor:ada``, or just ``ada``: any kind);
    ``node``: entries about a node (its name and id): its own posts, actions targeting it,
    batches naming it; ``since``/``until``: a time range (inclusive, exclusive).
    """
    query = select(AuditEntry)
    if action:
        query = query.where(AuditEntry.action == action)
    if actor:
        query = query.where(AuditEntry.actor == actor if ":" in actor else AuditEntry.actor.like(f"%:{_like(actor)}",
                                                                                                escape="\\"))
    if node:
        query = query.where(or_(*(condition for ref in node for condition in (
            AuditEntry.actor == f"node:{ref}", AuditEntry.target == ref,
            cast(AuditEntry.detail, String).like(f'%"{_like(ref)}"%', escape="\\")))))
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    return query


def actions(session: Session) -> list[str]:
    """Every action the log holds, for the page's filter."""
    return list(session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))


def node_refs(session: Session, node: str | None) -> list[str]:
    """A node filter's names to match: what was given, and the node's id or name when it is one."""
    if not node:
        return []
    refs = [node]
    found = session.execute(select(Node.id, Node.name).where(or_(Node.name == node, Node.id == node))).first()
    if found is not None:
        refs += [ref for ref in found if ref != node]
    return refs


def parse_time(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 time from a filter (``2026-12-04T16:00``, UTC unless it names a zone)."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationFailed(f"{field}: expected a time like 2026-12-04T16:00 (UTC)", field=field) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def to_dict(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at.isoformat(), "actor": entry.actor, "action": entry.action,
            "target": entry.target, "detail": entry.detail}
