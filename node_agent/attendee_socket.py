"""The attendee's door to the agent: a Unix socket on the VM, where the kernel says who is calling.

The attendee is root-capable on their VM but runs ``lab`` as themselves: the
caller's uid comes from SO_PEERCRED (the kernel's word, not the request's), and
decides what it may do. The attendee account and root may read, check, get
hints and reset; only root may solve (an attendee asking the agent to do the
step for them would make checking meaningless). Everyone else is refused.
One JSON request per connection, one JSON answer, both bounded in size.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import struct
import threading
from pathlib import Path
from typing import Any

from node_agent.logs import get_logger

log = get_logger(__name__)

MAX_REQUEST_BYTES = 4096
ATTENDEE_ACTIONS = frozenset({"list", "status", "check", "hint", "instructions", "reset", "use"})
ROOT_ONLY_ACTIONS = frozenset({"solve"})


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class AttendeeServer:
    def __init__(self, path: Path, labs: Any) -> None:
        self.path, self.labs = Path(path), labs
        self._server: socketserver.ThreadingUnixStreamServer | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o755)
        if _answers(self.path):
            raise OSError(f"another agent already serves {self.path}; set attendee_socket to another path")
        self.path.unlink(missing_ok=True)
        labs = self.labs

        class Handler(socketserver.StreamRequestHandler):
            timeout = 30

            def handle(self) -> None:
                uid = peer_uid(self.connection)
                line = self.rfile.readline(MAX_REQUEST_BYTES + 1)
                answer = handle_request(labs, uid, line)
                self.wfile.write(json.dumps(answer).encode() + b"\n")

        self._server = socketserver.ThreadingUnixStreamServer(str(self.path), Handler)
        self._server.daemon_threads = True
        os.chmod(self.path, 0o666)  # anyone may connect; SO_PEERCRED decides what they may do
        threading.Thread(target=self._server.serve_forever, name="attendee-socket", daemon=True).start()
        log.info("attendee_socket.listening", path=str(self.path))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self.path.unlink(missing_ok=True)


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
    if action not in ATTENDEE_ACTIONS | ROOT_ONLY_ACTIONS:
        return _error("action", f"one of {', '.join(sorted(ATTENDEE_ACTIONS | ROOT_ONLY_ACTIONS))}")
    attendee_uid = _attendee_uid(labs)
    if uid != 0 and (uid != attendee_uid or action in ROOT_ONLY_ACTIONS):
        who = "the attendee account" if action not in ROOT_ONLY_ACTIONS else "root"
        log.warning("attendee_socket.refused", uid=uid, action=action)
        return {"ok": False, "error": "forbidden", "detail": f"{action} is for {who} only (you are uid {uid})"}
    for key in ("lab", "step", "to_step"):
        if request.get(key) is not None and not isinstance(request[key], str):
            return _error(key, "a string")
    try:
        result = _dispatch(labs, action, request)
    except (LookupError, KeyError) as exc:
        return {"ok": False, "error": "not_found", "detail": str(exc).strip("'\"")}
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


def _dispatch(labs: Any, action: str, request: dict[str, Any]) -> Any:
    if action == "list":
        return labs.list()
    if action == "use":
        return labs.use(_lab(labs, request, required=True))
    lab = _lab(labs, request)
    if action == "status":
        return {"lab": lab, "current": labs.list_one(lab)}
    if action == "check":
        return labs.check(lab, request.get("step"))
    if action == "solve":
        return labs.solve(lab, request.get("step"))
    if action == "reset":
        return labs.reset(lab, request.get("to_step"))
    if action == "instructions":
        return labs.instructions(lab, request.get("step"))
    if action == "hint":
        level = request.get("level", 1)
        if isinstance(level, bool) or not isinstance(level, int):
            raise ValueError("level: expected an integer")
        step = request.get("step") or labs.current_step(lab)
        return labs.hint(lab, step, level)
    raise ValueError(f"action {action!r} is not handled")


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
