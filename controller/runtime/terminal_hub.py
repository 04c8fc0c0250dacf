"""The shared terminals this web process relays: browsers on one side, the node's agent on the other.

In memory only: no terminal byte passes through Celery or the database
(docs/terminal.md). One session per node at a time; every browser on that
node's terminal (the attendee, watching instructors) shares it. The agent's
output arrives numbered; the hub remembers the next number it needs, so a
reconnecting agent resends exactly what was lost (``resume``). The last
screenfuls are kept so a browser that joins late sees the screen.

Instructors' keystrokes pass only while the attendee's consent (reported by
the agent, which holds it) stands; the agent checks it again itself.
While someone other than the attendee is attached the session is recorded
as asciicast v2 (``recordings.py``).
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

SCROLLBACK_BYTES = 256 * 1024  # replayed to a browser that joins a running session
RESUME_WINDOW = 60.0  # a session without its agent this long ends
PENDING_MAX = 256  # keystroke messages kept while the agent connects


class Socket(Protocol):
    def send(self, data: bytes | str) -> None: ...
    def close(self, reason: int | None = None, message: str | None = None) -> None: ...


@dataclass(eq=False)
class Viewer:
    ws: Socket
    role: str  # "attendee" or "instructor"
    name: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    typing: bool = False  # an instructor whose keystrokes were let through since the last consent

    def send(self, data: bytes | str) -> bool:
        with self.lock:
            try:
                self.ws.send(data)
                return True
            except Exception:  # a gone browser: its own loop notices and leaves
                return False


class Recorder(Protocol):
    def output(self, data: bytes) -> None: ...
    def input(self, data: str) -> None: ...
    def close(self) -> None: ...


@dataclass(eq=False)
class Session:
    node_id: str
    node_name: str
    id: str = field(default_factory=lambda: secrets.token_hex(16))
    viewers: list[Viewer] = field(default_factory=list)
    agent: Socket | None = None
    agent_lock: threading.Lock = field(default_factory=threading.Lock)
    next_seq: int = 0
    scrollback: collections.deque = field(default_factory=collections.deque)
    scrollback_bytes: int = 0
    consent: bool = False
    size: tuple[int, int] = (80, 24)
    agent_lost_at: float | None = None
    recorder: Recorder | None = None
    ended: bool = False
    pending: list = field(default_factory=list)  # keystrokes typed while the agent is (re)connecting

    def instructors(self) -> list[str]:
        return sorted({v.name for v in self.viewers if v.role == "instructor"})

    def status(self) -> dict[str, Any]:
        return {"t": "status", "session": self.id, "agent": self.agent is not None, "consent": self.consent,
                "instructors": self.instructors(), "attendee": any(v.role == "attendee" for v in self.viewers),
                "recording": self.recorder is not None}


class Elsewhere(Exception):
    """Another web process holds this node's terminal session: the browser reconnects (and lands elsewhere)."""


class Owners:
    """Which web process holds each node's session, in Redis (several web processes share one Redis).

    A key per node, ``labfleet:terminal:<node id>`` = this process's id, set only if absent and kept
    alive while the session lives; without Redis (one web process) every session is this process's.
    """

    TTL = 90  # seconds; the browsers' loops refresh it at least every RECEIVE_TIMEOUT (30 s)

    def __init__(self, redis_url: str = "") -> None:
        self._pid, self._me = 0, ""
        self._redis = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    @property
    def me(self) -> str:
        """This process's id, made after the fork: gunicorn builds the app once, before its workers."""
        if self._pid != os.getpid():
            self._pid, self._me = os.getpid(), secrets.token_hex(8)
        return self._me

    def claim(self, node_id: str) -> bool:
        if self._redis is None:
            return True
        key = f"labfleet:terminal:{node_id}"
        try:
            if self._redis.set(key, self.me, nx=True, ex=self.TTL):
                return True
            if self._redis.get(key) == self.me.encode():
                self._redis.expire(key, self.TTL)
                return True
            return False
        except Exception:  # Redis away: serve here rather than refuse every terminal
            return True

    def release(self, node_id: str) -> None:
        if self._redis is None:
            return
        key = f"labfleet:terminal:{node_id}"
        try:
            if self._redis.get(key) == self.me.encode():
                self._redis.delete(key)
        except Exception:
            pass


