"""ControllerClient against the real controller over real HTTP: wire format, error mapping, sockets.

What the real controller never does (5xx, HTML error pages, a 200 that is not the protocol, a request that
hangs) comes from ``MisbehavingServer``: a stand-in for a misbehaving proxy or server, which cannot be
provoked from the real controller.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
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
from tests.node_agent.conftest import LiveController
from tests.processes import Controller

BEAT = Heartbeat(seq=1, digest="d", agent_version="0.1.0")


def heartbeat_path(node_id: str) -> str:
    return f"/api/agent/v1/nodes/{node_id}/heartbeat"


def enroll_request(token: str, machine_id: str | None = None, secret: str = "machine-secret") -> EnrollRequest:
    return EnrollRequest(enrollment_token=token, machine_id=machine_id or uuid.uuid4().hex, machine_secret=secret,
                         name="lab-01")


# -- the real controller ---------------------------------------------------------


def test_heartbeat_sends_json_with_the_bearer_token(controller: LiveController, enroll) -> None:
    node = enroll("lab-01")
    client = ControllerClient(controller.url + "/", token=node.token)

    answer = client.heartbeat(node.id, BEAT)

    assert answer.send_state is True and answer.heartbeat_interval == 0.2  # the controller has no digest yet
    (request,) = controller.requests("POST", "/heartbeat")
    assert (request.path, request.status) == (heartbeat_path(node.id), 200)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == f"Bearer {node.token}"
    controller.app.extensions["labfleet"].heartbeats.flush()
    assert controller.api("GET", f"/api/v1/nodes/{node.id}")["last_seen_at"] is not None


def test_calls_share_one_kept_alive_nodelay_socket(tmp_path, database_url) -> None:
    """Against gunicorn, which serves the controller in production (werkzeug's server closes every connection)."""
    web = Controller(tmp_path / "web", database_url, redis_url="")
    web.data_dir.mkdir()
    web.init(enroll_uses=1)
    web.start_web()
    client = ControllerClient(web.url, ca_file=web.ca_file)
    try:
        enrolled = client.enroll(enroll_request(web.enrollment_token))
        sock = client._connection()[0].sock
        local_address = sock.getsockname()
        client.token = enrolled.node_token
        answers = [client.heartbeat(enrolled.node_id, BEAT) for _ in range(2)]

        assert answers[0].send_state is True and answers[1].send_state is True
        assert client._connection()[0].sock is sock and sock.getsockname() == local_address
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        client.close()
        web.stop()


def test_enroll_sends_no_authorization_and_decodes_the_answer(controller: LiveController) -> None:
    client = ControllerClient(controller.url, token="stale")

    answer = client.enroll(enroll_request(controller.enrollment_token()))

    assert answer.name == "lab-01" and answer.poll_wait == 1.0 and answer.heartbeat_interval == 0.2
    assert [n["id"] for n in controller.nodes()] == [answer.node_id]
    (request,) = controller.requests("POST", "/enroll")
    assert request.status == 200 and "Authorization" not in request.headers


def test_poll_sends_wait_and_resync_as_query_parameters(controller: LiveController, enroll) -> None:
    node = enroll("lab-01")
    command_id = controller.issue("ping", {"delay_ms": 5})
    client = ControllerClient(controller.url, token=node.token)

    (command,) = client.poll(node.id, wait=0.5, resync=False)
    again = client.poll(node.id, wait=0, resync=False)  # delivered: not offered again...
    (resynced,) = client.poll(node.id, wait=0, resync=True)  # ...unless the agent asks to resync

    assert command.id == resynced.id == command_id and again == []
    assert command.kind == "ping" and command.args == {"delay_ms": 5} and command.timeout == 60.0
    path = f"/api/agent/v1/nodes/{node.id}/commands"
    assert [r.path for r in controller.requests("GET", "/commands")] == [
        f"{path}?wait=0.5&resync=0", f"{path}?wait=0&resync=0", f"{path}?wait=0&resync=1"]


def test_unknown_node_token_is_unauthorized(controller: LiveController, enroll) -> None:
    node = enroll("lab-01")

    with pytest.raises(Unauthorized) as caught:
        ControllerClient(controller.url, token="lfn_not-a-token").heartbeat(node.id, BEAT)

    assert caught.value.status == 401 and caught.value.detail == "node token is unknown or revoked"


def test_another_nodes_token_is_unauthorized(controller: LiveController, enroll) -> None:
    mine, other = enroll("lab-01"), enroll("lab-02")

    with pytest.raises(Unauthorized) as caught:
        ControllerClient(controller.url, token=mine.token).heartbeat(other.id, BEAT)

    assert (caught.value.status, caught.value.error, caught.value.field) == (403, "forbidden", "node_id")
    assert caught.value.detail == "a node token may only act for its own node"


def test_refused_enrollment_is_enrollment_refused(controller: LiveController) -> None:
    token = controller.enrollment_token(uses=1)
    client = ControllerClient(controller.url)
    client.enroll(enroll_request(token))

    with pytest.raises(EnrollmentRefused, match="already used") as caught:
        client.enroll(enroll_request(token))
    assert caught.value.status == 401


def test_identity_conflict_is_enrollment_refused(controller: LiveController) -> None:
    client = ControllerClient(controller.url)
    request = enroll_request(controller.enrollment_token())
    first = client.enroll(request)

    with pytest.raises(EnrollmentRefused) as caught:  # another machine claiming this one's id
        client.enroll(enroll_request(controller.enrollment_token(), machine_id=request.machine_id, secret="other"))

    assert (caught.value.status, caught.value.error, caught.value.field) == (409, "conflict", "machine_id")
    assert [n["id"] for n in controller.nodes()] == [first.node_id]


@pytest.mark.parametrize(("result", "status", "error", "field", "detail"), [
    (CommandResult(command_id="{command}", ok=False, error="x" * 8193), 400, "validation_failed", "error", "8192"),
    (CommandResult(command_id="no-such-command", ok=True), 404, "not_found", "command_id", "no-such-command"),
])
def test_other_client_errors_carry_the_servers_error_body(controller: LiveController, enroll, result: CommandResult,
                                                          status: int, error: str, field: str, detail: str) -> None:
    node = enroll("lab-01")
    result.command_id = result.command_id.format(command=controller.issue("ping"))

    with pytest.raises(RequestRejected) as caught:
        ControllerClient(controller.url, token=node.token).post_result(node.id, result)

    assert isinstance(caught.value, AgentError)
    assert (caught.value.status, caught.value.error, caught.value.field) == (status, error, field)
    assert detail in str(caught.value)


# -- what only a misbehaving proxy or server does -----------------------------------


class MisbehavingServer:
    """A stand-in for a misbehaving proxy or server, which cannot be provoked from the real controller.

    Answers each path with the (status, body) the test set, whatever was asked; with ``hold_polls`` a
    GET .../commands hangs until ``release`` is set.
    """

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any]] = {}
        self.hold_polls = False
        self.release = threading.Event()
        self.holding = threading.Event()  # set once a poll is being held
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                path = self.path.partition("?")[0]
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if path.endswith("/commands") and server.hold_polls:
                    server.holding.set()
                    server.release.wait(30)
                status, body = server.answers.get(path, (404, {"error": "not_found", "detail": path}))
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except ConnectionError:
                    pass  # the client gave up (close() in a test)

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
def odd_server() -> Any:
    s = MisbehavingServer()
    yield s
    s.close()


