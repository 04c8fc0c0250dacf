"""Fixtures for the node agent's tests: the real controller over real HTTP, state directories, agent processes.

``controller`` is the real controller (``controller.create_app``) on this test's real database (SQLite, or
PostgreSQL with ``LABFLEET_TEST_DATABASE=postgresql``), served by werkzeug's threaded HTTP server on a fixed
loopback port. ``controller.stop()`` is an outage as the agent sees it: the port refuses connections and open
ones drop. ``controller.start()`` serves the same app on the same port again, which is how a restarted
controller looks to the agent. werkzeug's server closes each connection after one answer, so keep-alive is
checked against gunicorn, the production server, in test_client.py. Instructor actions go through the app's
real instructor API (in-process, so they also work during an outage, like a second web process would);
outcomes are read from that API, the database and the server's access log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from controller import states
from controller.models import Command, utcnow
from controller.settings import Settings, settings_for_tests
from tests.processes import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
WAIT = 30.0  # generous: these tests must pass on a loaded 2-core machine


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "controller_settings(**overrides): other settings for the test's controller")


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Settings:
    """The controller's settings for agent tests (overrides tests/conftest.py's): beats every 0.2 s,
    long-polls held at most 1 s, and no time-based redelivery within a test, so a delivered command is
    offered again only when the agent asks to resync (or a test resets it to pending).
    ``@pytest.mark.controller_settings(name=value)`` changes them for one test."""
    marker = request.node.get_closest_marker("controller_settings")
    overrides = {"heartbeat_interval": 0.2, "poll_wait_max": 1, "redeliver_after": 3600,
                 **(marker.kwargs if marker else {})}
    return settings_for_tests(tmp_path / "data", database_url=database_url, **overrides)


@dataclass(frozen=True)
class Request:
    """One line of the HTTP server's access log."""

    method: str
    path: str  # with the query string
    status: int
    headers: dict[str, str]
    peer: tuple[str, int]


