"""Who the attendee on a page is: their access code, traded once (at /attendee/login) for a signed session.

The one attendee session of every attendee-facing page (the attendee page, their terminal). The cookie
holds the attendee's id, their node and a mark of when their code was issued: a reissued code
(``labfleet credentials --reissue``) or a node reassigned ends the session. An attendee reaches only
the node they are assigned to (``Attendee.node_id``). An attendee session is no instructor login.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flask import session

from controller.models import Attendee, Node
from controller.pages.room import GONE

SESSION_KEY = "attendee"


@dataclass(frozen=True)
class SignedInAttendee:
    id: str
    name: str
    node_id: str
    node_name: str


def issued_mark(attendee: Attendee) -> str:
    """Changes when the code is reissued: a session made with an older code no longer matches."""
    raw = f"{attendee.access_code_hash}\0{attendee.access_code_issued_at}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def sign_in(attendee: Attendee) -> None:
    session.clear()  # never an instructor and an attendee in one browser session
    session[SESSION_KEY] = {"id": attendee.id, "node": attendee.node_id, "mark": issued_mark(attendee)}


def sign_out() -> None:
    session.pop(SESSION_KEY, None)


def signed_in(db) -> tuple[Attendee, Node] | None:
    """The attendee this browser signed in as and their node, while the code and the node still hold."""
    held = session.get(SESSION_KEY)
    if not isinstance(held, dict) or not isinstance(held.get("id"), str):
        return None
    attendee = db.get(Attendee, held["id"])
    if (attendee is None or attendee.access_code_hash is None or attendee.node_id != held.get("node")
            or issued_mark(attendee) != held.get("mark")):
        return None
    node = db.get(Node, attendee.node_id)
    if node is None or node.state in GONE:
        return None
    return attendee, node


def current_attendee(db) -> SignedInAttendee | None:
    found = signed_in(db)
    if found is None:
        return None
    attendee, node = found
    return SignedInAttendee(attendee.id, attendee.name, node.id, node.name)
