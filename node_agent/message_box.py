"""Messages and hints from the instructor (``labfleet message``), kept on the VM until the attendee saw them.

A ``message.notice`` command hands one message to ``MessageBox.receive``: it
is stored in ``<state_dir>/messages.json`` (root's, survives an agent
restart), its text cut and its control characters escaped, and a line
announcing it is written to the notice file the attendee's prompt hook reads
(the same root-written file as ``lab help`` answers: see help_desk.py).

The attendee sees it in ``lab status``, ``lab messages`` or on their next
prompt (the hook runs ``lab messages --new``); each of these marks what it
showed as read. The state snapshot carries the ids read (``messages.read``),
which is how the controller knows what is still unread.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from node_agent.clock import utc_now
from node_agent.help_desk import write_notice
from node_agent.protocol import MESSAGE_TEXT_MAX

KEPT = 200  # messages kept on disk (the oldest read ones go first)
REPORTED_READ = 100  # read ids in the state snapshot


def clean(text: str, limit: int) -> str:
    """Instructor text as a terminal shows it: line breaks and tabs become spaces, other control
    characters (escape sequences, bells, backspaces) are dropped."""
    text = "".join(" " if c in "\n\r\t" else c for c in text[:limit])
    return "".join(c for c in text if c.isprintable())


class MessageBox:
    def __init__(self, state_dir: Path, notice_path: Path) -> None:
        self.path = Path(state_dir) / "messages.json"
        self.notice_path = Path(notice_path)
        self._lock = threading.Lock()

    def receive(self, message_id: str, *, text: str, kind: str = "message", by: str = "", lab: str = "",
                step: str = "") -> dict[str, Any]:
        """Keep one message (a redelivered one is not added twice) and announce it to the prompt hook."""
        entry = {"id": message_id, "kind": kind, "by": clean(by, 120), "lab": clean(lab, 64),
                 "step": clean(step, 64), "text": clean(text, MESSAGE_TEXT_MAX),
                 "received_at": utc_now(), "read": False}
        with self._lock:
            messages = self._load()
            kept = next((m for m in messages if m.get("id") == message_id), None)
            if kept is not None:
                entry = kept
            else:
                messages.append(entry)
                while len(messages) > KEPT:
                    oldest_read = next((i for i, m in enumerate(messages) if m.get("read")), 0)
                    messages.pop(oldest_read)
                self._save(messages)
            unread = sum(1 for m in messages if not m.get("read"))
            write_notice(self.notice_path, f"msg-{message_id[:12]}\t{announce(entry)}"
                                           f"{f' ({unread} unread: lab messages)' if unread > 1 else ''}\n")
        return {"kept": True, "unread": unread}

    def unread(self, *, mark_read: bool) -> list[dict[str, Any]]:
        """The messages not yet seen, oldest first; ``mark_read``: they are being shown now."""
        with self._lock:
            messages = self._load()
            fresh = [dict(m) for m in messages if not m.get("read")]
            if mark_read and fresh:
                for m in messages:
                    m["read"] = True
                self._save(messages)
        return fresh

    def mark_read(self, message_id: str) -> dict[str, Any]:
        """One message seen (the attendee page's "Mark read"); ``found`` False when it is not kept here."""
        with self._lock:
            messages = self._load()
            found = next((m for m in messages if m.get("id") == message_id), None)
            if found is not None and not found.get("read"):
                found["read"] = True
                self._save(messages)
            unread = sum(1 for m in messages if not m.get("read"))
        return {"found": found is not None, "unread": unread}

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest ``limit`` messages, read or not (``lab messages --all``), oldest first."""
        with self._lock:
            return self._load()[-limit:]

    def snapshot(self) -> dict[str, Any]:
        """For the state report: how many are unread, and the ids the attendee has seen."""
        with self._lock:
            messages = self._load()
        read = [m["id"] for m in messages if m.get("read") and isinstance(m.get("id"), str)]
        return {"unread": len(messages) - len(read), "read": read[-REPORTED_READ:]}

    def _load(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []

    def _save(self, messages: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(messages))
        os.replace(tmp, self.path)


def announce(message: dict[str, Any]) -> str:
    """One line about a message (already escaped when it was kept)."""
    by = message.get("by") or "your instructor"
    if message.get("kind") == "hint":
        return f"hint from {by} for {message.get('lab')}/{message.get('step')}: {message.get('text')}"
    return f"message from {by}: {message.get('text')}"


def message_lines(messages: list[dict[str, Any]] | None, *, prefix: str = "") -> str:
    """What ``lab status`` and ``lab messages`` print about messages (empty when there are none)."""
    if not messages:
        return ""
    return "\n".join(f"{prefix}{announce(m)}" for m in messages)
