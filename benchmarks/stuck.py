"""Stuck detection: one pass of the real rules over a room, against a plain SELECT of the same rows.

A room of ``--nodes`` (500) attendees working through the repo's own lab catalog (``labs/``,
the real step order and hints): each node has passed a random number of the workshop's steps,
about 8 minutes each (log-normal), and is part-way through the next one, often with a failing check
(a streak and its reason), hints and resets in its state snapshot; some nodes are silent, and
the instructor has sent ``lab.reset`` to some. The database is real: a SQLite file, or a
throwaway PostgreSQL database (``--database postgresql``) created, migrated and dropped here.

What is timed, ``--passes`` times each, alternating:

- **pass**: ``controller.stuck.store.run_pass`` in its own committed session, as the beat task
  runs it: the four reads, positions and medians, the rules, and the ``stuck_flags`` writes
  (steady state: the first, untimed pass creates the flags; later passes update them);
- **floor**: the same rows read with plain SELECTs (nodes with their activity, lab progress,
  ``lab.reset`` commands, stuck flags), fetched and nothing else, in its own session.

Reported: the median ms of each and their ratio (pass / floor).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from benchmarks.common import add_database_option, print_header, throwaway_database
from controller import states
from controller.db import Database
from controller.models import Command, Event, LabProgress, Node, StuckFlag, utcnow
from controller.stuck import labs as lab_catalog
from controller.stuck import store
from controller.stuck.rules import Rules

REPO = Path(__file__).resolve().parent.parent
LABS_DIR = REPO / "labs"
# A pass runs every LABFLEET_STUCK_INTERVAL (30 s) on a worker: it should take a small slice of that.
GOAL_PASS_MS = 1000.0
WORKSHOP = ("ns-uts", "ns-pid", "ns-mount-1", "sc-filter", "ns-net-2", "sc-docker")


def _workshop_steps() -> list[tuple[str, str]]:
    catalog = lab_catalog.catalog(LABS_DIR)
    return [(lab, step) for lab in WORKSHOP if lab in catalog for step in catalog[lab].steps]


def seed_room(db: Database, nodes: int, seed: int = 7) -> dict[str, int]:
    """The room's rows; returns how many of each were written."""
    rng = random.Random(seed)
    steps = _workshop_steps()
    now = utcnow()
    counts = {"nodes": nodes, "progress": 0, "resets": 0}
    with db.session() as session:
        event = Event(name="bench-stuck")
        session.add(event)
        session.flush()
        for i in range(nodes):
            done = min(int(rng.triangular(0, len(steps), len(steps) * 0.6)), len(steps) - 1)
            silent = rng.random() < 0.03
            node = Node(id=uuid.uuid4().hex, event_id=event.id, name=f"vm-{i:03d}", machine_id=f"m{i}", machine_secret_hash="x" * 64,
                        token_hash=f"{i:064x}", state=states.NODE_ONLINE, heartbeat_interval=5.0,
                        last_seen_at=now - timedelta(seconds=rng.uniform(120, 600) if silent else rng.uniform(0, 5)))
            session.add(node)
            session.flush()  # the node's row before the rows that point at it
            # ~8 minutes a step, some much longer; they are part-way through the current one.
            took = [rng.lognormvariate(6.2, 0.5) for _ in range(done)]
            so_far = rng.lognormvariate(6.2, 0.5) * rng.uniform(0.2, 1.6)
            start = now - timedelta(seconds=sum(took) + so_far)
            activity: dict[str, dict[str, dict[str, int]]] = {}
            for (lab, step), seconds in zip(steps[:done], took, strict=True):
                start += timedelta(seconds=seconds)
                session.add(LabProgress(node_id=node.id, lab=lab, step=step, status="passed", updated_at=start,
                                        evidence={"reason": ""}, fail_streak=0))
                counts["progress"] += 1
            lab, step = steps[done]
            if rng.random() < 0.8:  # they have checked the step they are on at least once
                streak = rng.choice((1, 1, 1, 1, 2, 2, 3, 5))
                session.add(LabProgress(node_id=node.id, lab=lab, step=step, status="failed", fail_streak=streak,
                                        updated_at=start + timedelta(seconds=so_far * rng.uniform(0.3, 1.0)),
                                        evidence={"reason": f"{step}: the check found nothing yet"}))
                counts["progress"] += 1
            activity[lab] = {step: {"hints": rng.choice((0, 0, 0, 1, 1, 2, 3)),
                                   "resets": rng.choice((0, 0, 0, 0, 0, 1, 2))}}
            node.state_snapshot = {"labs": {"activity": activity, "catalog": {}, "progress": {}}}
            if rng.random() < 0.1:
                session.add(Command(node_id=node.id, batch_id=f"b{i}", kind="lab.reset", args={"lab": lab},
                                    state=states.COMMAND_PENDING, issued_by="bench", issued_at=now - timedelta(
                                        seconds=rng.uniform(0, 1800)), deadline=now + timedelta(minutes=5),
                                    timeout=60.0))
                counts["resets"] += 1
    return counts