class TerminalHub:
    """``open_agent(session)`` asks the node's agent to connect (a ``terminal.open`` command);
    ``make_recorder(session)`` starts a recording; ``audit(actor, action, session, **detail)`` records."""

    def __init__(self, *, open_agent: Callable[[Session], None], make_recorder: Callable[[Session], Recorder],
                 audit: Callable[..., None], owners: Owners | None = None) -> None:
        self._open_agent, self._make_recorder, self._audit = open_agent, make_recorder, audit
        self.owners = owners or Owners()
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}

    def session_for(self, node_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(node_id)

    # -- browsers ----------------------------------------------------------------------

    def join(self, node_id: str, node_name: str, viewer: Viewer) -> Session:
        if not self.owners.claim(node_id):
            raise Elsewhere(node_id)
        with self._lock:
            session = self._sessions.get(node_id)
            fresh = session is None or session.ended
            if fresh:
                session = Session(node_id=node_id, node_name=node_name)
                self._sessions[node_id] = session
            assert session is not None
            session.viewers.append(viewer)
            backlog = b"".join(session.scrollback)
        if fresh:
            self._open_agent(session)
        if backlog:
            viewer.send(backlog)
        if viewer.role == "instructor":
            self._audit(f"instructor:{viewer.name}", "terminal.watch", session)
        self._people_changed(session)
        return session

    def leave(self, session: Session, viewer: Viewer) -> None:
        with self._lock:
            if viewer in session.viewers:
                session.viewers.remove(viewer)
            empty = not session.viewers
            if empty:
                session.ended = True
                if self._sessions.get(session.node_id) is session:
                    del self._sessions[session.node_id]
                    self.owners.release(session.node_id)
        if viewer.role == "instructor":
            self._audit(f"instructor:{viewer.name}", "terminal.leave", session)
        if empty:
            self._end(session)
        else:
            self._people_changed(session)

    def browser_message(self, session: Session, viewer: Viewer, message: Any) -> None:
        if not isinstance(message, dict):
            return
        kind = message.get("t")
        if kind == "in" and isinstance(message.get("data"), str):
            data = message["data"][:65536]
            if viewer.role == "instructor":
                if not session.consent:
                    viewer.send(json.dumps({"t": "refused", "reason": "the attendee has not consented to typing"}))
                    return
                if not viewer.typing:
                    viewer.typing = True
                    self._audit(f"instructor:{viewer.name}", "terminal.type", session)
            if session.recorder is not None:
                session.recorder.input(data)
            self._to_agent(session, {"t": "in", "by": viewer.role, "data": data})
        elif kind == "consent" and viewer.role == "attendee" and isinstance(message.get("value"), bool):
            # Asked on the attendee's page; the agent holds consent and reports it back (audited then).
            self._to_agent(session, {"t": "consent", "value": message["value"]})
        elif kind == "resize":
            cols, rows = message.get("cols"), message.get("rows")
            if not (isinstance(cols, int) and isinstance(rows, int)):
                return
            # The attendee's window decides the size; an instructor's only while the attendee is away.
            if viewer.role == "attendee" or not any(v.role == "attendee" for v in session.viewers):
                session.size = (max(10, min(cols, 500)), max(4, min(rows, 200)))
                self._to_agent(session, {"t": "resize", "cols": session.size[0], "rows": session.size[1]})

    # -- the agent ---------------------------------------------------------------------

    def agent_for(self, node_id: str, session_id: str) -> Session | None:
        with self._lock:
            session = self._sessions.get(node_id)
        if session is None or session.ended or not secrets.compare_digest(session.id, session_id):
            return None
        return session

    def agent_connected(self, session: Session, ws: Socket) -> None:
        with session.agent_lock:
            old, session.agent = session.agent, ws
            session.agent_lost_at = None
            ws.send(json.dumps({"t": "resume", "from": session.next_seq}))
            ws.send(json.dumps({"t": "resize", "cols": session.size[0], "rows": session.size[1]}))
            ws.send(json.dumps({"t": "people", "instructors": session.instructors()}))
            pending, session.pending = session.pending, []
            for message in pending:
                ws.send(json.dumps(message))
        if old is not None and old is not ws:
            try:
                old.close()
            except Exception:
                pass
        self._broadcast_status(session)

    def agent_message(self, session: Session, message: bytes | str) -> None:
        if isinstance(message, bytes):
            if len(message) < 8:
                return
            seq = int.from_bytes(message[:8], "big")
            if seq < session.next_seq:
                return  # already relayed before the connection dropped
            session.next_seq = seq + 1
            data = message[8:]
            session.scrollback.append(data)
            session.scrollback_bytes += len(data)
            while session.scrollback_bytes > SCROLLBACK_BYTES and len(session.scrollback) > 1:
                session.scrollback_bytes -= len(session.scrollback.popleft())
            if session.recorder is not None:
                session.recorder.output(data)
            for viewer in list(session.viewers):
                viewer.send(data)
            return
        try:
            body = json.loads(message)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        if body.get("t") == "consent" and isinstance(body.get("value"), bool):
            session.consent = body["value"]
            self._audit(f"attendee:{session.node_name}", "terminal.consent" if session.consent
                        else "terminal.consent_revoked", session)
            if not session.consent:
                for viewer in session.viewers:
                    viewer.typing = False
            self._broadcast_status(session)
        elif body.get("t") == "hello" and isinstance(body.get("consent"), bool):
            session.consent = body["consent"] and bool(session.instructors())
        elif body.get("t") == "refused":
            for viewer in session.viewers:
                if viewer.role == "instructor":
                    viewer.send(json.dumps({"t": "refused", "reason": str(body.get("reason", ""))[:200]}))
        elif body.get("t") == "end":
            self.end_session(session)

    def agent_disconnected(self, session: Session, ws: Socket) -> None:
        with session.agent_lock:
            if session.agent is ws:
                session.agent = None
                session.agent_lost_at = time.monotonic()
        if not session.ended:
            self._broadcast_status(session)

    def end_session(self, session: Session) -> None:
        with self._lock:
            session.ended = True
            if self._sessions.get(session.node_id) is session:
                del self._sessions[session.node_id]
                self.owners.release(session.node_id)
        for viewer in list(session.viewers):
            viewer.send(json.dumps({"t": "ended"}))
            try:
                viewer.ws.close()
            except Exception:
                pass
        self._end(session)

    # -- inside ------------------------------------------------------------------------

    def _end(self, session: Session) -> None:
        with session.agent_lock:
            agent, session.agent = session.agent, None
        if agent is not None:
            try:
                agent.close()
            except Exception:
                pass
        self._stop_recording(session)

    def _people_changed(self, session: Session) -> None:
        instructors = session.instructors()
        if instructors and session.recorder is None:
            session.recorder = self._make_recorder(session)
        elif not instructors:
            self._stop_recording(session)
            session.consent = False  # consent was for the instructors who were there
        self._to_agent(session, {"t": "people", "instructors": instructors})
        self._broadcast_status(session)

    def _stop_recording(self, session: Session) -> None:
        recorder, session.recorder = session.recorder, None
        if recorder is not None:
            recorder.close()

    def _to_agent(self, session: Session, message: dict[str, Any]) -> None:
        with session.agent_lock:
            agent = session.agent
            if agent is None:
                if message.get("t") == "in" and len(session.pending) < PENDING_MAX:
                    session.pending.append(message)  # sent once the agent (re)connects, in order
                return
            try:
                agent.send(json.dumps(message))
            except Exception:
                pass

    def _broadcast_status(self, session: Session) -> None:
        status = json.dumps(session.status())
        for viewer in list(session.viewers):
            viewer.send(status)
