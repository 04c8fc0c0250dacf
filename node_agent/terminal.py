"""The shared terminal: the attendee's tmux session, relayed to the controller over a connection the agent opens.

The attendee's login on the VM runs inside one tmux session on a per-attendee
socket (``tmux -L labfleet``, made by the playbook's login hook); an SSH login
and the browser show the same session. When the controller asks (the
``terminal.open`` command over the existing long-poll), the agent:

- starts ``tmux attach`` **as the attendee** (``runuser``) in a pseudo-terminal,
  so whatever tmux opens it opens with the attendee's rights, never root's;
- opens a WebSocket to ``/api/agent/v1/nodes/<id>/terminal/<session>`` with its
  node token (the agent never listens on a port; TLS with the pinned CA);
- relays bytes both ways: output as binary messages prefixed with an 8-byte
  sequence number, input and resizes as small JSON text messages.

A dropped connection is retried for ``RESUME_WINDOW`` seconds while the tmux
client keeps running: output is kept in a bounded buffer with its sequence
numbers, the controller says from which number it needs output again
(``resume``), and nothing in between is lost. The relay ends when the
controller closes it (nobody is watching any more) or the tmux client exits.

Instructors' keystrokes arrive marked ``by: instructor``; they are written to
the terminal only while the attendee has consented (``lab consent yes`` on the
attendee socket), and consent ends when the attendee revokes it or the last
instructor leaves. The controller refuses them too; this is the second lock.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node_agent.logs import get_logger
from node_agent.websocket import WebSocket, WebSocketRefused

log = get_logger(__name__)

TMUX_SOCKET_NAME = "labfleet"  # -L: /tmp/tmux-<attendee uid>/labfleet, made and owned by the attendee's tmux
TMUX_SESSION = "lab"
RESUME_WINDOW = 60.0  # how long a dropped relay connection is retried before the relay ends
BUFFER_BYTES = 512 * 1024  # output kept for a resume
READ_CHUNK = 16384
MAX_INPUT = 64 * 1024
MAX_MISSES = 40  # connections answered 404 (another web process's session) before the relay gives up


def terminal_path(node_id: str, session_id: str) -> str:
    return f"/api/agent/v1/nodes/{node_id}/terminal/{session_id}"


class TerminalService:
    """Every relay of this node, and the attendee's consent (one per node: one attendee, one session)."""

    def __init__(self, *, controller_url: str, ca_file: Path | None, attendee_user: str,
                 credentials: Callable[[], tuple[str, str] | None],
                 argv: list[str] | None = None, tmux_command: Callable[[list[str]], None] | None = None) -> None:
        self.controller_url = controller_url.rstrip("/")
        self.ca_file = ca_file
        self.attendee_user = attendee_user
        self.credentials = credentials  # () -> (node_id, node_token), None before enrollment
        self.argv = argv or ["runuser", "-u", attendee_user, "--", "tmux", "-L", TMUX_SOCKET_NAME,
                             "new-session", "-A", "-s", TMUX_SESSION]
        self._tmux = tmux_command or self._tmux_as_attendee
        self.consent = False
        self._lock = threading.Lock()
        self._relays: dict[str, Relay] = {}

    # -- the controller's side ------------------------------------------------------

    def open(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            relay = self._relays.get(session_id)
            if relay is not None and relay.is_alive():
                return {"session": session_id, "started": False}
            relay = Relay(self, session_id)
            self._relays[session_id] = relay
        relay.start()
        return {"session": session_id, "started": True}

    def ended(self, relay: Relay) -> None:
        with self._lock:
            if self._relays.get(relay.session_id) is relay:
                del self._relays[relay.session_id]

    def close_all(self) -> None:
        with self._lock:
            relays = list(self._relays.values())
        for relay in relays:
            relay.stop()

    # -- the attendee's side (lab consent) --------------------------------------------

    def set_consent(self, value: bool) -> dict[str, Any]:
        with self._lock:
            self.consent = value
            relays = list(self._relays.values())
        for relay in relays:
            relay.send_json({"t": "consent", "value": value})
        self.notice("an instructor may type in this terminal (lab consent no stops it)" if value
                    else "instructors may no longer type in this terminal")
        log.info("terminal.consent", value=value)
        return {"consent": value, "relays": len(relays)}

    def instructors_changed(self, instructors: list[str], before: list[str]) -> None:
        joined = [n for n in instructors if n not in before]
        left = [n for n in before if n not in instructors]
        if joined:
            self.notice(f"instructor {', '.join(joined)} is watching this terminal")
        if left:
            self.notice(f"instructor {', '.join(left)} stopped watching")
        if not instructors and self.consent:
            self.consent = False  # consent is for the instructors who were there; it ends when they leave
            self.notice("instructors may no longer type in this terminal")

    def notice(self, text: str) -> None:
        """A line every client of the session sees (the browser and an SSH login): tmux's message line."""
        self._tmux(["display-message", "-d", "8000", f"[labfleet] {text}"])

    def _tmux_as_attendee(self, args: list[str]) -> None:
        argv = ["runuser", "-u", self.attendee_user, "--", "tmux", "-L", TMUX_SOCKET_NAME] + args
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=5, check=False, env=_env(self.attendee_user))


