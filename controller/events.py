"""Events (one run of a workshop). Until multi-event support, everything lives in one."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.models import Event

DEFAULT_EVENT = "default"


def get_or_create(session: Session, *, name: str = DEFAULT_EVENT) -> Event:
    event = session.scalar(select(Event).where(Event.name == name))
    if event is None:
        event = Event(name=name)
        session.add(event)
        session.flush()
    return event
