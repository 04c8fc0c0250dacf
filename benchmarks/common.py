"""What every benchmark shares: machine info, a throwaway controller, percentiles, /proc readings."""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.processes import Controller

REDIS_URL = "redis://127.0.0.1:6379/12"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# -- what we ran on -------------------------------------------------------

def machine_info() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"machine: nproc={os.cpu_count()} kernel={platform.release()} cpu={cpu or '?'} "
            f"mem={mem_gb:.1f} GiB python={platform.python_version()}")


def print_header(title: str, args: argparse.Namespace) -> None:
    print(f"# {title}")
    print(machine_info())
    print("options: " + " ".join(f"{k}={v}" for k, v in sorted(vars(args).items())))
    sys.stdout.flush()


def add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="sqlite: a file in a temp data dir (one-box default); postgresql: a throwaway "
                             "database labfleet_bench_<random> on 127.0.0.1:5432, dropped afterwards")


# -- statistics -------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- a controller of our own ------------------------------------------------

@contextmanager
def throwaway_database(kind: str, data_dir: Path) -> Iterator[str]:
    """The database URL for one benchmark run; a PostgreSQL database is created and dropped here."""
    if kind == "sqlite":
        yield f"sqlite:///{data_dir / 'labfleet.sqlite'}"
        return
    from sqlalchemy import create_engine, text

    name = f"labfleet_bench_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def bench_controller(database: str = "sqlite", *, web_workers: int = 1, web_threads: int = 600,
                     heartbeat_interval: float = 5.0, start: bool = True, tls: bool = False
                     ) -> Iterator[Controller]:
    """A real controller (gunicorn gthread) on a free loopback port, stopped and deleted afterwards.

    Production defaults where the test helper differs (600 threads per web process, redelivery
    after 30 s, heartbeat interval 5 s). ``init`` runs the migrations (``serve`` refuses an old schema). Plain HTTP unless
    ``tls``: the simulated agents (aiohttp) measure the controller's request handling, as the
    docs/benchmarks.md's numbers always have; a real agent keeps its TLS connection, so TLS adds a handshake
    per connection, not per request.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="labfleet-bench-"))
    try:
        with throwaway_database(database, data_dir) as url:
            controller = Controller(
                data_dir=data_dir, database_url=url, redis_url=REDIS_URL, heartbeat_interval=heartbeat_interval,
                sweep_interval=5.0, tls=tls,
                extra_env={"LABFLEET_WEB_WORKERS": str(web_workers), "LABFLEET_WEB_THREADS": str(web_threads),
                           "LABFLEET_REDELIVER_AFTER": "30", "LABFLEET_LOG_LEVEL": "WARNING"},
            )
            try:
                controller.init(enroll_uses=1)
                if start:
                    controller.start_web()
                yield controller
            finally:
                controller.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def restart_web(controller: Controller, *, web_workers: int) -> None:
    """Stop the web processes and start them again with another worker count (same data)."""
    controller.stop()
    controller.web = None
    controller.extra_env["LABFLEET_WEB_WORKERS"] = str(web_workers)
    controller.start_web()


def create_enroll_token(controller: Controller, uses: int) -> str:
    return controller.api("POST", "/api/v1/enroll-tokens", {"uses": uses, "label": "benchmark"})["token"]


# -- /proc ------------------------------------------------------------------

def children_of(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_kb(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int, *, with_reaped_children: bool = False) -> float:
    """utime+stime of one process (plus cutime+cstime of its waited-for children if asked)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and all its live descendants, including children they reaped."""
    return sum(cpu_seconds(p, with_reaped_children=True) for p in [pid, *children_of(pid)])


class CpuMeter:
    """CPU % of a process tree between start() and stop() (100 % = one core)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu0 = self._t0 = 0.0

    def start(self) -> CpuMeter:
        self._cpu0, self._t0 = tree_cpu_seconds(self.pid), time.monotonic()
        return self

    def stop(self) -> float:
        wall = time.monotonic() - self._t0
        return 100.0 * (tree_cpu_seconds(self.pid) - self._cpu0) / wall if wall > 0 else float("nan")


class TempDirs:
    """The one method of pytest's tmp_path_factory that tests' provisioning_controller uses, for benchmarks."""

    def __init__(self, root: Path) -> None:
        self.root, self.n = root, 0

    def mktemp(self, name: str) -> Path:
        self.n += 1
        path = self.root / f"{name}{self.n}"
        path.mkdir()
        return path
