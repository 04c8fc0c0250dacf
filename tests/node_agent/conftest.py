"""Fixtures for the node agent's tests: state directories, a real local HTTP controller double, agent processes.

``FakeController`` is a real HTTP server on 127.0.0.1 speaking the agent
protocol from ``node_agent/protocol.py`` with in-memory state: the agent under
test talks real HTTP to it, as it will to the real controller.
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
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class FakeNode:
    node_id: str
    token: str
    name: str
    machine_id: str
    machine_secret: str
    digest: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    heartbeats: int = 0


class FakeController:
    """An in-memory controller: enrollment tokens, nodes, commands, results, and a request log."""

    def __init__(self) -> None:
        self.enrollment_tokens: set[str] = {"enroll-me"}
        self.nodes: dict[str, FakeNode] = {}
        self.commands: dict[str, dict[str, Any]] = {}  # id -> {"node_id", "message", "state"}
        self.results: dict[str, dict[str, Any]] = {}
        self.result_posts: list[str] = []
        self.polls: list[dict[str, str]] = []
        self.refused: list[str] = []  # paths answered 503 while `unavailable`
        self.heartbeat_interval = 0.2
        self.poll_wait = 2.0
        self.unavailable = False
        self.cond = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> FakeController:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- test-side API ----------------------------------------------------------

    def issue(self, node_id: str, kind: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> str:
        command_id = uuid.uuid4().hex
        message = {"id": command_id, "kind": kind, "args": args or {}, "deadline": "2099-01-01T00:00:00Z",
                   "timeout": timeout}
        with self.cond:
            self.commands[command_id] = {"node_id": node_id, "message": message, "state": "pending"}
            self.cond.notify_all()
        return command_id

    def forget_deliveries(self) -> None:
        """Pretend the controller crashed after handing out commands: offer them all again."""
        with self.cond:
            for command in self.commands.values():
                command["state"] = "pending"
            self.cond.notify_all()

    def revoke(self, node_id: str) -> None:
        with self.cond:
            self.nodes[node_id].token = "revoked-" + uuid.uuid4().hex

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("condition not met in time")
                self.cond.wait(min(left, 0.2))

    def only_node(self) -> FakeNode:
        (node,) = self.nodes.values()
        return node

    # -- protocol side ------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], token: str | None, body: Any) -> tuple[int, Any]:
        if self.unavailable:
            with self.cond:
                self.refused.append(path)
                self.cond.notify_all()
            return 503, {"error": "unavailable", "detail": "maintenance"}
        parts = path.strip("/").split("/")
        if path == "/api/agent/v1/enroll" and method == "POST":
            return self._enroll(body)
        if len(parts) != 6 or parts[:4] != ["api", "agent", "v1", "nodes"]:
            return 404, {"error": "not_found", "detail": path}
        node = self.nodes.get(parts[4])
        if node is None or token != node.token:
            return 401, {"error": "unauthenticated", "detail": "bad node token"}
        action = parts[5]
        with self.cond:
            try:
                if action == "heartbeat" and method == "POST":
                    node.heartbeats += 1
                    return 200, {"send_state": body["digest"] != node.digest,
                                 "heartbeat_interval": self.heartbeat_interval}
                if action == "state" and method == "PUT":
                    node.digest, node.state = body["digest"], body["state"]
                    return 200, {"ok": True, "duplicate": False}
                if action == "results" and method == "POST":
                    return self._result(body)
            finally:
                self.cond.notify_all()
        if action == "commands" and method == "GET":
            return self._poll(node, query)
        return 405, {"error": "method_not_allowed", "detail": method}

    def _enroll(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("enrollment_token") not in self.enrollment_tokens:
            return 401, {"error": "unauthenticated", "detail": "enrollment token is unknown", "field": None}
        with self.cond:
            node = next((n for n in self.nodes.values() if n.machine_id == body["machine_id"]), None)
            if node is None:
                node = FakeNode(uuid.uuid4().hex, "", body["name"], body["machine_id"], body["machine_secret"])
                self.nodes[node.node_id] = node
            elif node.machine_secret != body["machine_secret"]:
                return 409, {"error": "conflict", "detail": "other secret", "field": "machine_id"}
            node.token = "node-" + uuid.uuid4().hex
            self.cond.notify_all()
            return 200, {"node_id": node.node_id, "node_token": node.token, "name": node.name,
                         "heartbeat_interval": self.heartbeat_interval, "poll_wait": self.poll_wait}

    def _result(self, body: dict[str, Any]) -> tuple[int, Any]:
        command_id = body["command_id"]
        self.result_posts.append(command_id)
        if command_id not in self.commands:
            return 404, {"error": "not_found", "detail": "no such command", "field": "command_id"}
        duplicate = command_id in self.results
        self.results.setdefault(command_id, body)
        self.commands[command_id]["state"] = "done"
        return 200, {"ok": True, "duplicate": duplicate}

    def _poll(self, node: FakeNode, query: dict[str, str]) -> tuple[int, Any]:
        self.polls.append(query)
        resync = query.get("resync") == "1"
        deadline = time.monotonic() + float(query.get("wait", "0"))
        with self.cond:
            while True:
                open_states = ("pending", "delivered") if resync else ("pending",)
                batch = [c for c in self.commands.values()
                         if c["node_id"] == node.node_id and c["state"] in open_states]
                left = deadline - time.monotonic()
                if batch or left <= 0:
                    for c in batch:
                        c["state"] = "delivered"
                    return 200, {"commands": [c["message"] for c in batch]}
                self.cond.wait(left)


def _make_handler(controller: FakeController) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            status, answer = controller.handle(self.command, url.path, query, token, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

    return Handler


@pytest.fixture
def controller() -> Any:
    fake = FakeController().start()
    yield fake
    fake.stop()


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

    def wait_event(self, name: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {name!r} in the agent's log: {self.log_lines[-10:]}")

    def terminate(self, timeout: float = 10.0) -> int:
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
