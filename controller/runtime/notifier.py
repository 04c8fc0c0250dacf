"""News about a node, for every web process: the one place polls are woken and caches dropped.

``NodeNotifier`` carries three kinds of news about a node:

- commands for it were committed (``notify``): its waiting long-polls wake;
- its agent reconnected (``supersede_polls``): its older polls end empty;
- its token, state or digest changed (``node_changed``): every process drops
  the identity it cached for it (``on_node_changed``).

Within one web process a version counter per node and a ``threading.Event``
per waiting poll do it without polling the database. With Redis configured,
every process also publishes the node ids on a channel and bumps its own
counters from it, so a command issued through one web process wakes a poll
held by another (docs/architecture.md: "more web processes join the same Redis").
Superseding travels the same way, so a new poll from node N on process B
ends N's orphaned poll on process A. Polls still re-check the database every
few seconds, so a lost message costs latency, never a command.

The listener outlives Redis: it pings on its own every
``health_check_interval`` seconds and drops a connection that has answered
nothing for three of them (a half-open socket), resubscribes in a loop while
Redis is away, and on resubscribing wakes every waiting poll (it may have
missed their messages) and drops the node-token cache (``on_resubscribed``).
Meanwhile polls fall back to their database re-check, every second while the
listener is cut off (``reliable`` is False) instead of every five
(docs/operations.md, "Scaling out", has the measured figures).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable

from controller.runtime.per_process import PerProcessThread

log = logging.getLogger(__name__)
CHANNEL = "labfleet:commands"
NODE_CHANNEL = "labfleet:node-changed"
SUPERSEDE_CHANNEL = "labfleet:polls-superseded"
PING_PAYLOAD = "labfleet-listener-alive"


class NodeNotifier:
    """``health_check_interval``: seconds between the listener's own PINGs; a connection that answers
    nothing for three of them (a half-open socket after a NAT or a Redis host vanished) is dropped and
    the listener resubscribes. ``reconnect_delay``: the pause between attempts while Redis is away.
    """

    def __init__(self, redis_url: str = "", *, on_node_changed: Callable[[str], None] | None = None,
                 on_resubscribed: Callable[[], None] | None = None, health_check_interval: float = 2.0,
                 reconnect_delay: float = 0.5) -> None:
        self._on_node_changed = on_node_changed
        self._on_resubscribed = on_resubscribed
        self._health_check_interval = health_check_interval
        self._reconnect_delay = reconnect_delay
        self._lock = threading.Lock()
        self._versions: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, set[threading.Event]] = defaultdict(set)
        self._superseded: dict[str, int] = {}
        self._redis_url = redis_url
        self._listener = PerProcessThread("command-notifier", self._listen, on_start=self._new_origin)
        self._redis = None
        self._redis_pid: int | None = None
        self._origin = ""
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        # What the listener went through, for the log, tests and benchmarks: (event, time.monotonic()).
        self.history: list[tuple[str, float]] = []

    def version(self, node_id: str) -> int:
        self._ensure_listener()
        with self._lock:
            return self._versions[node_id]

    def supersede_polls(self, node_id: str) -> None:
        """End this node's waiting polls, in every web process: its agent reconnected, so they answer a
        dead socket.

        A poll woken this way must return without taking commands; otherwise
        a command issued now would be written to the old connection and wait
        for redelivery. The other processes hear it through Redis; this
        process's own message is told apart by its origin and ignored, so the
        new poll that published it does not end itself.
        """
        self._supersede_here(node_id)
        if self._redis_url:
            self._ensure_listener()
            self._publish(SUPERSEDE_CHANNEL, f"{self._origin}|{node_id}", "poll supersede")

    def _supersede_here(self, node_id: str) -> None:
        with self._lock:
            self._superseded[node_id] = self._superseded.get(node_id, 0) + 1
            for event in self._waiters.get(node_id, ()):
                event.set()

    def poll_generation(self, node_id: str) -> int:
        with self._lock:
            return self._superseded.get(node_id, 0)

    def waiter_count(self, node_id: str) -> int:
        """How many polls are waiting for news of ``node_id`` right now (tests wait on it)."""
        with self._lock:
            return len(self._waiters.get(node_id, ()))

    @property
    def reliable(self) -> bool:
        """Whether every process's news reaches this one: no Redis needed with one process, else subscribed."""
        return not self._redis_url or self._subscribed.is_set()

    @property
    def listening(self) -> bool:
        """True while the Redis listener is subscribed (always False without Redis)."""
        return self._subscribed.is_set()

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
            self._publish(CHANNEL, ",".join(node_ids), "command notification")

    def node_changed(self, node_id: str) -> None:
        """Tell the other web processes to forget what they cached about this node."""
        if self._redis_url:
            self._publish(NODE_CHANNEL, node_id, "node change")

    def _publish(self, channel: str, payload: str, what: str) -> None:
        try:
            self._client().publish(channel, payload)
        except Exception as exc:  # redis.RedisError and socket errors alike: polls re-check anyway
            log.warning("could not publish %s: %s", what, exc)

    def _wake(self, node_ids: Iterable[str]) -> None:
        with self._lock:
            for node_id in node_ids:
                self._versions[node_id] += 1
                for event in self._waiters.get(node_id, ()):
                    event.set()

    def _wake_everyone(self) -> None:
        """After a gap in the subscription: messages may have been lost, so every waiting poll re-checks."""
        with self._lock:
            waiting = list(self._waiters)
        self._wake(waiting)

    def _client(self):
        # One publishing client per process: a connection inherited through a fork is the parent's.
        if self._redis is None or self._redis_pid != os.getpid():
            import redis

            self._redis = redis.Redis.from_url(
                self._redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, socket_keepalive=True,
                health_check_interval=max(1, int(self._health_check_interval)), retry_on_timeout=False)
            self._redis_pid = os.getpid()
        return self._redis

    def _new_origin(self) -> None:
        self._origin = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._subscribed.clear()

    def _ensure_listener(self) -> None:
        if self._redis_url:
            self._listener.ensure()

    def close(self) -> None:
        """Stop the listener (tests that build several notifiers in one process)."""
        self._stop.set()

    def _note(self, event: str) -> None:
        self.history.append((event, time.monotonic()))
        del self.history[:-100]

    def _listen(self) -> None:
        import redis

        lost = False
        while not self._stop.is_set():
            pubsub = None
            try:
                client = redis.Redis.from_url(
                    self._redis_url, socket_connect_timeout=2.0, socket_keepalive=True,
                    health_check_interval=max(1, int(self._health_check_interval)))
                pubsub = client.pubsub()
                pubsub.subscribe(CHANNEL, NODE_CHANNEL, SUPERSEDE_CHANNEL)
                self._serve(pubsub, lost)
            except Exception as exc:  # redis errors, socket errors, a half-open connection declared dead
                self._subscribed.clear()
                if not lost:
                    log.warning("command notification channel lost (%s); polls re-check the database "
                                "every second until it is back", exc)
                    self._note("lost")
                    self._wake_everyone()  # their long sleeps end: from now on they re-check every second
                lost = True
                self._stop.wait(self._reconnect_delay)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # closing a dead socket may fail too
                        pass

    def _serve(self, pubsub, lost: bool) -> None:
        interval = self._health_check_interval
        last_heard = last_ping = time.monotonic()
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=min(0.5, interval))
            now = time.monotonic()
            if message is not None:
                last_heard = now
                self._handle(message, lost)
            elif now - last_heard > 3 * interval:
                raise ConnectionError(f"no answer from Redis for {now - last_heard:.1f}s (half-open connection)")
            if now - last_ping >= interval:
                pubsub.ping(PING_PAYLOAD)
                last_ping = now

    def _handle(self, message: dict, lost: bool) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            if message.get("channel") == SUPERSEDE_CHANNEL.encode():  # the last of the three: subscribed
                self._subscribed.set()
                self._note("subscribed")
                if lost:
                    log.warning("command notification channel is back; waking every waiting poll")
                    self._wake_everyone()
                    if self._on_resubscribed:
                        self._on_resubscribed()
            return
        if kind != "message":
            return  # our own PINGs' answers: proof of life only
        data = message.get("data")
        if not isinstance(data, bytes):
            return
        channel = message.get("channel")
        if channel == NODE_CHANNEL.encode():
            if self._on_node_changed:
                self._on_node_changed(data.decode())
        elif channel == SUPERSEDE_CHANNEL.encode():
            origin, _, node_id = data.decode().partition("|")
            if origin != self._origin:
                self._supersede_here(node_id)
        else:
            self._wake(data.decode().split(","))
