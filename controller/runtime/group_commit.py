"""Group commit: many request threads' small writes, one transaction.

A fan-out wakes hundreds of long-polls at once and each answer is a write
(mark delivered, store a result). On SQLite every write transaction takes the
database's single write lock, and the losers sleep in SQLite's busy handler;
on PostgreSQL every commit waits for a WAL flush. One writer thread per web
process that runs whatever jobs are queued in one transaction removes both
costs: a request waits for the next commit (a few milliseconds), never for
199 others.
See docs/architecture.md.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from sqlalchemy.orm import Session

from controller.db import Database
from controller.errors import ApiError
from controller.runtime.per_process import PerProcessThread

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BATCH = 256
WAIT_SECONDS = 30.0


class GroupCommit:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._queue: queue.SimpleQueue[tuple[Callable[[Session], object], Future]] = queue.SimpleQueue()
        self._thread = PerProcessThread("group-commit", self._run, on_start=self._new_queue)

    def submit(self, job: Callable[[Session], T]) -> T:
        """Run ``job(session)`` in the next group transaction and return its result once committed.

        A job raises ApiError before it writes anything (that is the contract
        of the service functions given here), so one refused job never undoes
        the others.
        """
        self._thread.ensure()
        future: Future = Future()
        self._queue.put((job, future))
        return future.result(timeout=WAIT_SECONDS)

    def _new_queue(self) -> None:
        self._queue = queue.SimpleQueue()  # jobs queued before a fork belong to the parent

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._commit_together(batch)
            except Exception:  # noqa: BLE001 - e.g. a cross-process race on a unique key
                log.warning("group commit of %d jobs failed; running them one by one", len(batch), exc_info=True)
                for item in batch:
                    self._commit_alone(item)

    def _commit_together(self, batch: list[tuple[Callable[[Session], object], Future]]) -> None:
        outcomes: list[tuple[Future, object, BaseException | None]] = []
        # Jobs of one bulk kind (controller/command_bulk.py) run together, where the first of them was queued.
        kinds: dict[str, list[tuple[Callable[[Session], object], Future]]] = {}
        for item in batch:
            kind = getattr(item[0], "bulk", None)
            if kind is not None and len(kinds.setdefault(kind, [])) < MAX_BATCH:
                kinds[kind].append(item)
        with self._db.session() as session:
            for job, future in batch:
                kind = getattr(job, "bulk", None)
                if kind in kinds and len(kinds[kind]) > 1:
                    together = kinds.pop(kind)
                    answers = type(job).run_many(session, [j for j, _ in together])
                    for (_, f), answer in zip(together, answers, strict=True):
                        error = answer if isinstance(answer, ApiError) else None
                        outcomes.append((f, None if error else answer, error))
                    continue
                if kind is not None and kind not in kinds:
                    continue  # ran with the others of its kind
                try:
                    outcomes.append((future, job(session), None))
                except ApiError as exc:
                    outcomes.append((future, None, exc))
        for future, value, error in outcomes:
            _settle(future, value, error)

    def _commit_alone(self, item: tuple[Callable[[Session], object], Future]) -> None:
        job, future = item
        try:
            with self._db.session() as session:
                value = job(session)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request thread
            _settle(future, None, exc)
        else:
            _settle(future, value, None)


def _settle(future: Future, value: object, error: BaseException | None) -> None:
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
