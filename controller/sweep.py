"""The periodic sweep: silent nodes go offline, overdue commands expire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller import audit, commands, states
from controller.models import Node, utcnow
from controller.principals import SYSTEM


@dataclass
class SweepReport:
    offline: list[str]
    expired: int

    def as_dict(self) -> dict:
        return {"offline": self.offline, "expired": self.expired}


def sweep(session: Session, *, missed_heartbeats: int, now: datetime | None = None) -> SweepReport:
    now = now or utcnow()
    offline = mark_silent_offline(session, missed_heartbeats=missed_heartbeats, now=now)
    expired = commands.expire_overdue(session, now=now)
    return SweepReport(offline=offline, expired=expired)


def mark_silent_offline(session: Session, *, missed_heartbeats: int, now: datetime) -> list[str]:
    """Online nodes silent for more than ``missed_heartbeats`` of their own intervals."""
    went_offline = []
    for node in session.scalars(select(Node).where(Node.state == states.NODE_ONLINE)):
        # Beats are jittered by +-20 % and flushed within 0.5 s: three intervals leave room for both.
        # A node told to beat less often (controller over its heartbeat budget) is judged by that interval.
        limit = timedelta(seconds=node.beats_every * missed_heartbeats)
        if node.last_seen_at is None or now - node.last_seen_at > limit:
            states.check_node_move(node.state, states.NODE_OFFLINE)
            node.state = states.NODE_OFFLINE
            audit.record(session, actor=SYSTEM.actor, action="node.offline", target=node.id,
                         node=node.name, last_seen_at=node.last_seen_at.isoformat() if node.last_seen_at else None)
            went_offline.append(node.name)
    return went_offline
