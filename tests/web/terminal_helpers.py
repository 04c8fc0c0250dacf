"""Pieces the terminal tests share: a browser-side WebSocket, signed-in cookies, a real agent relay."""

from __future__ import annotations

import getpass
import json
import time
import urllib.request

from controller.attendees import hash_access_code
from controller.models import Attendee, Instructor
from controller.pages.views import WebInstructor
from node_agent.terminal import TerminalService
from node_agent.websocket import WebSocket

ACCESS_CODE = "ABCD-EFGH-JKLM"


def instructor_cookie(app, name: str) -> str:
    with app.extensions["labfleet"].db.session() as db:
        from sqlalchemy import select

        user = WebInstructor(db.scalar(select(Instructor).where(Instructor.name == name)))
    client = app.test_client()
    with client.session_transaction() as s:
        s["_user_id"] = user.get_id()
        s["_fresh"] = True
    return f"labfleet_session={client.get_cookie('labfleet_session').value}"


def attendee_cookie(app, node_id: str) -> tuple[str, str]:
    """Give the node's attendee an access code; a browser cookie signed in as them, and their e-mail."""
    with app.extensions["labfleet"].db.session() as db:
        from sqlalchemy import select

        attendee = db.scalar(select(Attendee).where(Attendee.node_id == node_id))
        attendee.access_code_hash = hash_access_code(ACCESS_CODE)
        attendee_id, email = attendee.id, attendee.email
        db.flush()
        from controller.pages.attendee_session import SESSION_KEY, issued_mark

        held = {"id": attendee_id, "node": node_id, "mark": issued_mark(attendee)}
    client = app.test_client()
    with client.session_transaction() as s:
        s[SESSION_KEY] = held
    return f"labfleet_session={client.get_cookie('labfleet_session').value}", email


def browser_socket(base: str, path: str, cookie: str) -> WebSocket:
    return WebSocket.connect(base + path, headers={"Cookie": cookie, "Origin": base})


def local_terminal(base: str, agent, notices: list[str] | None = None, argv: list[str] | None = None):
    """The agent's terminal service, with this machine's own account in place of the attendee's."""
    user = getpass.getuser()
    service = TerminalService(
        controller_url=base, ca_file=None, attendee_user=user, credentials=lambda: (agent.id, agent.token),
        argv=argv or ["bash", "--norc", "--noprofile", "-i"],
        tmux_command=(lambda args: notices.append(args[-1])) if notices is not None else (lambda args: None))
    return service


def deliver_open(agent, service: TerminalService, timeout: float = 10.0) -> str:
    """Long-poll the node's commands as the agent does and carry out terminal.open; the session id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = urllib.request.Request(f"{agent.base}/api/agent/v1/nodes/{agent.id}/commands?wait=2&resync=1",
                                         headers={"Authorization": f"Bearer {agent.token}"})
        with urllib.request.urlopen(request, timeout=15) as response:
            batch = json.loads(response.read())
        for command in batch["commands"]:
            if command["kind"] == "terminal.open":
                service.open(command["args"]["session"])
                return command["args"]["session"]
    raise AssertionError("no terminal.open command reached the agent")


def read_until(ws: WebSocket, needle: str, timeout: float = 10.0) -> str:
    """Output and status messages until the output shows ``needle``; the output seen."""
    seen = ""
    ws.sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while needle not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} never showed; saw {seen[-500:]!r}")
        message = ws.recv()
        if message is None:
            raise AssertionError(f"closed before {needle!r}; saw {seen[-500:]!r}")
        if isinstance(message, bytes):
            seen += message.decode(errors="replace")
    return seen


def next_status(ws: WebSocket, predicate, timeout: float = 10.0) -> dict:
    ws.sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = ws.recv()
        if isinstance(message, str):
            body = json.loads(message)
            if predicate(body):
                return body
    raise AssertionError("the expected message never came")


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.05)
