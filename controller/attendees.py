"""Attendees: importing the room's list, assigning each to a node, and their access codes.

An access code is what an attendee types to reach their own page: generated
here, shown once on the credentials sheet, stored only as a salted PBKDF2 hash
(a code is short enough to type, so a fast unsalted hash would not do).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from controller import audit, events, nodes, states
from controller.errors import Conflict, NotFound, ValidationFailed
from controller.models import Attendee, Node, ProvisionRun, utcnow

LOGIN = "class"  # the attendee account the playbook creates on every lab VM
_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
# No 0/O, 1/l/I: read off paper, typed by hand.
_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_PBKDF2_ROUNDS = 100_000
MAX_ROWS = 5000


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"created": len(self.created), "emails": self.created, "duplicates": self.duplicates}


def import_csv(session: Session, *, text: str, source: str, actor: str) -> ImportReport:
    """Add the attendees of a ``name,email`` CSV; nothing is added if any row is bad.

    Duplicates (twice in the file, or imported before) are skipped and reported.
    """
    rows = _parse(text, source)
    event = events.get_or_create(session)
    existing = {e.lower() for e in session.scalars(select(Attendee.email).where(Attendee.event_id == event.id))}
    report, first_line = ImportReport(), {}
    for line, name, email in rows:
        key = email.lower()
        if key in first_line:
            report.duplicates.append({"line": line, "email": email, "reason": f"also on line {first_line[key]}"})
            continue
        first_line[key] = line
        if key in existing:
            report.duplicates.append({"line": line, "email": email, "reason": "imported before"})
            continue
        session.add(Attendee(event_id=event.id, name=name, email=email))
        report.created.append(email)
    session.flush()
    audit.record(session, actor=actor, action="attendees.import", target=source[:160], created=len(report.created),
                 duplicates=len(report.duplicates))
    return report


def _parse(text: str, source: str) -> list[tuple[int, str, str]]:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))

    def fail(line: int, column: str | None, message: str) -> ValidationFailed:
        where = f"{source}:{line}" + (f": column {column}" if column else "")
        return ValidationFailed(f"{where}: {message}", field="csv")

    try:
        header = [c.strip().lower() for c in next(reader)]
    except StopIteration:
        raise fail(1, None, "empty file; expected a header line name,email") from None
    except csv.Error as exc:
        raise fail(1, None, f"not valid CSV: {exc}") from None
    for column in ("name", "email"):
        if column not in header:
            raise fail(1, column, f"missing from the header (found: {', '.join(header) or 'nothing'})")
    name_at, email_at = header.index("name"), header.index("email")
    rows = []
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(rows) >= MAX_ROWS:
                raise fail(line, None, f"more than {MAX_ROWS} attendees")
            if len(row) <= max(name_at, email_at):
                raise fail(line, None, f"has {len(row)} column(s), the header has {len(header)}")
            name, email = row[name_at].strip(), row[email_at].strip()
            if not name:
                raise fail(line, "name", "empty")
            if len(name) > 120:
                raise fail(line, "name", "longer than 120 characters")
            if not _EMAIL.match(email) or len(email) > 254:
                raise fail(line, "email", f"{email!r} is not an email address")
            rows.append((line, name, email))
    except csv.Error as exc:
        raise fail(reader.line_num, None, f"not valid CSV: {exc}") from None
    return rows


def list_query() -> Select:
    return select(Attendee)


def list_attendees(session: Session) -> list[Attendee]:
    return list(session.scalars(select(Attendee).order_by(Attendee.name, Attendee.email)))


def _with_nodes(session: Session) -> list[tuple[Attendee, Node | None]]:
    """Every attendee with their node, by name, in one query."""
    rows = session.execute(select(Attendee, Node).outerjoin(Node, Attendee.node_id == Node.id)
                           .order_by(Attendee.name, Attendee.email))
    return [(attendee, node) for attendee, node in rows]


def assign_round_robin(session: Session, *, actor: str) -> tuple[list[tuple[Attendee, Node]], list[Attendee]]:
    """Give every unassigned attendee a node that has nobody yet, in name order; returns who is still without."""
    taken = _taken(session)
    free = [n for n in _usable_nodes(session) if n.id not in taken]
    waiting = [a for a in list_attendees(session) if a.node_id is None]
    pairs = list(zip(waiting, free, strict=False))
    for attendee, node in pairs:
        attendee.node_id = node.id
    session.flush()
    if pairs:
        audit.record(session, actor=actor, action="attendees.assign", target="round-robin",
                     pairs={a.email: n.name for a, n in pairs})
    return pairs, waiting[len(pairs):]


def assign_one(session: Session, *, email: str, node_ref: str, actor: str) -> tuple[Attendee, Node]:
    """Put one attendee on one node (moving them if they had another); a node holds one attendee."""
    attendee = session.scalar(select(Attendee).where(Attendee.email == email))
    if attendee is None:
        raise NotFound(f"no attendee with email {email!r}", field="attendee")
    try:
        (node,) = nodes.resolve(session, names=[node_ref], all_nodes=False)
    except NotFound:
        raise NotFound(f"no node named {node_ref!r}", field="node") from None
    if node.state in (states.NODE_REVOKED, states.NODE_RETIRED):
        raise Conflict(f"node {node.name} is {node.state}", field="node")
    holder = session.scalar(select(Attendee).where(Attendee.node_id == node.id, Attendee.id != attendee.id))
    if holder is not None:
        raise Conflict(f"node {node.name} is assigned to {holder.email} already", field="node")
    attendee.node_id = node.id
    session.flush()
    audit.record(session, actor=actor, action="attendees.assign", target=attendee.id, pairs={email: node.name})
    return attendee, node


def issue_credentials(session: Session, *, actor: str, reissue: bool = False) -> list[dict[str, Any]]:
    """One sheet row per attendee; a new access code for those without one (for everyone with ``reissue``).

    A code is in the answer once; afterwards only its hash exists, and the row says when it was issued.
    """
    addresses = _provisioned_addresses(session)
    rows, issued = [], []
    for attendee, node in _with_nodes(session):
        code = None
        if reissue or attendee.access_code_hash is None:
            code = new_access_code()
            attendee.access_code_hash = hash_access_code(code)
            attendee.access_code_issued_at = utcnow()
            issued.append(attendee.email)
        rows.append({
            "name": attendee.name, "email": attendee.email, "node": node.name if node else None,
            "host": _host_address(node, addresses) if node else None, "login": LOGIN,
            "access_code": code,
            "issued_at": attendee.access_code_issued_at.isoformat() if attendee.access_code_issued_at else None,
        })
    audit.record(session, actor=actor, action="attendees.credentials", target="sheet", issued=issued,
                 reissue=reissue)
    return rows


def new_access_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))  # ~59 bits
    return "-".join(raw[i:i + 4] for i in range(0, 12, 4))


def hash_access_code(code: str) -> str:
    """``pbkdf2$<salt>$<key>``, 46 characters (the column holds 64)."""
    salt = secrets.token_bytes(8)
    key = hashlib.pbkdf2_hmac("sha256", _normal(code).encode(), salt, _PBKDF2_ROUNDS, dklen=24)
    return f"pbkdf2${_b64(salt)}${_b64(key)}"


def check_access_code(code: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("pbkdf2$"):
        return False
    _, salt, key = stored.split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", _normal(code).encode(), _unb64(salt), _PBKDF2_ROUNDS, dklen=24)
    return hmac.compare_digest(candidate, _unb64(key))


def to_dict(attendee: Attendee, node: Node | None = None) -> dict[str, Any]:
    return {"id": attendee.id, "name": attendee.name, "email": attendee.email,
            "node": node.name if node else None, "has_access_code": attendee.access_code_hash is not None}


def _normal(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _usable_nodes(session: Session) -> list[Node]:
    return list(session.scalars(select(Node).where(Node.state.in_((states.NODE_ONLINE, states.NODE_OFFLINE)))
                                .order_by(Node.name)))


def _taken(session: Session) -> set[str]:
    return set(session.scalars(select(Attendee.node_id).where(Attendee.node_id.is_not(None))))


def login_host(session: Session, node: Node) -> str:
    """The address the attendee of ``node`` logs in at (the credentials sheet's "host")."""
    return _host_address(node, _provisioned_addresses(session))


def _host_address(node: Node, provisioned: dict[str, str]) -> str:
    """Where the attendee logs in: the inventory address of the host a run made this node, else the
    address the node enrolled from. Never looked up by the node's name: any machine can ask for a name."""
    if node.provision_host is not None and node.provision_host in provisioned:
        return provisioned[node.provision_host]
    return node.address


def _provisioned_addresses(session: Session) -> dict[str, str]:
    """Host name -> the address Ansible reached it at (what an attendee types), newest run first."""
    found: dict[str, str] = {}
    for run in session.scalars(select(ProvisionRun).where(ProvisionRun.playbook == "site")
                               .order_by(ProvisionRun.created_at.desc()).limit(20)):
        for host in run.hosts:
            found.setdefault(host["name"], host["address"])
    return found
