"""Wake a node's long-poll the moment a command for it is committed.

Within one web process a version counter per node and a ``threading.Event``
per waiting poll do it without polling the database. With Redis configured,
every process also publishes the node ids on a channel and bumps its own
counters from it, so a command issued through one web process wakes a poll
held by another (docs/architecture.md: "more web processes join the same Redis").
Polls still re-check the database every few seconds, so a lost message costs
latency, never a command.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable

from controller.per_process import PerProcessThread

log = logging.getLogger(__name__)
CHANNEL = "labfleet:commands"
NODE_CHANNEL = "labfleet:node-changed"


class CommandNotifier:
    def __init__(self, redis_url: str = "", *, on_node_changed: Callable[[str], None] | None = None) -> None:
        self._on_node_changed = on_node_changed
        self._lock = threading.Lock()
        self._versions: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, set[threading.Event]] = defaultdict(set)
        self._superseded: dict[str, int] = {}
        self._redis_url = redis_url
        self._listener = PerProcessThread("command-notifier", self._listen)
        self._redis = None
        self._redis_pid: int | None = None

    def version(self, node_id: str) -> int:
        self._ensure_listener()
        with self._lock:
            return self._versions[node_id]

    def supersede_polls(self, node_id: str) -> None:
        """End this node's waiting polls: its agent reconnected, so they answer a dead socket.

        A poll woken this way must return without taking commands; otherwise
        a command issued now would be written to the old connection and wait
        for redelivery.
        """
        with self._lock:
            self._superseded[node_id] = self._superseded.get(node_id, 0) + 1
            for event in self._waiters.get(node_id, ()):
                event.set()

    def poll_generation(self, node_id: str) -> int:
        with self._lock:
            return self._superseded.get(node_id, 0)

    def wait(self, node_id: str, seen_version: int, timeout: float) -> bool:
        """Block until ``node_id`` is notified after ``seen_version``, or ``timeout``."""
        event = threading.Event()
        with self._lock:
            if self._versions[node_id] != seen_version:
                return True
            self._waiters[node_id].add(event)
        try:
            return event.wait(timeout)
        finally:
            with self._lock:
                self._waiters[node_id].discard(event)
                if not self._waiters[node_id]:
                    del self._waiters[node_id]

    def notify(self, node_ids: Iterable[str]) -> None:
        node_ids = list(node_ids)
        self._wake(node_ids)
        if self._redis_url:
            try:
                self._client().publish(CHANNEL, ",".join(node_ids))
            except Exception as exc:  # redis.RedisError and socket errors alike: polls re-check anyway
                log.warning("could not publish command notification: %s", exc)

    def node_changed(self, node_id: str) -> None:
        """Tell the other web processes to forget what they cached about this node."""
        if self._redis_url:
            try:
                self._client().publish(NODE_CHANNEL, node_id)
            except Exception as exc:  # the cache's TTL bounds the damage of a lost message
                log.warning("could not publish node change: %s", exc)

    def _wake(self, node_ids: Iterable[str]) -> None:
        with self._lock:
            for node_id in node_ids:
                self._versions[node_id] += 1
                for event in self._waiters.get(node_id, ()):
                    event.set()

    def _client(self):
        # One publishing client per process: a connection inherited through a fork is the parent's.
        if self._redis is None or self._redis_pid != os.getpid():
            import redis

            self._redis = redis.Redis.from_url(self._redis_url)
            self._redis_pid = os.getpid()
        return self._redis

    def _ensure_listener(self) -> None:
        if self._redis_url:
            self._listener.ensure()

    def _listen(self) -> None:
        import redis

        while True:
            try:
                pubsub = redis.Redis.from_url(self._redis_url).pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL, NODE_CHANNEL)
                for message in pubsub.listen():
                    data = message.get("data")
                    if not isinstance(data, bytes):
                        continue
                    if message.get("channel") == NODE_CHANNEL.encode():
                        if self._on_node_changed:
                            self._on_node_changed(data.decode())
                    else:
                        self._wake(data.decode().split(","))
            except redis.RedisError as exc:
                log.warning("command notification channel lost (%s); reconnecting", exc)
                threading.Event().wait(1.0)
