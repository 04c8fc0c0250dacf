"""ControllerClient against a real local HTTP server: wire format, error mapping, sockets."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from node_agent.client import ControllerClient
from node_agent.errors import (
    AgentError,
    ControllerUnavailable,
    EnrollmentRefused,
    RequestRejected,
    Unauthorized,
)
from node_agent.protocol import CommandResult, EnrollRequest, Heartbeat


class ScriptedServer:
    """Answers each path with the (status, body) the test set; records what it received."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.hold_polls = False  # GET .../commands then blocks until `release` is set: a long-poll in progress
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                path = self.path.partition("?")[0]
                length = int(self.headers.get("Content-Length") or 0)
                server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                        "body": self.rfile.read(length), "peer": self.client_address})
                if path.endswith("/commands") and server.hold_polls:
                    server.release.wait(30)
                status, body = server.answers.get(path, (404, {"error": "not_found", "detail": path}))
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Any:
    s = ScriptedServer()
    yield s
    s.close()


HB = "/api/agent/v1/nodes/n1/heartbeat"
BEAT = Heartbeat(seq=1, digest="d", agent_version="0.1.0")


def test_heartbeat_sends_json_with_bearer_token_on_a_nodelay_keepalive_socket(server: ScriptedServer) -> None:
    server.answers[HB] = (200, {"send_state": True, "heartbeat_interval": 5})
    client = ControllerClient(server.url + "/", token="lfn_tok")

    answer = client.heartbeat("n1", BEAT)
    client.heartbeat("n1", BEAT)

    assert answer.send_state is True and answer.heartbeat_interval == 5.0
    first, second = server.requests
    assert first["method"] == "POST" and first["path"] == HB
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["Authorization"] == "Bearer lfn_tok"
    assert json.loads(first["body"]) == {"seq": 1, "digest": "d", "agent_version": "0.1.0"}
    assert first["peer"] == second["peer"]  # the same kept-alive connection
    sock = client._connection()[0].sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_enroll_sends_no_authorization_and_decodes_the_answer(server: ScriptedServer) -> None:
    server.answers["/api/agent/v1/enroll"] = (200, {"node_id": "n1", "node_token": "t", "name": "lab-1",
                                                    "heartbeat_interval": 5, "poll_wait": 25})
    client = ControllerClient(server.url, token="stale")

    answer = client.enroll(EnrollRequest(enrollment_token="e", machine_id="m", machine_secret="s", name="lab-1"))

    assert answer.node_id == "n1" and answer.poll_wait == 25.0
    assert "Authorization" not in server.requests[0]["headers"]


def test_poll_sends_wait_and_resync_as_query_parameters(server: ScriptedServer) -> None:
    server.answers["/api/agent/v1/nodes/n1/commands"] = (200, {"commands": [
        {"id": "c1", "kind": "ping", "args": {}, "deadline": "2099-01-01T00:00:00Z", "timeout": 10}]})
    client = ControllerClient(server.url, token="t")

    (command,) = client.poll("n1", wait=2.5, resync=True)
    client.poll("n1", wait=25, resync=False)

    assert command.id == "c1" and command.timeout == 10.0
    assert [r["path"] for r in server.requests] == ["/api/agent/v1/nodes/n1/commands?wait=2.5&resync=1",
                                                    "/api/agent/v1/nodes/n1/commands?wait=25&resync=0"]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_is_unauthorized(server: ScriptedServer, status: int) -> None:
    server.answers[HB] = (status, {"error": "unauthenticated", "detail": "node token revoked", "field": None})

    with pytest.raises(Unauthorized) as caught:
        ControllerClient(server.url, token="t").heartbeat("n1", BEAT)
    assert caught.value.status == status and caught.value.detail == "node token revoked"


def test_refused_enrollment_is_enrollment_refused(server: ScriptedServer) -> None:
    server.answers["/api/agent/v1/enroll"] = (401, {"error": "unauthenticated", "detail": "token used"})

    with pytest.raises(EnrollmentRefused, match="token used"):
        ControllerClient(server.url).enroll(EnrollRequest("e", "m", "s", "lab-1"))


@pytest.mark.parametrize(("status", "body"), [
    (503, {"error": "unavailable", "detail": "restarting"}),
    (500, b"<html>Internal Server Error</html>"),
    (429, {"error": "too_many_requests", "detail": "slow down"}),
    (200, b"<html>captive portal</html>"),
    (200, {"unexpected": True}),
])
def test_server_trouble_is_controller_unavailable(server: ScriptedServer, status: int, body: Any) -> None:
    server.answers[HB] = (status, body)

    with pytest.raises(ControllerUnavailable):
        ControllerClient(server.url, token="t").heartbeat("n1", BEAT)


def test_other_client_errors_carry_the_servers_error_body(server: ScriptedServer) -> None:
    server.answers["/api/agent/v1/nodes/n1/results"] = (
        400, {"error": "validation_failed", "detail": "too long", "field": "error"})

    with pytest.raises(RequestRejected) as caught:
        ControllerClient(server.url, token="t").post_result("n1", CommandResult(command_id="c1", ok=True))

    assert isinstance(caught.value, AgentError)
    assert (caught.value.status, caught.value.error, caught.value.field) == (400, "validation_failed", "error")
    assert "too long" in str(caught.value)


def test_connection_refused_is_controller_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once closed
    with pytest.raises(ControllerUnavailable, match="Connection refused"):
        ControllerClient(f"http://127.0.0.1:{port}", token="t").heartbeat("n1", BEAT)


def test_close_wakes_a_blocked_long_poll(server: ScriptedServer) -> None:
    path = "/api/agent/v1/nodes/n1/commands"
    server.answers[path] = (200, {"commands": []})
    server.hold_polls = True
    client = ControllerClient(server.url, token="t")
    errors: list[Exception] = []

    def poll() -> None:
        try:
            client.poll("n1", wait=25, resync=False)
        except ControllerUnavailable as exc:
            errors.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    client.close()
    thread.join(5)

    assert not thread.is_alive() and time.monotonic() - started < 1.0
    assert len(errors) == 1