def _env(user: str) -> dict[str, str]:
    home = f"/home/{user}"
    with contextlib.suppress(KeyError, ImportError):
        import pwd

        home = pwd.getpwnam(user).pw_dir
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "xterm-256color",
            "LANG": os.environ.get("LANG", "C.UTF-8"), "HOME": home, "USER": user, "LOGNAME": user}


class Relay(threading.Thread):
    def __init__(self, service: TerminalService, session_id: str) -> None:
        super().__init__(name=f"terminal-{session_id[:8]}", daemon=True)
        self.service, self.session_id = service, session_id
        self._ws: WebSocket | None = None
        self._send_lock = threading.Lock()  # orders buffered output and live output on the connection
        self._buffer: collections.deque[tuple[int, bytes]] = collections.deque()
        self._buffered = 0
        self._next_seq = 0
        self._stopping = threading.Event()
        self._pid = 0
        self._fd = -1
        self._instructors: list[str] = []

    # -- life ------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._spawn()
        except OSError as exc:
            log.error("terminal.spawn_failed", error=str(exc))
            self.service.ended(self)
            return
        reader = threading.Thread(target=self._read_pty, name=f"{self.name}-pty", daemon=True)
        reader.start()
        log.info("terminal.started", session=self.session_id, pid=self._pid)
        try:
            self._connect_loop()
        finally:
            self._stopping.set()
            self._end_child()
            reader.join(timeout=2)
            self.service.ended(self)
            if self._instructors:
                self.service.instructors_changed([], self._instructors)
            log.info("terminal.ended", session=self.session_id)

    def stop(self) -> None:
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            ws.close()

    def _spawn(self) -> None:
        env = _env(self.service.attendee_user)
        pid, fd = pty.fork()
        if pid == 0:  # the child: only exec (a threaded parent)
            try:
                os.chdir(env["HOME"])
            except OSError:
                os.chdir("/")
            try:
                os.execvpe(self.service.argv[0], self.service.argv, env)
            finally:
                os._exit(127)
        self._pid, self._fd = pid, fd
        self._resize(80, 24)

    def _end_child(self) -> None:
        """Detach: the tmux client goes, the attendee's session (and an SSH login on it) stays."""
        if self._pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGHUP)
            for _ in range(50):
                with contextlib.suppress(ChildProcessError):
                    done, _status = os.waitpid(self._pid, os.WNOHANG)
                    if done:
                        break
                time.sleep(0.02)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self._pid, 0)
            self._pid = 0
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    # -- the terminal ------------------------------------------------------------------

    def _read_pty(self) -> None:
        while not self._stopping.is_set():
            try:
                data = os.read(self._fd, READ_CHUNK)
            except OSError:
                data = b""
            if not data:
                break
            with self._send_lock:
                seq = self._next_seq
                self._next_seq += 1
                self._buffer.append((seq, data))
                self._buffered += len(data)
                while self._buffered > BUFFER_BYTES and len(self._buffer) > 1:
                    self._buffered -= len(self._buffer.popleft()[1])
                self._send_output(seq, data)
        # The tmux client exited (session killed, or detached): end the relay.
        self.send_json({"t": "end", "reason": "the terminal session ended"})
        self.stop()

    def _send_output(self, seq: int, data: bytes) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            ws.send(struct.pack("!Q", seq) + data)
        except OSError:
            pass  # the connect loop notices and resumes from what the controller has

    def _resize(self, cols: int, rows: int) -> None:
        cols, rows = max(10, min(int(cols), 500)), max(4, min(int(rows), 200))
        with contextlib.suppress(OSError):
            fcntl.ioctl(self._fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _write(self, text: str) -> None:
        data = text.encode()[:MAX_INPUT]
        while data and self._fd >= 0:
            try:
                written = os.write(self._fd, data)
            except OSError:
                return
            data = data[written:]

    # -- the connection --------------------------------------------------------------------

    def send_json(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            return
        with contextlib.suppress(OSError):
            ws.send(json.dumps(message))

    def _connect_loop(self) -> None:
        lost_at: float | None = None
        delay, misses = 0.2, 0
        while not self._stopping.is_set():
            creds = self.service.credentials()
            if creds is None:
                return
            node_id, token = creds
            url = self.service.controller_url + terminal_path(node_id, self.session_id)
            try:
                ws = WebSocket.connect(url, headers={"Authorization": f"Bearer {token}"},
                                       ca_file=self.service.ca_file)
            except WebSocketRefused as exc:
                # 404: this web process does not hold the session (another worker does, or it ended):
                # a new connection may land on the right one. Anything else will not change.
                misses += 1
                if exc.status != 404 or misses > MAX_MISSES:
                    log.warning("terminal.refused", session=self.session_id, status=exc.status)
                    return
                self._stopping.wait(0.2)
                continue
            except OSError as exc:
                lost_at = lost_at or time.monotonic()
                if time.monotonic() - lost_at > RESUME_WINDOW:
                    log.warning("terminal.gave_up", session=self.session_id, error=str(exc))
                    return
                self._stopping.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            lost_at, delay, misses = None, 0.2, 0
            self._serve(ws)
            if not self._stopping.is_set():
                log.warning("terminal.connection_lost", session=self.session_id, action="resuming")
                lost_at = time.monotonic()

    def _serve(self, ws: WebSocket) -> None:
        with contextlib.suppress(OSError):
            ws.send(json.dumps({"t": "hello", "next": self._next_seq, "consent": self.service.consent}))
        try:
            while not self._stopping.is_set():
                message = ws.recv()
                if message is None:
                    self._stopping.set()  # the controller closed the relay: nobody is watching
                    break
                if isinstance(message, str):
                    self._handle(ws, json.loads(message))
        except (OSError, ValueError):
            pass
        finally:
            self._ws = None
            with contextlib.suppress(OSError):
                ws.close()

    def _handle(self, ws: WebSocket, message: Any) -> None:
        if not isinstance(message, dict):
            return
        kind = message.get("t")
        if kind == "resume":
            start = message.get("from", 0)
            with self._send_lock:
                self._ws = ws  # live output starts only now, after the replay, so order holds
                for seq, data in list(self._buffer):
                    if isinstance(start, int) and seq >= start:
                        self._send_output(seq, data)
        elif kind == "in" and isinstance(message.get("data"), str):
            if message.get("by") == "attendee":
                self._write(message["data"])
            elif self.service.consent:
                self._write(message["data"])
            else:
                log.warning("terminal.input_refused", session=self.session_id, reason="no consent")
                self.send_json({"t": "refused", "reason": "the attendee has not consented"})
        elif kind == "consent" and isinstance(message.get("value"), bool):
            self.service.set_consent(message["value"])  # the attendee answered on their page
        elif kind == "resize":
            with contextlib.suppress(TypeError, ValueError):
                self._resize(message.get("cols", 80), message.get("rows", 24))
        elif kind == "people":
            names = [n for n in message.get("instructors", []) if isinstance(n, str)][:20]
            before, self._instructors = self._instructors, names
            self.service.instructors_changed(names, before)
