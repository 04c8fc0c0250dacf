"""The room's live feed: what changed in the tiles, pushed to every open room page (Server-Sent Events).

One thread per web process reads the tiles every ``interval`` seconds while at
least one page is connected, and hands each connected page only the tiles that
changed. The cost is one reader per process however many dashboards are open,
and it sees every change written to the database by any process (agents'
heartbeats, state reports, check results, the sweep, provisioning), with or
without Redis. A change reaches the page within ``interval`` plus the time the
change takes to reach the database (a heartbeat: the next flush, 0.5 s).

Each open stream holds one server thread (gunicorn's threaded workers): the
feed admits at most ``max_streams`` per process and ends every stream after
``stream_seconds`` (the browser reconnects by itself), so dashboards can never
take the threads agents' long-polls need. See docs/web.md for the budget.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

from controller.db import Database
from controller.pages.room import TileReader

log = logging.getLogger(__name__)


class TooManyStreams(Exception):
    pass


class Subscription:
    def __init__(self) -> None:
        self.messages: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()


class RoomFeed:
    def __init__(self, database: Database, *, interval: float = 0.2, max_streams: int = 60,
                 stream_seconds: float = 55.0, keepalive: float = 15.0) -> None:
        self._db = database
        self.interval = interval
        self.max_streams = max_streams
        self.stream_seconds = stream_seconds
        self.keepalive = keepalive
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self._reader = TileReader()
        self._last: dict[str, dict[str, Any]] = {}
        self._thread_pid: int | None = None
        self._running = False

    def read_all(self) -> dict[str, dict[str, Any]]:
        """Every tile now (a fresh reader: this runs in the request's thread, beside the feed's)."""
        with self._db.session() as session:
            return TileReader().read(session)

    def subscribe(self) -> Subscription:
        subscription = Subscription()
        with self._lock:
            if len(self._subs) >= self.max_streams:
                raise TooManyStreams(f"at most {self.max_streams} live room pages per web process")
            self._subs.add(subscription)
            if not self._running or self._thread_pid != os.getpid():
                self._running, self._thread_pid = True, os.getpid()
                threading.Thread(target=self._run, name="room-feed", daemon=True).start()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subs.discard(subscription)

    def _run(self) -> None:
        stop = threading.Event()
        while True:
            with self._lock:
                if not self._subs:
                    self._running = False
                    self._last = {}  # the next reader starts over: no page saw what we held
                    return
                subscribers = list(self._subs)
            try:
                with self._db.session() as session:
                    tiles = self._reader.read(session)
            except Exception:  # a database hiccup: try again, keep the pages' streams
                log.exception("room feed: could not read the tiles")
                stop.wait(1.0)
                continue
            changed = [tile for tile_id, tile in tiles.items() if self._last.get(tile_id) != tile]
            removed = [tile_id for tile_id in self._last if tile_id not in tiles]
            self._last = tiles
            if changed or removed:
                message = {"tiles": changed, "removed": removed}
                for subscription in subscribers:
                    subscription.messages.put(message)
            stop.wait(self.interval)

    def stream(self, subscription: Subscription, first: dict[str, dict[str, Any]]) -> Iterator[str]:
        """The text/event-stream body: every tile first, then what changes, until ``stream_seconds``."""
        import time

        try:
            yield "retry: 1000\n\n"
            yield _event("tiles", {"tiles": list(first.values()), "removed": [], "full": True})
            ends = time.monotonic() + self.stream_seconds
            while (left := ends - time.monotonic()) > 0:
                try:
                    message = subscription.messages.get(timeout=min(left, self.keepalive))
                except queue.Empty:
                    yield ": keepalive\n\n"  # also how a closed connection is noticed
                    continue
                yield _event("tiles", message)
        finally:
            self.unsubscribe(subscription)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
