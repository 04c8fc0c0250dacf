"""Per-process cache of node token -> node identity, so a heartbeat needs no database read.

Heartbeats are the hottest request (500 nodes every 5 s, and benchmarks push
1,000/s); reading the node row for each one costs more than everything else
in the request. Entries live ``ttl`` seconds and are dropped at once when a
node's token or state digest changes: in this process directly, in the
others through the notifier's Redis channel. Without Redis and with several
web processes, a revoked token may still pass for up to ``ttl`` seconds in
the other processes; the default single process has no such window.
See docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.principals import NodeIdentity


class NodeTokenCache:
    def __init__(self, *, ttl: float = 30.0, max_entries: int = 20_000) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, NodeIdentity]] = {}
        self._by_node: dict[str, str] = {}

    def get(self, token_hash: str) -> NodeIdentity | None:
        with self._lock:
            entry = self._entries.get(token_hash)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                self._drop(token_hash)
                return None
            return entry[1]

    def put(self, token_hash: str, identity: NodeIdentity) -> None:
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
                self._by_node.clear()
            old = self._by_node.get(identity.id)
            if old is not None and old != token_hash:
                self._entries.pop(old, None)
            # Spread expiries: a room enrolled in one minute must not miss all at once.
            self._entries[token_hash] = (time.monotonic() + self._ttl * random.uniform(0.5, 1.0), identity)
            self._by_node[identity.id] = token_hash

    def forget_node(self, node_id: str) -> None:
        with self._lock:
            token_hash = self._by_node.get(node_id)
            if token_hash is not None:
                self._drop(token_hash)

    def clear(self) -> None:
        """Forget everything: the notifier was cut off from Redis and may have missed a change."""
        with self._lock:
            self._entries.clear()
            self._by_node.clear()

    def set_digest(self, node_id: str, digest: str) -> None:
        with self._lock:
            token_hash = self._by_node.get(node_id)
            entry = self._entries.get(token_hash) if token_hash else None
            if entry is not None:
                self._entries[token_hash] = (entry[0], dataclasses.replace(entry[1], state_digest=digest))

    def _drop(self, token_hash: str) -> None:
        _, identity = self._entries.pop(token_hash)
        if self._by_node.get(identity.id) == token_hash:
            del self._by_node[identity.id]
