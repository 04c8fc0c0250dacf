"""Prometheus metrics: counters and histograms kept per process, gauges read at scrape time.

Node and command counts come from the database when Prometheus scrapes, so
they are right whichever web process or worker changed them. Counters and
latency histograms live in each gunicorn worker; ``labfleet serve`` turns on
prometheus_client's multiprocess mode (``enable_multiprocess``: every worker
writes its values to files in one folder) and ``/metrics`` then answers the
sum over every worker of this ``serve``, whichever worker the scrape reached.
Several ``serve`` (machines) are several scrape targets; Prometheus sums them.
A worker that exits leaves its counts behind (counters never go backwards);
the folder is emptied when ``serve`` starts and removed when it stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_multiprocess_dir: Path | None = None


def enable_multiprocess(folder: Path | None = None) -> Path:
    """Before the app (and its metrics) is built, in the process that will fork the web workers.

    ``folder``: an operator's own (emptied of old values first); default a fresh temporary folder.
    prometheus_client reads ``PROMETHEUS_MULTIPROC_DIR`` itself, in this process and the forked ones.
    """
    global _multiprocess_dir
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="labfleet-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.db"):
        old.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)  # prometheus_client reads it (here and in forked workers)
    values.ValueClass = values.get_value_class()
    _multiprocess_dir = folder
    return folder


def disable_multiprocess(*, remove: bool) -> None:
    """When ``serve`` ends: back to in-process values, and the folder removed if ``serve`` made it."""
    global _multiprocess_dir
    folder, _multiprocess_dir = _multiprocess_dir, None
    os.environ.pop(MULTIPROC_ENV, None)
    values.ValueClass = values.get_value_class()
    if remove and folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit: a dead worker's live gauges go (its counters stay, summed as before)."""
    if _multiprocess_dir is not None:
        multiprocess.mark_process_dead(pid, str(_multiprocess_dir))


class Metrics:
    def __init__(self) -> None:
        self.multiprocess_dir = _multiprocess_dir
        # In multiprocess mode the metrics are defined in a registry nobody renders (their values are
        # in the folder's files); /metrics renders the files' sum instead.
        self._defined = CollectorRegistry(auto_describe=True)
        if self.multiprocess_dir is None:
            self.registry = self._defined
        else:
            self.registry = CollectorRegistry(auto_describe=True)
            multiprocess.MultiProcessCollector(self.registry, path=str(self.multiprocess_dir))
        self.heartbeat_seconds = Histogram(
            "labfleet_heartbeat_seconds", "Time to handle one agent heartbeat", buckets=LATENCY_BUCKETS,
            registry=self._defined,
        )
        self.command_seconds = Histogram(
            "labfleet_command_seconds", "From issuing a command to storing its result", ["kind"],
            buckets=LATENCY_BUCKETS, registry=self._defined,
        )
        self.results_total = Counter(
            "labfleet_command_results", "Command results stored", ["kind", "outcome"], registry=self._defined,
        )

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class DatabaseCollector(Collector):
    """Gauges computed from the database (and the broker) at scrape time."""

    def __init__(self, read_nodes: Callable[[], dict[str, int]],
                 read_commands: Callable[[], Iterable[tuple[str, str, int]]],
                 read_queue_depth: Callable[[], int | None]) -> None:
        self._read_nodes = read_nodes
        self._read_commands = read_commands
        self._read_queue_depth = read_queue_depth

    def describe(self):
        return []

    def collect(self):
        by_state = GaugeMetricFamily("labfleet_nodes", "Nodes by state", labels=["state"])
        for state, n in self._read_nodes().items():
            by_state.add_metric([state], n)
        yield by_state
        by_kind = GaugeMetricFamily("labfleet_commands", "Commands by kind and state", labels=["kind", "state"])
        for kind, state, n in self._read_commands():
            by_kind.add_metric([kind, state], n)
        yield by_kind
        depth = self._read_queue_depth()
        if depth is not None:
            yield GaugeMetricFamily("labfleet_celery_queue_depth", "Tasks waiting in the Celery queue", value=depth)


def queue_depth_reader(redis_url: str, broker_dir: Path, queue: str = "celery") -> Callable[[], int | None]:
    """How many tasks wait in the broker: LLEN on Redis, files in the embedded broker's folder."""
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url, socket_timeout=1)

        def read_redis() -> int | None:
            try:
                return int(client.llen(queue))
            except redis.RedisError:
                return None

        return read_redis

    def read_folder() -> int | None:
        folder = broker_dir / "queue"
        return sum(1 for _ in folder.glob("*.msg")) if folder.exists() else 0

    return read_folder
