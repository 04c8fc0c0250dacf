"""Who the attendee on a page is: their access code, traded once for a signed session cookie.

For every attendee-facing page (the terminal here; the attendee page reuses
``current_attendee``). The cookie holds the attendee's id and a fingerprint of
their current access-code hash: a reissued code (``labfleet credentials
--reissue``) ends the sessions of the old one. An attendee reaches only the
node they are assigned to (``Attendee.node_id``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flask import session
from sqlalchemy import func, select

from controller.attendees import check_access_code
from controller.models import Attendee, Node

SESSION_KEY = "labfleet_attendee"


@dataclass(frozen=True)
class SignedInAttendee:
    id: str
    name: str
    node_id: str | None
    node_name: str | None


def _fingerprint(attendee: Attendee) -> str:
    return hashlib.sha256((attendee.access_code_hash or "").encode()).hexdigest()[:16]


def authenticate(db, email: str, code: str) -> Attendee | None:
    """The attendee with this e-mail whose current access code is ``code``, or None."""
    for attendee in db.scalars(select(Attendee).where(func.lower(Attendee.email) == email.strip().lower())):
        if check_access_code(code, attendee.access_code_hash):
            return attendee
    return None


def sign_in(attendee: Attendee) -> None:
    session[SESSION_KEY] = {"id": attendee.id, "key": _fingerprint(attendee)}


def sign_out() -> None:
    session.pop(SESSION_KEY, None)


def current_attendee(db) -> SignedInAttendee | None:
    """The attendee this browser signed in as, while their access code is the one they used."""
    stored = session.get(SESSION_KEY)
    if not isinstance(stored, dict) or not isinstance(stored.get("id"), str):
        return None
    attendee = db.get(Attendee, stored["id"])
    if attendee is None or attendee.access_code_hash is None or stored.get("key") != _fingerprint(attendee):
        return None
    node = db.get(Node, attendee.node_id) if attendee.node_id else None
    return SignedInAttendee(attendee.id, attendee.name, node.id if node else None, node.name if node else None)
