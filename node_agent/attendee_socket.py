"""The attendee's door to the agent: a Unix socket on the VM, where the kernel says who is calling.

The attendee is root-capable on their VM but runs ``lab`` as themselves: the
caller's uid comes from SO_PEERCRED (the kernel's word, not the request's), and
decides what it may do. The attendee account and root may read, check, get
hints and reset; what the agent may do *for* a caller (solve, or reset to a
later step) is decided by the lab service from that uid. Everyone else is
refused as soon as they connect.
One JSON request per connection, one JSON answer, both bounded in size.

The door is bounded too, so no caller can make the agent pile up threads:
at most ``max_clients`` connections are served at once, and a connection past
that is answered at once with a one-line "busy" error and closed (never
queued). A client has ``client_timeout`` seconds to send its whole request and
again to take its whole answer; an idle or slow one is dropped. The socket has
its own threads and shares no lock with the heartbeat or the command poll.
See docs/security.md.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import struct
import threading
import time
from pathlib import Path
from typing import Any

from node_agent.help_desk import HelpUnavailable, raise_hand
from node_agent.labs.service import Caller, Forbidden
from node_agent.logs import get_logger

log = get_logger(__name__)

MAX_REQUEST_BYTES = 4096
ACTIONS = frozenset({"list", "status", "check", "hint", "instructions", "reset", "use", "solve", "help",
                     "messages", "consent"})
DEFAULT_MAX_CLIENTS = 16
DEFAULT_CLIENT_TIMEOUT = 5.0
LISTEN_BACKLOG = 64  # connections the kernel holds until the accept loop answers them (at once: serve or refuse)
BUSY = {"ok": False, "error": "busy", "detail": "agent busy, try again"}


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class AttendeeServer:
    def __init__(self, path: Path, labs: Any, *, max_clients: int = DEFAULT_MAX_CLIENTS,
                 client_timeout: float = DEFAULT_CLIENT_TIMEOUT) -> None:
        self.path, self.labs = Path(path), labs
        self.max_clients, self.client_timeout = max_clients, client_timeout
        self._server: _BoundedServer | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o755)
        if _answers(self.path):
            raise OSError(f"another agent already serves {self.path}; set attendee_socket to another path")
        self.path.unlink(missing_ok=True)
        self._server = _BoundedServer(str(self.path), self.labs, self.max_clients, self.client_timeout)
        os.chmod(self.path, 0o666)  # anyone may connect; SO_PEERCRED decides what they may do
        threading.Thread(target=self._server.serve_forever, name="attendee-socket", daemon=True).start()
        log.info("attendee_socket.listening", path=str(self.path), max_clients=self.max_clients,
                 client_timeout_s=self.client_timeout)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self.path.unlink(missing_ok=True)


class _BoundedServer(socketserver.ThreadingUnixStreamServer):
    """One thread per client, at most ``max_clients`` of them; the accept loop itself never waits on a client."""

    daemon_threads = True
    block_on_close = False  # stop() must not wait for a client, and no list of finished threads is kept
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, path: str, labs: Any, max_clients: int, client_timeout: float) -> None:
        self.labs, self.client_timeout = labs, client_timeout
        self._slots = threading.BoundedSemaphore(max_clients)
        super().__init__(path, socketserver.BaseRequestHandler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        uid = peer_uid(request)
        refusal = stranger_refusal(self.labs, uid)
        if refusal is None and not self._slots.acquire(blocking=False):
            refusal = BUSY
        if refusal is not None:
            log.warning("attendee_socket.refused", uid=uid, error=refusal["error"])
            _refuse(request, refusal)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            self._serve(request)
        except Exception:
            log.error("attendee_socket.crashed", exc_info=True)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def _serve(self, conn: socket.socket) -> None:
        uid = peer_uid(conn)
        line = _read_request(conn, time.monotonic() + self.client_timeout)
        if line is None:
            log.warning("attendee_socket.dropped", uid=uid, reason=f"no whole request within {self.client_timeout:g} s")
            _refuse(conn, {"ok": False, "error": "timeout",
                           "detail": f"the request did not arrive within {self.client_timeout:g} s"})
            return
        answer = handle_request(self.labs, uid, line)
        conn.settimeout(self.client_timeout)  # sendall's timeout is its whole send
        try:
            conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError as exc:
            log.warning("attendee_socket.dropped", uid=uid, reason=f"answer not taken: {exc}")


def _read_request(conn: socket.socket, deadline: float) -> bytes | None:
    """The request line (at most MAX_REQUEST_BYTES + 1 bytes, or what came before EOF); None past the deadline."""
    data = b""
    while b"\n" not in data and len(data) <= MAX_REQUEST_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        conn.settimeout(left)
        try:
            chunk = conn.recv(MAX_REQUEST_BYTES + 1 - len(data))
        except TimeoutError:
            return None
        except OSError:
            return b""
        if not chunk:
            break
        data += chunk
    return data.partition(b"\n")[0] + b"\n" if b"\n" in data else data


def _refuse(conn: socket.socket, answer: dict[str, Any]) -> None:
    """One error line, without ever waiting on the client, then the caller closes the connection."""
    try:
        conn.recv(MAX_REQUEST_BYTES + 1, socket.MSG_DONTWAIT)  # unread data would turn our close into a reset
    except OSError:
        pass
    try:
        conn.send(json.dumps(answer).encode() + b"\n", socket.MSG_DONTWAIT)
    except OSError:
        pass


def stranger_refusal(labs: Any, uid: int) -> dict[str, Any] | None:
    """The answer for a caller who is neither root nor the attendee account; None for those two."""
    if uid == 0 or uid == _attendee_uid(labs):
        return None
    return {"ok": False, "error": "forbidden",
            "detail": f"the lab agent serves the attendee account and root only (you are uid {uid})"}


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


def handle_request(labs: Any, uid: int, line: bytes) -> dict[str, Any]:
    """One request from a caller whose uid the kernel told us; always an answer, never an exception."""
    if len(line) > MAX_REQUEST_BYTES:
        return _error("request", f"too large: at most {MAX_REQUEST_BYTES} bytes")
    try:
        request = json.loads(line)
    except ValueError:
        return _error("request", "not a JSON object")
    if not isinstance(request, dict):
        return _error("request", "not a JSON object")
    action = request.get("action")
    if action not in ACTIONS:
        return _error("action", f"one of {', '.join(sorted(ACTIONS))}")
    refusal = stranger_refusal(labs, uid)
    if refusal is not None:
        log.warning("attendee_socket.refused", uid=uid, action=action)
        return refusal
    for key in ("lab", "step", "to_step", "message"):
        if request.get(key) is not None and not isinstance(request[key], str):
            return _error(key, "a string")
    try:
        result = _dispatch(labs, action, request, Caller(uid))
    except Forbidden as exc:
        log.warning("attendee_socket.refused", uid=uid, action=action)
        return {"ok": False, "error": "forbidden", "detail": str(exc)}
    except (LookupError, KeyError) as exc:
        return {"ok": False, "error": "not_found", "detail": str(exc).strip("'\"")}
    except HelpUnavailable as exc:
        return {"ok": False, "error": "unavailable", "detail": str(exc)}
    except ValueError as exc:
        return _error("request", str(exc))
    log.info("attendee_socket.served", uid=uid, action=action, lab=request.get("lab"))
    return {"ok": True, "result": result}


def _attendee_uid(labs: Any) -> int | None:
    lab = next(iter(labs.engine.catalog.labs.values()), None)
    if lab is None:
        return None
    try:
        return labs.engine.context(lab).attendee.uid
    except LookupError:
        return None


def _dispatch(labs: Any, action: str, request: dict[str, Any], caller: Caller) -> Any:
    if action == "list":
        return labs.list()
    if action == "use":
        return labs.use(_lab(labs, request, required=True))
    if action == "help":
        return raise_hand(labs, request.get("message") or "")
    if action == "messages":
        return _messages(labs, request)
    if action == "consent":
        value = request.get("value")
        if not isinstance(value, bool):
            raise ValueError("value: expected true or false")
        terminal = getattr(labs, "terminal", None)
        if terminal is None:
            raise LookupError("the shared terminal is not available on this VM")
        return terminal.set_consent(value)
    lab, request = _named_lab(labs, request) if action in ("check", "instructions", "hint") else (None, request)
    lab = lab or _lab(labs, request)
    if action == "status":
        box = labs.message_box
        return {"lab": lab, "current": labs.list_one(lab), "help": labs.help_desk and labs.help_desk.view(),
                "messages": box.unread(mark_read=True) if box else []}
    if action == "check":
        return labs.check(lab, request.get("step"))
    if action == "solve":
        return labs.solve(lab, request.get("step"), caller=caller)
    if action == "reset":
        return labs.reset(lab, request.get("to_step"), caller=caller)
    if action == "instructions":
        return labs.instructions(lab, request.get("step"))
    if action == "hint":
        level = request.get("level", 1)
        if isinstance(level, bool) or not isinstance(level, int):
            raise ValueError("level: expected an integer")
        step = request.get("step") or labs.current_step(lab)
        return labs.hint(lab, step, level)
    raise ValueError(f"action {action!r} is not handled")


def _messages(labs: Any, request: dict[str, Any]) -> dict[str, Any]:
    """``lab messages``: the unread ones, shown now (so read); ``all``: the recent ones, read or not."""
    box = labs.message_box
    if box is None:
        return {"messages": []}
    if request.get("all") is True:
        recent = box.recent()
        box.unread(mark_read=True)
        return {"messages": recent}
    return {"messages": box.unread(mark_read=True)}


def _named_lab(labs: Any, request: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """``lab check ns-uts``: an attendee who names a lab where a step goes means that lab, unless the
    current lab has a step of that name."""
    step = request.get("step")
    if request.get("lab") or not isinstance(step, str):
        return None, request
    ids = labs.catalog_ids()
    if step not in ids:
        return None, request
    current = labs.current_lab()
    if current is not None and step in ids.get(current, []):
        return None, request
    return step, {**request, "step": None}


def _lab(labs: Any, request: dict[str, Any], required: bool = False) -> str:
    lab = request.get("lab")
    if lab:
        return lab
    if required:
        raise ValueError("lab: required")
    current = labs.current_lab()
    if current is None:
        raise LookupError("no current lab: choose one with `lab use LAB` (see `lab list`)")
    return current


def _error(field: str, expected: str) -> dict[str, Any]:
    return {"ok": False, "error": "bad_request", "field": field, "detail": f"{field}: expected {expected}"}
