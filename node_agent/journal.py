"""The command journal: each command id runs at most once, and each result reaches the controller.

Delivery from the controller is at-least-once, so the agent must remember what
it ran. Files in the state directory:

- ``executed.log``: one command id per line, appended and fsynced *before* the
  command runs. A redelivered id found here is never run again.
- ``results/<id>.json``: ``{"delivered": bool, "result": CommandResult}``. The
  undelivered ones are the outbox, kept until the controller acknowledges them,
  across agent restarts.
- ``finished.log``: ids whose result was stored. It outlives pruned result
  files, so an old, pruned command is not mistaken for an interrupted one.

On opening, an id begun but never finished (the agent died mid-command) gets
a failed result in the outbox; the command is not re-run, since running it
twice could be worse than reporting that it may have half-run.
See docs/architecture.md.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from node_agent import atomic_file
from node_agent.clock import utc_now
from node_agent.errors import AgentError
from node_agent.protocol import CommandResult, ProtocolError, decode, encode

INTERRUPTED = "interrupted: the agent stopped while this command ran; not re-run"
# Ids become file names: no path separators, no leading dot, no newline.
_COMMAND_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class InvalidCommandId(AgentError):
    """A command id that cannot be journaled (it would not be a safe file name)."""


def check_command_id(command_id: str) -> None:
    """Raise InvalidCommandId unless ``command_id`` is 1-64 of ``[A-Za-z0-9._-]``, not starting with a dot."""
    if not isinstance(command_id, str) or not _COMMAND_ID.fullmatch(command_id):
        raise InvalidCommandId(f"command id {command_id!r} is not 1-64 characters of [A-Za-z0-9._-]")


class Journal:
    """The journal in ``state_dir``; thread-safe; one Journal per directory at a time."""

    def __init__(self, state_dir: Path, keep_ids: int = 10_000, keep_results: int = 1_000) -> None:
        self.state_dir = Path(state_dir)
        self.results_dir = self.state_dir / "results"
        self.results_dir.mkdir(mode=0o700, exist_ok=True)
        self.executed_log = self.state_dir / "executed.log"
        self.finished_log = self.state_dir / "finished.log"
        self.keep_ids = keep_ids
        self.keep_results = keep_results
        self._lock = threading.Condition()  # also signals an emptied outbox
        self._executed: dict[str, None] = dict.fromkeys(_read_ids(self.executed_log))
        self._finished: set[str] = set(_read_ids(self.finished_log))
        self._pending: dict[str, None] = {}
        self._delivered: dict[str, None] = {}
        self._resend: set[str] = set()  # requeued while a post of it may be in flight
        self._load_results()
        self._recover_interrupted()
        self._compact()
        self._prune()

    # -- the executed set ------------------------------------------------------

    def seen(self, command_id: str) -> bool:
        """True if ``command_id`` was begun, now or in an earlier life of the agent."""
        with self._lock:
            return command_id in self._executed

    def begin(self, command_id: str) -> None:
        """Record durably that ``command_id`` is about to run. Call before running it."""
        check_command_id(command_id)
        with self._lock:
            _append_line(self.executed_log, command_id, durable=True)
            self._executed[command_id] = None
            if len(self._executed) > self.keep_ids + self.keep_ids // 10:
                self._compact()

    # -- results and the outbox ------------------------------------------------

    def store_result(self, result: CommandResult) -> None:
        """Put ``result`` in the outbox (on disk) until ``mark_delivered``."""
        check_command_id(result.command_id)
        with self._lock:
            self._write_result(result, delivered=False)
            _append_line(self.finished_log, result.command_id, durable=False)
            self._finished.add(result.command_id)
            self._delivered.pop(result.command_id, None)
            self._pending[result.command_id] = None

    def result(self, command_id: str) -> CommandResult | None:
        """The stored result of ``command_id``, if any (pruned ones are gone)."""
        check_command_id(command_id)
        with self._lock:
            entry = self._read_result(command_id)
        return entry[1] if entry else None

    def pending_results(self) -> list[CommandResult]:
        """The outbox: stored results not yet acknowledged, oldest first."""
        results = []
        with self._lock:
            for command_id in list(self._pending):
                entry = self._read_result(command_id)
                if entry is None:  # removed behind our back: nothing left to deliver
                    del self._pending[command_id]
                else:
                    results.append(entry[1])
        return results

    def mark_delivered(self, command_id: str) -> None:
        """The controller acknowledged the result: take it out of the outbox."""
        with self._lock:
            if command_id in self._resend:  # the ack is for a post sent before the requeue: send again
                self._resend.discard(command_id)
                return
            entry = self._read_result(command_id)
            self._pending.pop(command_id, None)
            if not self._pending:
                self._lock.notify_all()
            if entry is None:
                return
            self._write_result(entry[1], delivered=True)
            self._delivered[command_id] = None
            if len(self._delivered) > self.keep_results + self.keep_results // 10:
                self._prune()

    def wait_outbox_empty(self, timeout: float) -> bool:
        """Block until every stored result is delivered, up to ``timeout`` s; True if the outbox is empty."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending, timeout)

    def requeue(self, command_id: str) -> bool:
        """Put a delivered result back in the outbox (the controller redelivered its command).

        True if the result is in the outbox now; False if there is none yet (still
        running) or any more (pruned).
        """
        with self._lock:
            if command_id in self._pending:
                self._resend.add(command_id)
                return True
            entry = self._read_result(command_id)
            if entry is None:
                return False
            self._write_result(entry[1], delivered=False)
            self._delivered.pop(command_id, None)
            self._pending[command_id] = None
            return True

    # -- internals (called with the lock held, or from __init__) ---------------

    def _path(self, command_id: str) -> Path:
        return self.results_dir / f"{command_id}.json"

    def _write_result(self, result: CommandResult, delivered: bool) -> None:
        atomic_file.write_json(self._path(result.command_id), {"delivered": delivered, "result": encode(result)})

    def _read_result(self, command_id: str) -> tuple[bool, CommandResult] | None:
        try:
            data = atomic_file.read_json(self._path(command_id))
            if data is None:
                return None
            return bool(data["delivered"]), decode(CommandResult, data["result"])
        except (ValueError, KeyError, TypeError, ProtocolError):
            return None  # atomic writes make this a file someone else put there: ignore it

    def _load_results(self) -> None:
        for leftover in self.results_dir.glob(".*.tmp"):  # a crash mid atomic write
            leftover.unlink(missing_ok=True)
        entries = []
        for path in self.results_dir.glob("*.json"):
            entry = self._read_result(path.stem)
            if entry:
                entries.append((path.stat().st_mtime_ns, path.stem, entry[0]))
        for _, command_id, delivered in sorted(entries):
            (self._delivered if delivered else self._pending)[command_id] = None
            self._finished.add(command_id)

    def _recover_interrupted(self) -> None:
        now = utc_now()
        for command_id in [cid for cid in self._executed if cid not in self._finished]:
            result = CommandResult(command_id=command_id, ok=False, error=INTERRUPTED, finished_at=now)
            self._write_result(result, delivered=False)
            _append_line(self.finished_log, command_id, durable=True)
            self._finished.add(command_id)
            self._pending[command_id] = None

    def _compact(self) -> None:
        """Keep the newest ``keep_ids`` ids in executed.log (and only those in finished.log)."""
        if len(self._executed) <= self.keep_ids:
            return
        kept = list(self._executed)[-self.keep_ids:]
        self._executed = dict.fromkeys(kept)
        self._finished &= set(kept) | set(self._pending)
        _rewrite_lines(self.executed_log, kept)
        _rewrite_lines(self.finished_log, sorted(self._finished))

    def _prune(self) -> None:
        """Delete delivered result files beyond the newest ``keep_results``."""
        excess = len(self._delivered) - self.keep_results
        if excess <= 0:
            return
        _fsync_file(self.finished_log)  # a pruned id must stay known as finished
        for command_id in list(self._delivered)[:excess]:
            self._path(command_id).unlink(missing_ok=True)
            del self._delivered[command_id]


def _read_ids(path: Path) -> list[str]:
    """The ids in ``path``, dropping a torn last line left by a crash mid-append."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(data))
    return [line for line in data.decode(errors="replace").splitlines() if line]


def _append_line(path: Path, line: str, durable: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{line}\n".encode())
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def _rewrite_lines(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    atomic_file.fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
