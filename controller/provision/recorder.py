"""Runner events into the database: one row per host and task, and each host's progress.

ansible-runner calls ``on_event`` for every event, ``on_status`` when the run
changes state and ``cancel_requested`` between reads of Ansible's output (at
least every ``pexpect_timeout``). Rows are written in small batches (every
``flush_every`` seconds), so a room of hosts does not cost a commit per event,
and the cancel flag is read from the database at most every ``cancel_every``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update

from controller.db import Database
from controller.models import ProvisionEvent, ProvisionHostStatus, ProvisionRun, utcnow
from controller.provision import states
from controller.provision.redact import Redactor

_OUTCOMES = {"runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped"}
MESSAGE_LIMIT = 2000


@dataclass
class HostProgress:
    host: str
    state: str = states.HOST_PENDING
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    tasks_done: int = 0
    current_task: str = ""
    failed_task: str = ""
    message: str = ""
    dirty: bool = field(default=False, repr=False)

    def values(self) -> dict[str, Any]:
        return {"state": self.state, "ok": self.ok, "changed": self.changed, "failed": self.failed,
                "unreachable": self.unreachable, "skipped": self.skipped, "tasks_done": self.tasks_done,
                "current_task": self.current_task[:255], "failed_task": self.failed_task[:255],
                "message": self.message, "updated_at": utcnow()}


@dataclass(frozen=True)
class TaskOutcome:
    host: str
    task: str
    status: str
    message: str


def outcome_of(event: dict[str, Any]) -> TaskOutcome | None:
    """The host, task and outcome of a runner event; None for events that are not a task's result."""
    kind = event.get("event")
    if kind not in _OUTCOMES:
        return None
    data = event.get("event_data") or {}
    res = data.get("res") if isinstance(data.get("res"), dict) else {}
    if kind == "runner_on_ok":
        status = states.EVENT_CHANGED if res.get("changed") else states.EVENT_OK
    elif kind == "runner_on_failed":
        status = states.EVENT_IGNORED if data.get("ignore_errors") else states.EVENT_FAILED
    elif kind == "runner_on_unreachable":
        status = states.EVENT_UNREACHABLE
    else:
        status = states.EVENT_SKIPPED
    message = _message(res) if status in (states.EVENT_FAILED, states.EVENT_UNREACHABLE,
                                          states.EVENT_IGNORED) else ""
    return TaskOutcome(host=str(data.get("host", "")), task=task_name(data), status=status, message=message)


def task_name(data: dict[str, Any]) -> str:
    task = str(data.get("task") or data.get("name") or "")
    role = data.get("role")
    return f"{role} : {task}" if role else task


def _message(res: dict[str, Any]) -> str:
    for item in res.get("results") or []:  # a loop: the first item that failed says why
        if isinstance(item, dict) and item.get("failed"):
            return _message(item)
    for key in ("msg", "stderr", "stdout", "censored"):
        value = res.get(key)
        if value:
            return str(value).strip()[:MESSAGE_LIMIT]
    return ""


