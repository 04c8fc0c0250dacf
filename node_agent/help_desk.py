"""``lab help`` on the VM: the attendee's raised hand goes to the controller, the answer comes back.

The attendee socket asks ``raise_hand``; the agent sends it on its own
authenticated channel (the node token: the controller takes the node from
it). What the instructor does arrives as a ``help.notice`` command:
``notice`` keeps it in the agent's state directory (root's, shown by ``lab
status``) and writes one line to the notice file, which the attendee's prompt
hook (``/etc/profile.d/labfleet-help.sh``) prints once on their next prompt.

The notice file lives next to the attendee socket, in the agent's root-owned
directory, never in the attendee's home; it is written the way
docs/security.md asks for files a root process writes: the folder is opened
``O_NOFOLLOW|O_DIRECTORY`` and must be root's and not writable by others, the
new file is created ``O_EXCL|O_NOFOLLOW`` beside it and renamed over the old
one relative to that folder's descriptor, so no planted link is followed.
Instructor text is cut and its control characters escaped before any terminal
sees it.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node_agent.clock import utc_now
from node_agent.protocol import HELP_MESSAGE_MAX

NOTICE_FILE = "help-notice"


class HelpUnavailable(Exception):
    """The hand could not be raised now (not enrolled yet, controller away): the message says so."""


def printable(text: str, limit: int = HELP_MESSAGE_MAX) -> str:
    """One line a terminal shows as text: control characters (escape sequences, newlines) escaped."""
    text = text[:limit]
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def raise_hand(labs: Any, message: Any) -> dict[str, Any]:
    """The attendee socket's ``help`` action (the caller is the attendee or root: checked before)."""
    if not isinstance(message, str):
        raise ValueError("message: expected a string")
    if len(message) > HELP_MESSAGE_MAX:
        raise ValueError(f"message: at most {HELP_MESSAGE_MAX} characters")
    desk = getattr(labs, "help_desk", None)
    if desk is None:
        raise HelpUnavailable("this agent cannot reach an instructor (no controller): raise your hand in the room")
    return desk.raise_hand(labs, message)


class HelpDesk:
    def __init__(self, state_dir: Path, notice_path: Path, send: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.path = Path(state_dir) / "help.json"
        self.notice_path = Path(notice_path)
        self._send = send
        self._lock = threading.Lock()

    # -- the attendee's side -------------------------------------------------------

    def raise_hand(self, labs: Any, message: str) -> dict[str, Any]:
        lab = labs.current_lab()
        step = labs.current_step(lab) if lab else None
        reason = ""
        if lab and step:
            reason = str(labs.progress().get(lab, {}).get(step, {}).get("reason") or "")[:500]
        body = {"lab": lab, "step": step, "reason": reason, "message": message[:HELP_MESSAGE_MAX]}
        answer = self._send(body)
        with self._lock:
            state = self._load()
            if state.get("id") != answer["id"]:
                state = {"id": answer["id"], "raised_at": utc_now()}
            state.update(state=answer["state"], lab=lab, step=step, message=body["message"])
            self._save(state)
        return {"id": answer["id"], "state": answer["state"], "lab": lab, "step": step, "reason": reason}

    def view(self) -> dict[str, Any] | None:
        """What ``lab status`` shows: the hand that is up (or was just resolved), and the last answer."""
        with self._lock:
            state = self._load()
        return state or None

    # -- the instructor's side (a help.notice command) ------------------------------

    def notice(self, help_id: str, event: str, by: str, text: str) -> dict[str, Any]:
        by, text = printable(by, 120), printable(text)
        with self._lock:
            state = self._load()
            if state.get("id") != help_id:
                state = {"id": help_id}
            if event == "claimed":
                state.update(state="claimed", claimed_by=by)
                line = f"{by} is coming to help you."
            elif event == "reply":
                state.update(reply=text, replied_by=by)
                line = f"{by}: {text}"
            else:
                state.update(state="resolved", resolved_by=by)
                line = f"{by} marked your help request resolved."
            state["updated_at"] = utc_now()
            self._save(state)
            serial = f"{help_id[:8]}-{event}-{state['updated_at']}"
            write_notice(self.notice_path, f"{serial}\t{line}\n")
        return {"shown": line}

    # -- storage ----------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.path)


def write_notice(path: Path, content: str) -> None:
    """Replace ``path`` (0644) with ``content``, following no link, in a folder only root may write."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    dir_fd = os.open(path.parent, flags)
    try:
        info = os.fstat(dir_fd)
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(f"{path.parent}: must be the agent's own folder, writable by it only")
        tmp = f".{path.name}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                     dir_fd=dir_fd)
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, content.encode())
        finally:
            os.close(fd)
        os.rename(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def help_lines(state: dict[str, Any] | None, *, raised: bool = False) -> str:
    """What ``lab help`` and ``lab status`` print about the raised hand (empty when there is none)."""
    if not state:
        return ""
    if raised:
        where = f" about {state['lab']}/{state['step']}" if state.get("lab") else ""
        return (f"Your hand is up{where}: your instructor sees it in their help queue.\n"
                f"Their answer will show here in `lab status` and on your next prompt.")
    lines = ["", f"Help request: {state.get('state', 'open')}"]
    if state.get("state") == "claimed" and state.get("claimed_by"):
        lines.append(f"  {state['claimed_by']} is coming to help you.")
    if state.get("reply"):
        lines.append(f"  {state.get('replied_by') or 'instructor'}: {state['reply']}")
    if state.get("state") == "resolved" and state.get("resolved_by"):
        lines.append(f"  resolved by {state['resolved_by']}")
    return "\n".join(lines)