class LiveController:
    """The real controller app served over real HTTP on ``url``; ``stop()``/``start()`` for outages."""

    def __init__(self, app: Any, seed: Any, port: int) -> None:
        self.app = app
        self.seed = seed
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.access_log: list[Request] = []
        self._instructor = app.test_client()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._request_threads: set[threading.Thread] = set()
        self._closing = False
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- serving ----------------------------------------------------------------

    def start(self) -> LiveController:
        assert self._server is None, "already serving"
        with self._lock:
            self._closing = False
        # BaseWSGIServer.allow_reuse_address is True: the port can be bound again right after stop().
        server = make_server("127.0.0.1", self.port, self.app, threaded=True, request_handler=_handler_for(self))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="controller-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port and drop every open connection (an in-flight long-poll included).

        Returns once every request thread of this server has ended, so nothing it started is still running.
        """
        server, thread = self._server, self._thread
        assert server is not None and thread is not None, "not serving"
        with self._lock:
            self._closing = True
            for conn in self._connections:
                _abort(conn)
        server.shutdown()  # then serve_forever closes the listening socket
        thread.join(WAIT)
        # Request threads are daemons, which server_close() does not wait for: a long-poll whose client
        # is gone still runs until its `wait` ends. Wait for them, so none outlives the outage.
        give_up = time.monotonic() + WAIT
        with self._lock:
            request_threads = list(self._request_threads)
        for request_thread in request_threads:
            request_thread.join(max(0.0, give_up - time.monotonic()))
        assert not thread.is_alive() and not any(t.is_alive() for t in request_threads), \
            "the controller's HTTP server did not stop"
        self._server = self._thread = None

    @property
    def serving(self) -> bool:
        return self._server is not None

    def _opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)
            self._request_threads = {t for t in self._request_threads if t.is_alive()}
            self._request_threads.add(threading.current_thread())
            if self._closing:
                _abort(conn)

    def _closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _record(self, request: Request) -> None:
        with self._lock:
            self.access_log.append(request)

    def requests(self, method: str, path_suffix: str, since: int = 0) -> list[Request]:
        """Access-log entries for ``method`` on paths ending with ``path_suffix`` (query ignored)."""
        with self._lock:
            log = self.access_log[since:]
        return [r for r in log if r.method == method and r.path.partition("?")[0].endswith(path_suffix)]

    # -- what an instructor does ------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = self._instructor.open(path, method=method, json=body, headers=self.seed.auth)
        assert response.status_code == expect, (response.status_code, response.json)
        return response.json

    def enrollment_token(self, uses: int = 1) -> str:
        return self.seed.enrollment_token(uses=uses)

    def issue(self, kind: str, args: dict[str, Any] | None = None, node: str = "lab-01", **options: Any) -> str:
        """Issue one command to ``node`` through the instructor API; returns the command id."""
        body = {"kind": kind, "args": args or {}, "nodes": [node], **options}
        (command,) = self.api("POST", "/api/v1/commands", body, expect=201)["commands"]
        return command["id"]

    def command(self, command_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v1/commands/{command_id}")

    def wait_result(self, command_id: str) -> dict[str, Any]:
        """The stored result of ``command_id``, once the agent has posted it."""
        return wait_until(lambda: self.command(command_id)["result"], timeout=WAIT,
                          what=f"the result of command {command_id}")

    def nodes(self) -> list[dict[str, Any]]:
        return self.api("GET", "/api/v1/nodes")["nodes"]

    def node(self, name: str = "lab-01") -> dict[str, Any]:
        """The node called ``name``, with its state snapshot."""
        return self.api("GET", f"/api/v1/nodes/{name}")

    def wait_node(self, name: str = "lab-01") -> dict[str, Any]:
        """The node called ``name``, once it has enrolled."""
        wait_until(lambda: any(n["name"] == name for n in self.nodes()), timeout=WAIT, what=f"node {name}")
        return self.node(name)

    def revoke(self, name: str = "lab-01") -> None:
        self.api("POST", f"/api/v1/nodes/{name}/revoke")

    def audit(self, action: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/v1/audit?action={action}&limit=1000")["entries"]

    # -- database states a controller crash leaves behind -----------------------

    def forget_delivery(self, command_id: str) -> None:
        """The controller lost track of handing this command out (it crashed): it is pending again."""
        with self._db().session() as session:
            session.get(Command, command_id).state = states.COMMAND_PENDING

    def lose_delivery(self, command_id: str) -> None:
        """The controller handed this command out, but the answer carrying it never reached the agent.

        This is what a long-poll cut by an outage leaves: the command marked delivered, as
        ``commands.take_for_delivery`` marks it.
        """
        with self._db().session() as session:
            command = session.get(Command, command_id)
            command.state = states.COMMAND_DELIVERED
            command.delivered_at = utcnow()
            command.delivery_count += 1

    def _db(self) -> Any:
        return self.app.extensions["labfleet"].db


def _handler_for(live: LiveController) -> type[WSGIRequestHandler]:
    class Handler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            live._opened(self.connection)

        def finish(self) -> None:
            live._closed(self.connection)
            super().finish()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            status = int(code) if str(code).isdigit() else 0
            headers = dict(getattr(self, "headers", None) or {})
            live._record(Request(self.command, self.path, status, headers, self.client_address))

    return Handler


def _abort(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@pytest.fixture
def controller(app: Any, seed: Any) -> Any:
    """The real controller, serving on a fixed free loopback port."""
    live = LiveController(app, seed, free_port()).start()
    yield live
    if live.serving:
        live.stop()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


class AgentProcess:
    """``python -m node_agent run ...`` as a real child process, its stderr (JSON logs) collected."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.log_lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node_agent", "run", *args], cwd=REPO, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"event": "raw", "line": line}
            with self._lock:
                self.log_lines.append(entry)

    def events(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.log_lines if e.get("event") == name]

    def wait_event(self, name: str, count: int = 1, timeout: float = WAIT) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {name!r} in the agent's log: {self.log_lines[-10:]}")

    def terminate(self, timeout: float = WAIT) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._reader.join(timeout)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_agent() -> Any:
    started: list[AgentProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> AgentProcess:
        agent = AgentProcess(list(args), env)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.kill()