class EventRecorder:
    def __init__(self, db: Database, run_id: str, hosts: list[str], redact: Redactor, *,
                 flush_every: float = 0.25, cancel_every: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.run_id = run_id
        self.redact = redact
        self.progress = {host: HostProgress(host) for host in hosts}
        self.stats: dict[str, Any] | None = None
        self.flush_every = flush_every
        self.cancel_every = cancel_every
        self.clock = clock
        self._rows: list[dict[str, Any]] = []
        self._seq = 0
        self._last_flush = clock()
        self._last_cancel_check = 0.0
        self._cancelled = False

    # -- ansible-runner handlers ------------------------------------------------
    def on_event(self, event: dict[str, Any]) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            self.stats = data
        elif kind == "runner_on_start":
            progress = self.progress.get(str(data.get("host", "")))
            if progress is not None:
                progress.state = states.HOST_RUNNING
                progress.current_task = self.redact(task_name(data))
                progress.dirty = True
        else:
            outcome = outcome_of(event)
            if outcome is not None:
                self._record(outcome)
        if self.clock() - self._last_flush >= self.flush_every:
            self.flush()
        return False  # nothing for ansible-runner to keep on disk: the database has it

    def on_status(self, data: dict[str, Any], runner_config: Any = None) -> None:
        if data.get("status") == "running":
            with self.db.session() as session:
                session.execute(update(ProvisionRun).where(ProvisionRun.id == self.run_id)
                                .values(state=states.RUN_RUNNING))

    def cancel_requested(self) -> bool:
        now = self.clock()
        if now - self._last_flush >= self.flush_every:
            self.flush()
        if not self._cancelled and now - self._last_cancel_check >= self.cancel_every:
            self._last_cancel_check = now
            with self.db.session() as session:
                flag = session.scalar(select(ProvisionRun.cancel_requested_at)
                                      .where(ProvisionRun.id == self.run_id))
            self._cancelled = flag is not None
        return self._cancelled

    # -- storing ------------------------------------------------------------------
    def _record(self, outcome: TaskOutcome) -> None:
        task, message = self.redact(outcome.task), self.redact(outcome.message)
        self._seq += 1
        self._rows.append({"run_id": self.run_id, "seq": self._seq, "host": outcome.host[:64], "task": task[:255],
                           "status": outcome.status, "message": message, "at": utcnow()})
        progress = self.progress.get(outcome.host)
        if progress is None:
            return
        progress.tasks_done += 1
        progress.dirty = True
        counter = {states.EVENT_OK: "ok", states.EVENT_CHANGED: "changed", states.EVENT_FAILED: "failed",
                   states.EVENT_UNREACHABLE: "unreachable", states.EVENT_SKIPPED: "skipped",
                   states.EVENT_IGNORED: "ok"}[outcome.status]
        setattr(progress, counter, getattr(progress, counter) + 1)
        if outcome.status == states.EVENT_CHANGED:
            progress.ok += 1  # Ansible counts a changed task as ok too
        if outcome.status in (states.EVENT_FAILED, states.EVENT_UNREACHABLE):
            progress.state = states.HOST_FAILED if outcome.status == states.EVENT_FAILED else states.HOST_UNREACHABLE
            progress.failed_task, progress.message = task, message

    def flush(self) -> None:
        rows, self._rows = self._rows, []
        dirty = [p for p in self.progress.values() if p.dirty]
        self._last_flush = self.clock()
        if not rows and not dirty:
            return
        with self.db.session() as session:
            if rows:
                session.execute(insert(ProvisionEvent), rows)
            for progress in dirty:
                progress.dirty = False
                session.execute(update(ProvisionHostStatus)
                                .where(ProvisionHostStatus.run_id == self.run_id,
                                       ProvisionHostStatus.host == progress.host)
                                .values(**progress.values()))

    def finish(self, *, runner_status: str | None, error: str | None = None) -> str:
        """Settle every host from Ansible's closing stats and return the run's final state."""
        cancelled = runner_status == "canceled"
        stats = self.stats or {}
        for progress in self.progress.values():
            self._settle(progress, stats, cancelled=cancelled, error=error)
            progress.dirty = True
        self.flush()
        if cancelled:
            run_state = states.RUN_CANCELLED
        elif error is not None or not stats:
            run_state = states.RUN_ERROR
        elif all(p.state == states.HOST_OK for p in self.progress.values()):
            run_state = states.RUN_SUCCEEDED
        else:
            run_state = states.RUN_FAILED
        with self.db.session() as session:
            session.execute(update(ProvisionRun).where(ProvisionRun.id == self.run_id).values(
                state=run_state, finished_at=utcnow(), error=self.redact(error or "") or None))
        return run_state

    def _settle(self, progress: HostProgress, stats: dict[str, Any], *, cancelled: bool, error: str | None) -> None:
        host = progress.host

        def count(key: str) -> int:
            return int((stats.get(key) or {}).get(host, 0))

        if stats:
            progress.ok, progress.changed, progress.skipped = count("ok"), count("changed"), count("skipped")
            progress.failed, progress.unreachable = count("failures"), count("dark")
        progress.current_task = ""
        if progress.unreachable:
            progress.state = states.HOST_UNREACHABLE
        elif progress.failed:
            progress.state = states.HOST_FAILED
        elif cancelled:
            progress.state = states.HOST_CANCELLED
            progress.message = progress.message or "cancelled before this host finished"
        elif host in (stats.get("processed") or {}):
            progress.state = states.HOST_OK
        else:
            progress.state = states.HOST_FAILED
            progress.message = progress.message or self.redact(error or "Ansible reported no result for this host")
