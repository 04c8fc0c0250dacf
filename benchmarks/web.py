"""The instructor's pages against the JSON API carrying the same data, for a room of 500 × 30 steps.

A room of ``--nodes`` (500) attendees, each with a lab catalog of 3 labs × 10 steps in its state
snapshot and a progress row for every step (passed up to a random point, failing after it with one
of a few reasons): 15,000 progress rows, seeded directly in a real database (a SQLite file, or a
throwaway PostgreSQL database with ``--database postgresql``).

What is timed, ``--runs`` times each, alternating, through the real Flask app in this process
(the server's time: routing, login/token check, the reads, rendering, serialisation; no network):

- **room**: ``GET /room`` (every tile: node, attendee, state, the step they are on, the last check);
- **matrix**: ``GET /matrix`` (every attendee × step cell with its reason, the column counts and
  grouped reasons) and ``GET /matrix/data`` (the same as JSON, what the live page re-reads);
- **API**: the JSON API a client would page through for the same data: ``GET /api/v1/nodes`` and
  ``GET /api/v1/progress`` at ``limit=1000``, every page.

Reported: the median ms of each and each page's ratio to the API (goal ≤ 2x).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from benchmarks.common import add_database_option, print_header, throwaway_database
from controller import events, instructors, states, web_accounts
from controller.app import create_app
from controller.models import Attendee, LabProgress, Node, new_id, utcnow
from controller.settings import settings_for_tests

GOAL_RATIO = 2.0
LABS = {f"lab-{chr(97 + i)}": [f"step-{j:02d}" for j in range(10)] for i in range(3)}
REASONS = ("no process in a new PID namespace", "the cgroup has no memory limit",
           "hostname is still the VM's", "the filter allows write(2)")
PASSWORD = "benchmark password 1234"


def seed_room(app, nodes: int, seed: int = 11) -> dict[str, int]:
    rng = random.Random(seed)
    steps = [(lab, step) for lab, names in LABS.items() for step in names]
    now = utcnow()
    with app.extensions["labfleet"].db.session() as session:
        event = events.get_or_create(session)
        node_rows = [{"id": new_id(), "event_id": event.id, "name": f"vm-{i:03d}", "machine_id": f"m{i}",
                      "hostname": f"vm-{i:03d}.room.example", "machine_secret_hash": "x",
                      "heartbeat_interval": 5.0, "enrolled_at": now, "state_digest": "d",
                      "state": states.NODE_OFFLINE if rng.random() < 0.03 else states.NODE_ONLINE,
                      "state_snapshot": {"labs": {"catalog": LABS, "progress": {}}}} for i in range(nodes)]
        session.execute(insert(Node), node_rows)
        attendees = [{"id": new_id(), "event_id": event.id, "name": f"Attendee {i:03d}",
                      "email": f"a{i}@example.org", "node_id": n["id"], "created_at": now}
                     for i, n in enumerate(node_rows)]
        session.execute(insert(Attendee), attendees)
        progress = []
        for node, attendee in zip(node_rows, attendees, strict=True):
            done = rng.randint(0, len(steps))
            for k, (lab, step) in enumerate(steps):
                ok = k < done
                progress.append({"id": new_id(), "node_id": node["id"], "attendee_id": attendee["id"], "lab": lab,
                                 "step": step, "status": "passed" if ok else "failed", "updated_at": now,
                                 "fail_streak": 0 if ok else 1, "checked_at": "",
                                 "evidence": {} if ok else {"reason": rng.choice(REASONS)}})
        for start in range(0, len(progress), 2000):
            session.execute(insert(LabProgress), progress[start:start + 2000])
        _, token = instructors.create_with_token(session, name="bench-api")
        web_accounts.add(session, "bench", password=PASSWORD)
    return {"nodes": nodes, "progress": len(progress), "token": token}


def logged_in_client(app):
    client = app.test_client()
    form = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form) or re.search(
        r'name="csrf_token" value="([^"]+)"', form)
    response = client.post("/login", data={"name": "bench", "password": PASSWORD, "csrf_token": csrf.group(1)})
    assert response.status_code == 302, response.status_code
    return client


def timed_get(client, path: str, **kwargs) -> tuple[float, int]:
    t0 = time.perf_counter()
    response = client.get(path, **kwargs)
    body = response.get_data()
    elapsed = time.perf_counter() - t0
    assert response.status_code == 200, (path, response.status_code)
    return elapsed, len(body)


def api_pages(client, token: str) -> tuple[float, int]:
    """Every page of /api/v1/nodes and /api/v1/progress at limit=1000: the same data as a page."""
    headers = {"Authorization": f"Bearer {token}"}
    total, size = 0.0, 0
    for path, key in (("/api/v1/nodes", "nodes"), ("/api/v1/progress", "progress")):
        cursor = None
        for _ in range(1000):  # bounded: 15 pages for the default room
            query = f"{path}?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            t0 = time.perf_counter()
            response = client.get(query, headers=headers)
            body = response.get_json()
            total += time.perf_counter() - t0
            size += len(response.get_data())
            assert response.status_code == 200 and key in body, (query, response.status_code)
            cursor = body["next"]
            if not cursor:
                break
    return total, size


def run(*, nodes: int = 500, runs: int = 15, database: str = "sqlite") -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="labfleet-bench-web-"))
    try:
        with throwaway_database(database, data_dir) as url:
            app = create_app(settings_for_tests(data_dir / "data", database_url=url))
            try:
                app.extensions["labfleet"].db.upgrade()
                counts = seed_room(app, nodes)
                client = logged_in_client(app)
                times: dict[str, list[float]] = {"room": [], "matrix": [], "matrix_data": [], "api": []}
                sizes: dict[str, int] = {}
                for _ in range(2):  # warm-up: templates compiled, caches filled
                    timed_get(client, "/room"), timed_get(client, "/matrix"), api_pages(client, counts["token"])
                for _ in range(runs):
                    for name, path in (("room", "/room"), ("matrix", "/matrix"), ("matrix_data", "/matrix/data")):
                        elapsed, sizes[name] = timed_get(client, path)
                        times[name].append(elapsed)
                    elapsed, sizes["api"] = api_pages(client, counts["token"])
                    times["api"].append(elapsed)
            finally:
                app.extensions["labfleet"].heartbeats.close()
                app.extensions["labfleet"].db.dispose()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    return {"database": database, "nodes": nodes, "steps": sum(len(s) for s in LABS.values()),
            "progress": counts["progress"], "runs": runs, "median_ms": medians, "bytes": sizes,
            "ratio": {name: medians[name] / medians["api"] for name in ("room", "matrix", "matrix_data")}}


def report(r: dict[str, Any]) -> None:
    print(f"\n== web pages, {r['nodes']} nodes × {r['steps']} steps on {r['database']}: {r['progress']} progress "
          f"rows, median of {r['runs']} runs (server time, in process)")
    labels = {"api": "JSON API (nodes + progress, every page)", "room": "GET /room", "matrix": "GET /matrix",
              "matrix_data": "GET /matrix/data (live re-read)"}
    for name in ("api", "room", "matrix", "matrix_data"):
        ratio = "" if name == "api" else f"  ratio {r['ratio'][name]:.2f}x (goal ≤ {GOAL_RATIO:g}x)"
        print(f"{labels[name]:<42} {r['median_ms'][name]:8.1f} ms  {r['bytes'][name] / 1024:7.0f} KiB{ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.web", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=500, help="attendees in the room (default 500)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each request (default 15)")
    add_database_option(parser)
    args = parser.parse_args(argv)
    print_header("labfleet web pages benchmark", args)
    report(run(nodes=args.nodes, runs=args.runs, database=args.database))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
