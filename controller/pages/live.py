"""The room's live feed: what changed in the tiles, pushed to every open room page (Server-Sent Events).

One thread per web process reads the tiles every ``interval`` seconds while at
least one page is connected, and renders what changed ONCE, as the bytes of one
event (a frame). Every open stream of that process sends the same frame: the
streams only wait on the feed's condition and write the frame out, and a page
that connects gets the feed's current tiles, rendered at most once per read,
instead of reading the database itself. The cost is one read and one render
per process and tick however many dashboards are open, and the reader sees
every change written to the database by any process (agents' heartbeats, state
reports, check results, the sweep, provisioning), with or without Redis. A
change reaches the page within ``interval`` plus the time the change takes to
reach the database (a heartbeat: the next flush, 0.5 s).

Each open stream holds one server thread (gunicorn's threaded workers): the
feed admits at most ``max_streams`` per process and ends every stream after
``stream_seconds`` (the browser reconnects by itself), so dashboards can never
take the threads agents' long-polls need. See docs/web.md for the budget.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from controller.db import Database
from controller.pages.room import TileReader

log = logging.getLogger(__name__)

RETRY = b"retry: 1000\n\n"
KEEPALIVE = b": keepalive\n\n"


class TooManyStreams(Exception):
    pass


class FeedUnavailable(Exception):
    """The feed's reader has not read the tiles in time (the database is down or very slow)."""


class Subscription:
    """One open stream: the number of the last frame it sent."""

    def __init__(self) -> None:
        self.seq = 0


class RoomFeed:
    def __init__(self, database: Database, *, interval: float = 0.2, max_streams: int = 60,
                 stream_seconds: float = 55.0, keepalive: float = 15.0, frames_kept: int = 50,
                 first_read_timeout: float = 10.0) -> None:
        self._db = database
        self.interval = interval
        self.max_streams = max_streams
        self.stream_seconds = stream_seconds
        self.keepalive = keepalive
        self.first_read_timeout = first_read_timeout
        self._cond = threading.Condition()
        self._subs: set[Subscription] = set()
        self._reader = TileReader()
        self._tiles: dict[str, dict[str, Any]] | None = None  # the reader's last read; None until its first
        self._seq = 0  # the number of the newest frame (never reused, across reader restarts)
        self._frames: deque[tuple[int, bytes]] = deque(maxlen=frames_kept)
        self._full: tuple[int, bytes] | None = None  # every tile as of frame ``seq``, rendered on demand
        self._thread_pid: int | None = None
        self._running = False
        self.reads = 0  # how many times the reader read the tiles (tests, benchmarks)
        self.renders = 0  # how many frames (changes or every tile) were rendered

    def read_all(self) -> dict[str, dict[str, Any]]:
        """Every tile now, read in the caller's thread with a fresh reader (the room page)."""
        with self._db.session() as session:
            return TileReader().read(session)

    # -- streams ---------------------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        subscription = Subscription()
        with self._cond:
            if len(self._subs) >= self.max_streams:
                raise TooManyStreams(f"at most {self.max_streams} live room pages per web process")
            self._subs.add(subscription)
            if not self._running or self._thread_pid != os.getpid():
                self._running, self._thread_pid = True, os.getpid()
                self._tiles, self._reader = None, TileReader()  # after a fork or an idle spell: start over
                threading.Thread(target=self._run, name="room-feed", daemon=True).start()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._cond:
            self._subs.discard(subscription)

    def first_frame(self, subscription: Subscription) -> bytes:
        """Every tile as the feed holds them (waiting for the reader's first read), as one event.

        Rendered once per read however many pages connect; the subscription then follows from that frame.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._tiles is not None, timeout=self.first_read_timeout):
                raise FeedUnavailable("the room feed could not read the tiles")
            if self._full is None or self._full[0] != self._seq:
                assert self._tiles is not None
                self._full = (self._seq, _event("tiles", {"tiles": list(self._tiles.values()), "removed": [],
                                                          "full": True}))
                self.renders += 1
            subscription.seq = self._full[0]
            return self._full[1]

    def _next_frames(self, subscription: Subscription, timeout: float) -> list[bytes]:
        """The frames after the subscription's last one (waiting up to ``timeout``); [] when none came."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > subscription.seq, timeout=timeout)
            if self._seq <= subscription.seq:
                return []
            if not self._frames or self._frames[0][0] > subscription.seq + 1:
                # This stream fell behind the frames kept (a slow client): every tile again instead
                # (the condition's lock is re-entrant).
                return [self.first_frame(subscription)]
            frames = [frame for seq, frame in self._frames if seq > subscription.seq]
            subscription.seq = self._seq
            return frames

    def stream(self, subscription: Subscription, first: bytes) -> Iterator[bytes]:
        """The text/event-stream body: every tile first, then what changes, until ``stream_seconds``."""
        try:
            yield RETRY + first
            ends = time.monotonic() + self.stream_seconds
            while (left := ends - time.monotonic()) > 0:
                frames = self._next_frames(subscription, min(left, self.keepalive))
                # A keepalive when nothing came: also how a closed connection is noticed.
                yield b"".join(frames) if frames else KEEPALIVE
        finally:
            self.unsubscribe(subscription)

    # -- the reader ------------------------------------------------------------------------------------

    def _run(self) -> None:
        stop = threading.Event()
        last: dict[str, dict[str, Any]] = {}
        while True:
            with self._cond:
                if not self._subs:
                    self._running = False
                    self._tiles, self._full = None, None  # the next reader starts over
                    self._frames.clear()
                    return
            try:
                with self._db.session() as session:
                    tiles = self._reader.read(session)
            except Exception:  # a database hiccup: try again, keep the pages' streams
                log.exception("room feed: could not read the tiles")
                stop.wait(1.0)
                continue
            self.reads += 1
            # The reader hands back the same tile object for a node that did not move: mostly identity checks.
            changed = [tile for tile_id, tile in tiles.items()
                       if (old := last.get(tile_id)) is not tile and old != tile]
            removed = [tile_id for tile_id in last if tile_id not in tiles]
            # The first read after a start is not a change: pages get it as their first frame.
            first = self._tiles is None
            frame = (_event("tiles", {"tiles": changed, "removed": removed})
                     if (changed or removed) and not first else None)
            with self._cond:
                self._tiles = tiles
                if frame is not None:
                    self._seq += 1
                    self._frames.append((self._seq, frame))
                    self.renders += 1
                self._cond.notify_all()
            last = tiles
            stop.wait(self.interval)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
