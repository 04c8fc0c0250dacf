"""The agent's HTTP client for the controller's agent API (protocol.py), over http.client.

One keep-alive connection per thread: the long-poll holds its connection for
up to ``wait`` seconds, so heartbeats and results must not queue behind it.
Every socket gets TCP_NODELAY: without it a request whose headers and body
leave in separate segments waits ~40 ms for a delayed ACK (docs/benchmarks.md).

Errors become the agent's exceptions here and nowhere else:
network errors, 408, 429, 5xx and garbled answers → ControllerUnavailable (retry);
401/403 → Unauthorized (EnrollmentRefused on enroll); other 4xx → RequestRejected.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from node_agent import __version__
from node_agent.errors import (
    ControllerUnavailable,
    EnrollmentRefused,
    RequestRejected,
    Unauthorized,
)
from node_agent.protocol import (
    Ack,
    CommandBatch,
    CommandMessage,
    CommandResult,
    EnrollRequest,
    EnrollResponse,
    Heartbeat,
    HeartbeatResponse,
    HelpRaised,
    HelpRequest,
    ProtocolError,
    StateReport,
    commands_path,
    decode,
    encode,
    enroll_path,
    heartbeat_path,
    help_path,
    results_path,
    state_path,
)
from node_agent.tls import client_context, describe_failure

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
POLL_TIMEOUT_MARGIN = 10.0  # the controller answers an empty long-poll after `wait`; allow it this long
_RETRYABLE_STATUS = {408, 429}
# Errors that mean "the server closed the idle keep-alive connection before we reused it".
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class _TunedConnection:
    """TCP_NODELAY on every socket; ``timeout`` bounds the connect, ``read_timeout`` each answer."""

    read_timeout: float | None = None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
        if self.read_timeout is not None:
            self.sock.settimeout(self.read_timeout)  # type: ignore[attr-defined]


class _HTTPConnection(_TunedConnection, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_TunedConnection, http.client.HTTPSConnection):
    pass


class ControllerClient:
    """Calls to the controller on behalf of one node. Thread-safe: each thread has its own connection."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 ca_file: Path | None = None) -> None:
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        # https: the controller's certificate must chain to ca_file (else the system's CAs) and name this host.
        self._ca_file = ca_file
        self._tls = client_context(ca_file) if self._https else None
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._local = threading.local()
        self._all: set[http.client.HTTPConnection] = set()
        self._all_lock = threading.Lock()
        self._closed = False

    # -- the API -----------------------------------------------------------------

    def enroll(self, request: EnrollRequest) -> EnrollResponse:
        """Join the event; any refusal (bad, used or expired token, identity conflict) is EnrollmentRefused."""
        try:
            data = self._request("POST", enroll_path(), encode(request), auth=False)
        except RequestRejected as exc:
            raise EnrollmentRefused(exc.status, exc.error, exc.detail, exc.field) from None
        return _decode(EnrollResponse, data)

    def heartbeat(self, node_id: str, beat: Heartbeat) -> HeartbeatResponse:
        return _decode(HeartbeatResponse, self._request("POST", heartbeat_path(node_id), encode(beat)))

    def put_state(self, node_id: str, report: StateReport) -> Ack:
        return _decode(Ack, self._request("PUT", state_path(node_id), encode(report)))

    def poll(self, node_id: str, wait: float, resync: bool) -> list[CommandMessage]:
        """Commands for this node, waiting up to ``wait`` s for one. ``resync`` asks for every open command again."""
        query = urlencode({"wait": f"{wait:g}", "resync": "1" if resync else "0"})
        data = self._request("GET", f"{commands_path(node_id)}?{query}", None, timeout=wait + POLL_TIMEOUT_MARGIN)
        return _decode(CommandBatch, data).commands

    def post_result(self, node_id: str, result: CommandResult) -> Ack:
        return _decode(Ack, self._request("POST", results_path(node_id), encode(result)))

    def raise_hand(self, node_id: str, request: HelpRequest) -> HelpRaised:
        return _decode(HelpRaised, self._request("POST", help_path(node_id), encode(request)))

    def close(self) -> None:
        """Shut every connection down, waking any thread blocked on one (its call raises ControllerUnavailable).

        The client stays closed: later calls raise ControllerUnavailable at once.
        """
        with self._all_lock:
            self._closed = True
            connections = list(self._all)
            self._all.clear()
        for conn in connections:
            _abort(conn)

    # -- transport -----------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, auth: bool = True, timeout: float | None = None
    ) -> Any:
        payload = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": f"labfleet-agent/{__version__}"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        status, raw = self._exchange(method, self._prefix + path, payload, headers, timeout or self.timeout)
        return _interpret(method, path, status, raw)

    def _exchange(
        self, method: str, path: str, payload: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, bytes]:
        conn, reused = self._connection()
        try:
            try:
                return _send(conn, method, path, payload, headers, timeout)
            except _STALE_CONNECTION:
                if not reused or self._closed:
                    raise
                conn.close()  # the server dropped the idle connection; one fresh try is safe (all calls are idempotent)
                return _send(conn, method, path, payload, headers, timeout)
        except ssl.SSLError as exc:
            self._discard(conn)
            raise ControllerUnavailable(f"{method} {path}: {describe_failure(exc, self._ca_file)}") from exc
        except (OSError, http.client.HTTPException) as exc:
            self._discard(conn)
            raise ControllerUnavailable(f"{method} {path}: {_describe(exc)}") from exc

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None:
            return conn, True
        if conn is None:
            if self._https:
                conn = _HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._tls)
            else:
                conn = _HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
        with self._all_lock:
            if self._closed:
                raise ControllerUnavailable("client closed")
            self._all.add(conn)
        return conn, False

    def _discard(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        with self._all_lock:
            self._all.discard(conn)


def _send(
    conn: http.client.HTTPConnection, method: str, path: str, payload: bytes | None, headers: dict[str, str],
    timeout: float,
) -> tuple[int, bytes]:
    conn.read_timeout = timeout  # type: ignore[attr-defined]
    if conn.sock is not None:
        conn.sock.settimeout(timeout)
    conn.request(method, path, body=payload, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def _interpret(method: str, path: str, status: int, raw: bytes) -> Any:
    if 200 <= status < 300:
        try:
            return json.loads(raw) if raw else {}
        except ValueError as exc:
            raise ControllerUnavailable(f"{method} {path}: answer {status} is not JSON: {raw[:200]!r}") from exc
    if status >= 500 or status in _RETRYABLE_STATUS:
        raise ControllerUnavailable(f"{method} {path}: controller answered {status}: {_detail(raw)}")
    body = _error_body(raw)
    error, detail, field = body.get("error", f"http_{status}"), body.get("detail", _detail(raw)), body.get("field")
    if status in (401, 403):
        raise Unauthorized(status, str(error), str(detail), field if isinstance(field, str) else None)
    if 300 <= status < 400:  # never followed: a redirect would resend the bearer token elsewhere
        raise RequestRejected(status, "redirect", "the controller redirected; use the final URL as controller_url")
    raise RequestRejected(status, str(error), str(detail), field if isinstance(field, str) else None)


def _error_body(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _detail(raw: bytes) -> str:
    body = _error_body(raw)
    if "detail" in body:
        return str(body["detail"])
    return raw[:200].decode(errors="replace")


def _decode(cls: type[T], data: Any) -> T:
    try:
        return decode(cls, data)
    except ProtocolError as exc:
        raise ControllerUnavailable(f"unexpected answer from the controller: {exc}") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _abort(conn: http.client.HTTPConnection) -> None:
    # shutdown(2) wakes a thread blocked in recv on this socket (close alone does not). The
    # connection object itself is left to its own thread: http.client is not safe to close
    # from another thread mid-response; the owner sees the error and discards it.
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
