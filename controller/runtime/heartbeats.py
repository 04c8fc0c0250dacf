"""Heartbeats, recorded in memory and written to the database in batches.

A room of 500 nodes beating every 5 s is 100 writes/s; a benchmark pushes
1,000/s. One UPDATE per beat would make every beat wait for a database commit;
instead each web process keeps the newest beat per node and flushes them all
every ``flush_interval`` in one transaction. Liveness is judged in seconds, so
half a second of lag changes nothing.
See docs/architecture.md.
"""

from __future__ import annotations

import atexit
import logging
import threading
from datetime import UTC, datetime

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

from controller import audit, states
from controller.db import Database
from controller.models import Node, utcnow
from controller.runtime.per_process import PerProcessThread

log = logging.getLogger(__name__)


class HeartbeatRecorder:
    def __init__(self, database: Database, *, flush_interval: float) -> None:
        self._db = database
        self._flush_interval = flush_interval
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, datetime, float | None]] = {}
        self._flusher = PerProcessThread("heartbeat-flusher", self._run, on_start=self._on_start)
        self._stop = threading.Event()

    def record(self, node_id: str, seq: int, paced_interval: float | None = None) -> None:
        """One beat; ``paced_interval`` is the interval the answer told the node to beat at next."""
        self._flusher.ensure()
        with self._lock:
            self._pending[node_id] = (seq, utcnow(), paced_interval)

    def flush(self) -> int:
        """Write every pending beat; nodes that were offline come back online."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        with self._db.session() as session:
            # Offline nodes are few; an IN list of every beating node (hundreds of placeholders)
            # cost the PostgreSQL driver a query parse that held the GIL on every flush.
            offline = set(session.scalars(select(Node.id).where(Node.state == states.NODE_OFFLINE)))
            back = [node_id for node_id in pending if node_id in offline]
            returning = list(session.scalars(select(Node).where(Node.id.in_(back)))) if back else []
            self._write_beats(session, pending)
            for node in returning:
                node.state = states.NODE_ONLINE
                audit.record(session, actor=f"node:{node.name}", action="node.online", target=node.id)
        return len(pending)

    def _write_beats(self, session: Session, pending: dict[str, tuple[int, datetime, float | None]]) -> None:
        if self._db.is_sqlite:
            # SQLite has no VALUES list with column names; its executemany is in-process and cheap.
            rows = [{"b_id": node_id, "b_seq": seq, "b_at": at, "b_every": every}
                    for node_id, (seq, at, every) in pending.items()]
            session.connection().execute(
                update(Node.__table__).where(Node.__table__.c.id == bindparam("b_id"))
                .values(last_seen_at=bindparam("b_at"), last_seq=bindparam("b_seq"),
                        paced_interval=bindparam("b_every")),
                rows,
            )
            return
        # PostgreSQL: one UPDATE from three array parameters. An executemany of 500 UPDATEs, or a
        # VALUES list with 1,500 placeholders for the driver to parse, held the GIL long enough
        # to show in every request's tail latency.
        ids = list(pending)
        session.execute(
            text("UPDATE nodes SET last_seen_at = beats.at, last_seq = beats.seq, paced_interval = beats.every "
                 "FROM unnest(CAST(:ids AS varchar[]), CAST(:seqs AS integer[]), CAST(:ats AS timestamp[]), "
                 "CAST(:everys AS float8[])) AS beats(id, seq, at, every) WHERE nodes.id = beats.id"),
            {"ids": ids, "seqs": [pending[i][0] for i in ids], "everys": [pending[i][2] for i in ids],
             "ats": [pending[i][1].astimezone(UTC).replace(tzinfo=None) for i in ids]},
        )

    def _on_start(self) -> None:
        with self._lock:
            self._pending = {}  # beats recorded before a fork were the parent's to write
        atexit.register(self.close)

    def _run(self) -> None:
        while not self._stop.wait(self._flush_interval):
            try:
                self.flush()
            except Exception:  # keep beating: a failed flush is logged and retried next round
                log.exception("heartbeat flush failed")

    def close(self) -> None:
        self._stop.set()
        try:
            self.flush()
        except Exception:
            log.exception("final heartbeat flush failed")