def one_pass(db: Database, rules: Rules, now: Any) -> store.PassReport:
    with db.session() as session:
        return store.run_pass(session, rules, now=now, labs_dir=LABS_DIR)


def floor_read(db: Database) -> int:
    """The rows a pass reads, with plain SELECTs, fetched and not looked at."""
    with db.session() as session:
        rows = session.execute(select(Node.id, Node.name, Node.state, Node.last_seen_at, Node.state_snapshot)
                               .where(Node.state.in_((states.NODE_ONLINE, states.NODE_OFFLINE)))).all()
        rows += session.execute(select(LabProgress.node_id, LabProgress.lab, LabProgress.step, LabProgress.status,
                                       LabProgress.updated_at, LabProgress.fail_streak,
                                       LabProgress.evidence)).all()
        rows += session.execute(select(Command.node_id, Command.args, Command.issued_at)
                                .where(Command.kind == "lab.reset")).all()
        rows += session.scalars(select(StuckFlag)).all()
    return len(rows)


def run(*, nodes: int = 500, passes: int = 20, database: str = "sqlite") -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="labfleet-bench-stuck-"))
    try:
        with throwaway_database(database, data_dir) as url:
            db = Database(url)
            try:
                db.upgrade()
                counts = seed_room(db, nodes)
                rules, now = Rules(), utcnow()
                first = one_pass(db, rules, now)  # creates the flags; also warms the catalog cache
                floor_read(db)
                pass_s, floor_s = [], []
                report = first
                for _ in range(passes):
                    t0 = time.perf_counter()
                    report = one_pass(db, rules, now)
                    t1 = time.perf_counter()
                    rows = floor_read(db)
                    t2 = time.perf_counter()
                    pass_s.append(t1 - t0)
                    floor_s.append(t2 - t1)
            finally:
                db.dispose()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    pass_ms, floor_ms = statistics.median(pass_s) * 1000, statistics.median(floor_s) * 1000
    return {"database": database, "nodes": nodes, "passes": passes, **counts, "rows_read": rows,
            "first": first.as_dict(), "steady": report.as_dict(), "pass_ms": pass_ms, "floor_ms": floor_ms,
            "pass_max_ms": max(pass_s) * 1000, "floor_max_ms": max(floor_s) * 1000, "ratio": pass_ms / floor_ms}


def report(r: dict[str, Any]) -> None:
    print(f"\n== stuck detection, {r['nodes']} nodes on {r['database']}: {r['progress']} progress rows, "
          f"{r['resets']} lab.reset commands, {r['rows_read']} rows read per pass")
    print(f"first pass: {r['first']}; steady pass: {r['steady']}")
    print(f"pass  (run_pass, rules + flag writes, committed): median {r['pass_ms']:.1f} ms, "
          f"max {r['pass_max_ms']:.1f} ms over {r['passes']}")
    print(f"floor (plain SELECT of the same rows):             median {r['floor_ms']:.1f} ms, "
          f"max {r['floor_max_ms']:.1f} ms")
    print(f"ratio pass / floor: {r['ratio']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stuck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=500, help="attendees in the room (default 500)")
    parser.add_argument("--passes", type=int, default=20, help="timed passes, each with a floor read (default 20)")
    add_database_option(parser)
    args = parser.parse_args(argv)
    print_header("labfleet stuck-detection benchmark", args)
    report(run(nodes=args.nodes, passes=args.passes, database=args.database))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
