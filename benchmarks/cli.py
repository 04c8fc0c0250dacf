"""The instructor CLI's start-up: ``labfleet --help`` and ``labfleet status`` against a live controller.

Every command is a fresh process (what an instructor waits for at the prompt), run ``--runs``
times, round-robin so that machine noise falls on all of them alike; the median wall time is
reported. Side by side, same run, same interpreter:

* floor: ``python -c pass``, the interpreter's own start-up;
* old:   ``python -c 'import controller.app, controller.models; import controller.cli.main'``, the
         import the CLI paid before it became a client (Flask, SQLAlchemy, Alembic, Celery);
* ``labfleet --help`` (the installed console script);
* ``labfleet status`` against a real controller (gunicorn on loopback, TLS with the room CA
  ``labfleet init`` made, ``--nodes`` enrolled nodes), found through the data dir's ``cli.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import add_database_option, bench_controller, create_enroll_token, median, print_header
from tests.processes import REPO, Controller

GOAL_S = 0.3
LABFLEET = str(Path(sys.executable).parent / "labfleet")
OLD_IMPORT = "import controller.app, controller.models; import controller.cli.main"


def _enroll(controller: Controller, count: int) -> None:
    token = create_enroll_token(controller, count)
    for i in range(count):
        body = json.dumps({"enrollment_token": token, "machine_id": uuid.uuid4().hex, "machine_secret": "s" * 32,
                           "name": f"bench-{i}", "hostname": f"bench-{i}", "agent_version": "bench"}).encode()
        request = urllib.request.Request(controller.url + "/api/agent/v1/enroll", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30, context=controller.ssl_context()):
            pass


def _time(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, timeout=60)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return elapsed


def run(*, runs: int = 15, nodes: int = 20, database: str = "sqlite") -> dict[str, Any]:
    with bench_controller(database, tls=True) as controller:
        _enroll(controller, nodes)
        env = {**controller.env(), "COLUMNS": "120"}
        commands = {
            "floor": [sys.executable, "-c", "pass"],
            "old": [sys.executable, "-c", OLD_IMPORT],
            "help": [LABFLEET, "--help"],
            "status": [LABFLEET, "status"],
        }
        for argv in commands.values():  # warm the page cache and the bytecode caches
            _time(argv, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                times[name].append(_time(argv, env))
    med = {name: median(values) for name, values in times.items()}
    return {"runs": runs, "nodes": nodes, "database": database, "median_s": med,
            "min_s": {name: min(values) for name, values in times.items()}}


def report(r: dict[str, Any]) -> None:
    m, lo = r["median_s"], r["min_s"]
    print()
    print(f"== CLI start-up, median of {r['runs']} fresh processes each (min in brackets); status lists "
          f"{r['nodes']} nodes over TLS")
    labels = {"floor": "python -c pass (floor)", "old": "old import: controller.app + models + cli.main",
              "help": "labfleet --help", "status": "labfleet status"}
    for name, label in labels.items():
        print(f"{label:<50} {m[name]:.3f} s  [{lo[name]:.3f}]  {m[name] / m['floor']:.1f}x floor")
    for name in ("help", "status"):
        print(f"{labels[name]}: {m['old'] / m[name]:.1f}x faster than the old import alone; "
              f"goal <= {GOAL_S} s: {'MET' if m[name] <= GOAL_S else 'NOT MET'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="processes per command (default 15)")
    parser.add_argument("--nodes", type=int, default=20, help="enrolled nodes status lists (default 20)")
    add_database_option(parser)
    args = parser.parse_args(argv)
    print_header("labfleet benchmark: CLI start-up", args)
    report(run(runs=args.runs, nodes=args.nodes, database=args.database))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
