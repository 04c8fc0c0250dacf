"""Fan-out in bulk: the group writer hands commands to every woken long-poll, and stores every posted
result, with a few statements per batch instead of a few per node.

A ``ping --all`` wakes a room's long-polls at once; each used to run its own SELECT and
UPDATE...RETURNING in the group transaction (and each result its own SELECT, INSERT and UPDATE).
``Delivery`` and ``ResultPost`` are group-commit jobs (controller/runtime/group_commit.py) that
the writer merges with the others of their kind in its batch: one SELECT and one
UPDATE...RETURNING for all the woken polls; one SELECT, one INSERT and one UPDATE per outcome for
all the results; a result stored alone goes the same way.
The conditions are the same as commands.py's, so at-least-once delivery and exactly-once storage
hold as before: the UPDATE repeats the offer's conditions and returns only the rows it changed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session

from controller import audit, commands, lab_progress, states
from controller.errors import ApiError, NotFound
from controller.models import Command, CommandResult, new_id, utcnow
from controller.principals import NodeIdentity
from controller.validation import parse
from node_agent.protocol import LAB_COMMAND_KINDS, CommandMessage, LabOutcome
from node_agent.protocol import CommandResult as ResultMessage

PER_NODE = 100  # commands handed to one poll at most (as commands.take_for_delivery)


@dataclass(frozen=True)
class Delivery:
    """Hand this node the commands it is offered, marked delivered (commands.take_for_delivery)."""

    node_id: str
    resync: bool
    redeliver_after: float
    bulk: ClassVar[str] = "deliver"

    def __call__(self, session: Session) -> list[CommandMessage]:
        return commands.take_for_delivery(session, self.node_id, resync=self.resync,
                                          redeliver_after=self.redeliver_after)

    @staticmethod
    def run_many(session: Session, jobs: list[Delivery]) -> list[list[CommandMessage] | ApiError]:
        now = utcnow()
        groups: dict[tuple[bool, float], set[str]] = defaultdict(set)
        for job in jobs:
            groups[(job.resync, job.redeliver_after)].add(job.node_id)
        offered = or_(*(and_(Command.node_id.in_(sorted(node_ids)),
                             *commands.offer_conditions(resync=resync, redeliver_after=after, now=now))
                        for (resync, after), node_ids in groups.items()))
        found = session.execute(select(Command.id, Command.node_id).where(offered)
                                .order_by(Command.issued_at)).all()
        per_node: dict[str, int] = defaultdict(int)
        ids = []
        for row in found:
            if per_node[row.node_id] < PER_NODE:
                per_node[row.node_id] += 1
                ids.append(row.id)
        taken: dict[str, list[Any]] = defaultdict(list)
        if ids:
            rows = session.execute(
                update(Command).where(Command.id.in_(ids), offered)
                .values(state=states.COMMAND_DELIVERED, delivered_at=now, delivery_count=Command.delivery_count + 1)
                .returning(Command.id, Command.node_id, Command.kind, Command.args, Command.deadline, Command.timeout,
                           Command.issued_at)
            ).all()
            for r in sorted(rows, key=lambda r: r.issued_at):
                taken[r.node_id].append(CommandMessage(id=r.id, kind=r.kind, args=r.args,
                                                       deadline=r.deadline.isoformat(), timeout=r.timeout))
        answers: list[list[CommandMessage] | ApiError] = []
        for job in jobs:  # two polls of one node in a batch: the first one gets its commands
            answers.append(taken.pop(job.node_id, []))
        return answers


@dataclass(frozen=True)
class ResultPost:
    """Store one posted result once; a second post of the same result changes nothing."""

    node: NodeIdentity
    message: ResultMessage
    max_progress_rows: int
    bulk: ClassVar[str] = "result"

    def __call__(self, session: Session) -> commands.StoredResult:
        # Alone (a batch of one, or the writer's retry after a failed batch) it is the bulk path too:
        # one way to store a result.
        answer = self.run_many(session, [self])[0]
        if isinstance(answer, ApiError):
            raise answer
        return answer

    @staticmethod
    def run_many(session: Session, jobs: list[ResultPost]) -> list[commands.StoredResult | ApiError]:
        """Everything that can refuse a result is checked before the first write (a refusal is that job's
        answer, the others are stored)."""
        found = {row.id: row for row in session.execute(
            select(Command.id, Command.node_id, Command.kind, Command.args, Command.batch_id, Command.issued_at,
                   Command.state, CommandResult.id.label("result_id"))
            .outerjoin(CommandResult, CommandResult.command_id == Command.id)
            .where(Command.id.in_({job.message.command_id for job in jobs}))
        )}
        now = utcnow()
        answers: list[commands.StoredResult | ApiError] = []
        inserts: list[dict[str, Any]] = []
        moves: dict[str, list[str]] = defaultdict(list)
        stored_now: set[str] = set()
        progress = []
        for job in jobs:
            message, row = job.message, found.get(job.message.command_id)
            try:
                if row is None or row.node_id != job.node.id:
                    raise NotFound(f"no command {message.command_id!r} for this node", field="command_id")
                stored = commands.StoredResult(duplicate=row.result_id is not None or row.id in stored_now,
                                               kind=row.kind, latency=(now - row.issued_at).total_seconds())
                if stored.duplicate:
                    answers.append(stored)
                    continue
                outcome = None
                if message.ok and row.kind in LAB_COMMAND_KINDS:
                    outcome = parse(LabOutcome, message.output, prefix="output.")
                new_state = states.COMMAND_SUCCEEDED if message.ok else states.COMMAND_FAILED
                if row.state == states.COMMAND_EXPIRED:
                    new_state = states.COMMAND_EXPIRED  # a late result is kept, the outcome stays "expired"
                else:
                    states.check_command_move(row.state, new_state)
            except ApiError as exc:
                answers.append(exc)
                continue
            stored_now.add(row.id)
            inserts.append({
                "id": new_id(), "command_id": row.id, "node_id": job.node.id, "ok": message.ok,
                "output": message.output, "error": message.error, "started_at": message.started_at,
                "finished_at": message.finished_at, "duration_ms": message.duration_ms, "received_at": now,
            })
            moves[new_state].append(row.id)
            if outcome is not None:
                progress.append((job, row, outcome))
            audit.record(session, actor=f"node:{job.node.name}", action="command.result", target=row.id,
                         kind=row.kind, batch=row.batch_id, ok=message.ok, error=message.error)
            answers.append(stored)
        # A post racing these in another web process makes the commit fail on the unique command_id;
        # the group writer then runs each job alone, and those find the duplicate.
        if inserts:
            session.execute(insert(CommandResult), inserts)
        for new_state, ids in moves.items():
            session.execute(update(Command).where(Command.id.in_(ids)).values(state=new_state, finished_at=now))
        for job, row, outcome in progress:
            lab_progress.from_result(session, job.node.id, row.kind, outcome, asked_lab=(row.args or {}).get("lab"),
                                     max_rows=job.max_progress_rows)
        return answers