@pytest.mark.parametrize(("status", "body"), [
    (503, {"error": "unavailable", "detail": "restarting"}),
    (502, b"<html>Bad Gateway</html>"),
    (500, b"<html>Internal Server Error</html>"),
    (429, {"error": "too_many_requests", "detail": "slow down"}),
    (200, b"<html>captive portal</html>"),
    (200, {"unexpected": True}),
])
def test_server_trouble_is_controller_unavailable(odd_server: MisbehavingServer, status: int, body: Any) -> None:
    odd_server.answers[heartbeat_path("n1")] = (status, body)

    with pytest.raises(ControllerUnavailable):
        ControllerClient(odd_server.url, token="t").heartbeat("n1", BEAT)


def test_connection_refused_is_controller_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once closed
    with pytest.raises(ControllerUnavailable, match="Connection refused"):
        ControllerClient(f"http://127.0.0.1:{port}", token="t").heartbeat("n1", BEAT)


def test_close_wakes_a_blocked_long_poll(odd_server: MisbehavingServer) -> None:
    path = "/api/agent/v1/nodes/n1/commands"
    odd_server.answers[path] = (200, {"commands": []})
    odd_server.hold_polls = True  # a server that hangs: the real one answers after `wait`, at most 1 s here
    client = ControllerClient(odd_server.url, token="t")
    errors: list[Exception] = []

    def poll() -> None:
        try:
            client.poll("n1", wait=25, resync=False)
        except ControllerUnavailable as exc:
            errors.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    assert odd_server.holding.wait(10), "the poll never reached the server"
    started = time.monotonic()
    client.close()
    thread.join(5)

    assert not thread.is_alive() and time.monotonic() - started < 1.0
    assert len(errors) == 1
