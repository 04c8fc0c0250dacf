"""The shared terminal's relay without a browser: a real controller on a real port, the agent's
TerminalService with a real shell in a pty and its own WebSocket, browsers as WebSocket clients.

Here the shell is this machine's own account (no tmux, no attendee account): what is tested is the
relay, the consent locks, the resume and the audit. tests/web/test_terminal_page.py drives the same
through Chromium on a provisioned fleet host.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from sqlalchemy import select

from controller.models import AuditEntry
from node_agent.websocket import WebSocketRefused
from tests.web.terminal_helpers import (
    attendee_cookie,
    browser_socket,
    deliver_open,
    instructor_cookie,
    local_terminal,
    next_status,
    read_until,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


def _actions(app) -> list[str]:
    with app.extensions["labfleet"].db.session() as db:
        return [e.action for e in db.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_attendee_types_instructor_watches_and_types_only_with_consent(app, live_server, agents, instructor):
    (node,) = agents([("t-1", "Ada")])
    notices: list[str] = []
    service = local_terminal(live_server, node, notices)
    cookie, _ = attendee_cookie(app, node.id)
    attendee = browser_socket(live_server, "/attendee/terminal/ws", cookie)
    try:
        deliver_open(node, service)
        next_status(attendee, lambda s: s.get("agent") is True)
        attendee.send(json.dumps({"t": "in", "data": "echo hello-$((6*7))\r"}))
        read_until(attendee, "hello-42")

        watcher = browser_socket(live_server, f"/terminal/{node.id}/ws", instructor_cookie(app, instructor))
        status = next_status(attendee, lambda s: s.get("instructors") == ["ada"])
        assert status["consent"] is False
        wait_for(lambda: any("ada is watching" in n for n in notices))  # the line in the attendee's terminal

        attendee.send(json.dumps({"t": "in", "data": "echo seen-by-$((1+1))\r"}))
        read_until(watcher, "seen-by-2")  # the instructor sees what the attendee types

        watcher.send(json.dumps({"t": "in", "data": "echo typed-by-instructor-$((2+3))\r"}))
        refused = next_status(watcher, lambda s: s.get("t") == "refused")
        assert "consented" in refused["reason"]

        service.set_consent(True)  # `lab consent yes` on the attendee socket
        next_status(watcher, lambda s: s.get("t") == "status" and s.get("consent") is True)
        watcher.send(json.dumps({"t": "in", "data": "echo typed-by-instructor-$((2+3))\r"}))
        read_until(attendee, "typed-by-instructor-5")

        service.set_consent(False)  # `lab consent no`
        next_status(watcher, lambda s: s.get("t") == "status" and s.get("consent") is False)
        watcher.send(json.dumps({"t": "in", "data": "echo after-revoke\r"}))
        next_status(watcher, lambda s: s.get("t") == "refused")
        watcher.close()
        next_status(attendee, lambda s: s.get("t") == "status" and s.get("instructors") == [])
    finally:
        attendee.close()
        service.close_all()
    actions = _actions(app)
    for action in ("terminal.watch", "terminal.consent", "terminal.type", "terminal.consent_revoked",
                   "terminal.leave"):
        assert action in actions


def test_the_agent_refuses_an_instructors_keystrokes_without_consent(app, live_server, agents, instructor):
    """The second lock: even a controller that let them through would find the agent refusing them."""
    (node,) = agents([("t-2", "Bob")])
    service = local_terminal(live_server, node)
    watcher = browser_socket(live_server, f"/terminal/{node.id}/ws", instructor_cookie(app, instructor))
    try:
        deliver_open(node, service)
        next_status(watcher, lambda s: s.get("agent") is True)
        hub = app.extensions["labfleet_terminal"]
        session = hub.session_for(node.id)
        session.consent = True  # a controller that wrongly believes in consent
        watcher.send(json.dumps({"t": "in", "data": "echo sneaked-$((3*3))\r"}))
        refused = next_status(watcher, lambda s: s.get("t") == "refused")
        assert "not consented" in refused["reason"]
    finally:
        watcher.close()
        service.close_all()


def test_a_dropped_agent_connection_resumes_without_losing_output(app, live_server, agents):
    (node,) = agents([("t-3", "Cy")])
    service = local_terminal(live_server, node)
    cookie, _ = attendee_cookie(app, node.id)
    attendee = browser_socket(live_server, "/attendee/terminal/ws", cookie)
    try:
        deliver_open(node, service)
        next_status(attendee, lambda s: s.get("agent") is True)
        relay = next(iter(service._relays.values()))
        wait_for(lambda: relay._ws is not None)
        dropped = relay._ws
        dropped.sock.shutdown(socket.SHUT_RDWR)  # the agent's connection drops mid-session
        # Output made while the connection is down is kept and resent on resume.
        relay._write("for i in 1 2 3; do echo line-$i-$((i*100)); sleep 0.2; done\r")
        seen = read_until(attendee, "line-3-300", timeout=20)
        assert "line-1-100" in seen and "line-2-200" in seen
        assert relay._ws is not dropped  # it came back on a new connection
    finally:
        attendee.close()
        service.close_all()


def test_only_the_nodes_token_opens_its_relay(app, live_server, agents):
    one, other = agents([("t-4", "Di"), ("t-5", "Ed")])
    cookie, _ = attendee_cookie(app, one.id)
    attendee = browser_socket(live_server, "/attendee/terminal/ws", cookie)
    try:
        session_id = deliver_open(one, local_terminal(live_server, one, argv=["sleep", "30"]))
        from node_agent.websocket import WebSocket

        with pytest.raises(WebSocketRefused) as refused:
            WebSocket.connect(f"{live_server}/api/agent/v1/nodes/{one.id}/terminal/{session_id}",
                              headers={"Authorization": f"Bearer {other.token}"})
        assert refused.value.status == 403
        with pytest.raises(WebSocketRefused) as refused:
            WebSocket.connect(f"{live_server}/api/agent/v1/nodes/{one.id}/terminal/{session_id}",
                              headers={"Authorization": "Bearer nope"})
        assert refused.value.status == 401
    finally:
        attendee.close()


def test_a_browser_from_another_site_or_without_a_session_is_refused(app, live_server, agents):
    (node,) = agents([("t-6", "Flo")])
    cookie, _ = attendee_cookie(app, node.id)
    from node_agent.websocket import WebSocket

    with pytest.raises(WebSocketRefused) as refused:
        WebSocket.connect(live_server + "/attendee/terminal/ws",
                          headers={"Cookie": cookie, "Origin": "http://evil.example"})
    assert refused.value.status == 403
    with pytest.raises(WebSocketRefused) as refused:
        WebSocket.connect(live_server + "/attendee/terminal/ws", headers={"Origin": live_server})
    assert refused.value.status == 401
    time.sleep(0)  # nothing was started: no session exists for the node
    assert app.extensions["labfleet_terminal"].session_for(node.id) is None


def test_one_web_process_relays_a_node_and_the_others_send_its_browsers_on():
    """Several web processes: the first to take a node's session holds it (Redis); a browser landing on
    another is told ``elsewhere`` and reconnects, until the session ends and any process may take it."""
    import uuid

    from controller.runtime.terminal_hub import Elsewhere, Owners, TerminalHub, Viewer

    url = "redis://127.0.0.1:6379/14"
    opened = []
    hubs = [TerminalHub(open_agent=opened.append, make_recorder=lambda s: None, audit=lambda *a, **k: None,
                        owners=Owners(url)) for _ in range(2)]
    node = uuid.uuid4().hex

    class Browser:
        def send(self, data):
            pass

        def close(self, *args):
            pass

    first = Viewer(ws=Browser(), role="attendee", name="Ada")
    session = hubs[0].join(node, "n-1", first)
    with pytest.raises(Elsewhere):
        hubs[1].join(node, "n-1", Viewer(ws=Browser(), role="instructor", name="ada"))
    assert len(opened) == 1  # one relay, one agent connection
    watcher = Viewer(ws=Browser(), role="instructor", name="ada")
    assert hubs[0].join(node, "n-1", watcher) is session  # the same session on the holding process
    hubs[0].leave(session, watcher)
    hubs[0].leave(session, first)
    hubs[1].join(node, "n-1", Viewer(ws=Browser(), role="attendee", name="Ada"))  # ended: free again
    assert len(opened) == 2
