"""Prometheus metrics: counters and histograms kept in process, gauges read at scrape time.

Node and command counts come from the database when Prometheus scrapes, so
they are right whichever web process or worker changed them. Latency
histograms are per web process (one process is the default; see docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.heartbeat_seconds = Histogram(
            "labfleet_heartbeat_seconds", "Time to handle one agent heartbeat", buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.command_seconds = Histogram(
            "labfleet_command_seconds", "From issuing a command to storing its result", ["kind"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.results_total = Counter(
            "labfleet_command_results", "Command results stored", ["kind", "outcome"], registry=self.registry,
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
