"""The room's tiles: one per node (and per host still being provisioned), read from the database.

A tile is a plain dict of text (what the page shows, what the live stream
sends): the attendee, the node and its host, the room state, the lab and step
the attendee is on, and the last check with its reason. Everything in it but
the state words may come from a node, so the page escapes all of it.

``TileReader`` is called a few times a second by the live feed: it re-reads
the nodes (one row each), but the lab progress only when its count or newest
time moved (and then only the rows written since, unless rows were deleted),
and a node's lab catalog only when its state digest moved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controller import lab_progress, states
from controller.models import Attendee, LabProgress, Node, ProvisionHostStatus, ProvisionRun
from controller.provision import states as run_states

# The room's states: a word, a glyph and a colour (never colour alone; see docs/web.md).
ROOM_STATES = {
    "provisioning": "◌",
    "online": "●",
    "offline": "○",
    "needs-help": "⚑",
    "stuck": "⚠",
    "done": "✓",
}
CHECK_GLYPHS = {"passed": "✓", "failed": "✗", "skipped": "↷", "unavailable": "?", "forged": "!"}
FINISHED = ("passed", "skipped")
# The live reader re-reads only the progress rows written since its last read, looking this far back for
# writers that took their time stamp before a slow commit, and reads every row again this often anyway.
LATE_COMMIT_SECONDS = 5.0
FULL_READ_SECONDS = 30.0
# Nodes that left the room: they have no tile.
GONE = (states.NODE_REVOKED, states.NODE_RETIRED)


@dataclass
class _Progress:
    rows: dict[str, list[tuple[str, str, str, datetime, str]]] = field(default_factory=dict)  # node -> rows
    reasons: dict[str, str] = field(default_factory=dict)  # node -> reason of its newest row


@dataclass
class TileReader:
    """Reads every tile; keeps what did not change since the last read (one reader per feed)."""

    _progress_mark: tuple[int, Any] | None = None
    _progress: _Progress = field(default_factory=_Progress)
    _catalogs: dict[str, tuple[str, dict[str, list[str]]]] = field(default_factory=dict)  # node -> (digest, labs)
    _rows_by_id: dict[str, tuple[str, str, str, str, datetime]] = field(default_factory=dict)
    _full_read_at: float = 0.0
    # node -> (what its tile was built from, the tile): a node whose row, progress and catalog did not move
    # keeps the very same tile object, so the feed's comparison with its last read is an identity check.
    _tiles: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    _progress_versions: dict[str, int] = field(default_factory=dict)  # node -> bumped when its rows move
    _progress_generation: int = 0  # bumped by every full read of the progress

    def read(self, session: Session) -> dict[str, dict[str, Any]]:
        nodes = session.execute(
            select(Node.id, Node.name, Node.hostname, Node.address, Node.state, Node.state_digest,
                   Node.provision_host, Attendee.name)
            .outerjoin(Attendee, Attendee.node_id == Node.id)
            .where(Node.state.not_in(GONE))
        ).all()
        self._refresh_progress(session)
        self._refresh_catalogs(session, {row[0]: row[5] for row in nodes})
        tiles: dict[str, dict[str, Any]] = {}
        built: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        for node_id, name, hostname, address, state, _digest, provision_host, attendee in nodes:
            if node_id in tiles:  # two attendees on one node: the first one names the tile
                continue
            host = hostname or address or provision_host or ""
            key = (name, host, state, attendee, self._progress_generation, self._progress_versions.get(node_id, 0),
                   self._catalogs.get(node_id, ("",))[0])
            cached = self._tiles.get(node_id)
            tile = cached[1] if cached is not None and cached[0] == key else self._node_tile(
                node_id, name, host, state, attendee)
            tiles[node_id] = tile
            built[node_id] = (key, tile)
        self._tiles = built
        enrolled_hosts = {row[6] for row in nodes if row[6]}
        for tile in _provisioning_tiles(session, enrolled_hosts):
            tiles[tile["id"]] = tile
        return tiles

    def _node_tile(self, node_id: str, name: str, host: str, state: str, attendee: str | None) -> dict[str, Any]:
        rows = self._progress.rows.get(node_id, [])
        catalog = self._catalogs.get(node_id, ("", {}))[1]
        tile = _tile(node_id, attendee or "", name, host,
                     "offline" if state == states.NODE_OFFLINE else "online")
        if not rows:
            return tile
        statuses = {(lab, step): status for lab, step, status, _, _ in rows}
        lab, step, status, at, _ = max(rows, key=lambda r: (r[3], r[4]))
        if tile["state"] == "online" and catalog and all(
                statuses.get((lab_id, s)) in FINISHED for lab_id, steps in catalog.items() for s in steps):
            tile.update(state="done", glyph=ROOM_STATES["done"])
        # The step they are on: the first one of the lab they last checked that is not passed yet.
        open_steps = [s for s in catalog.get(lab, []) if statuses.get((lab, s)) not in FINISHED]
        tile.update(
            lab=lab,
            step=open_steps[0] if open_steps else ("complete" if catalog.get(lab) else step),
            check_step=step, check_status=status, check_glyph=CHECK_GLYPHS.get(status, "?"),
            check_reason=self._progress.reasons.get(node_id, ""), check_at=at.isoformat(),
        )
        return tile

    def _refresh_progress(self, session: Session) -> None:
        mark = tuple(session.execute(select(func.count(LabProgress.id), func.max(LabProgress.updated_at))).one())
        if mark == self._progress_mark:
            return
        now = time.monotonic()
        previous = self._progress_mark
        if previous is None or previous[1] is None or now - self._full_read_at > FULL_READ_SECONDS:
            self._read_all_progress(session, mark, now)
            return
        # Only the rows written since the last read (with a margin for writers that committed late); a
        # count that does not add up means rows were deleted (a lab reset): read everything again.
        since = previous[1] - timedelta(seconds=LATE_COMMIT_SECONDS)
        touched: set[str] = set()
        for row_id, node_id, lab, step, status, updated_at in session.execute(
                select(LabProgress.id, LabProgress.node_id, LabProgress.lab, LabProgress.step,
                       LabProgress.status, LabProgress.updated_at).where(LabProgress.updated_at >= since)):
            old = self._rows_by_id.get(row_id)
            if old is not None and old[1:] == (lab, step, status, updated_at):
                continue
            self._rows_by_id[row_id] = (node_id, lab, step, status, updated_at)
            touched.add(node_id)
        if len(self._rows_by_id) != mark[0]:
            self._read_all_progress(session, mark, now)
            return
        if touched:
            rows = {node_id: [] for node_id in touched}
            for row_id, (node_id, lab, step, status, updated_at) in self._rows_by_id.items():
                if node_id in rows:
                    rows[node_id].append((lab, step, status, updated_at, row_id))
            progress = _Progress(rows={**self._progress.rows, **rows}, reasons=dict(self._progress.reasons))
            progress.reasons.update(self._reasons(session, rows))
            self._progress = progress
            for node_id in touched:
                self._progress_versions[node_id] = self._progress_versions.get(node_id, 0) + 1
        self._progress_mark = mark

    def _read_all_progress(self, session: Session, mark: tuple[int, Any], now: float) -> None:
        progress = _Progress()
        by_id: dict[str, tuple[str, str, str, str, datetime]] = {}
        for row_id, node_id, lab, step, status, updated_at in session.execute(
                select(LabProgress.id, LabProgress.node_id, LabProgress.lab, LabProgress.step,
                       LabProgress.status, LabProgress.updated_at)):
            progress.rows.setdefault(node_id, []).append((lab, step, status, updated_at, row_id))
            by_id[row_id] = (node_id, lab, step, status, updated_at)
        progress.reasons = self._reasons(session, progress.rows)
        self._progress, self._progress_mark, self._rows_by_id, self._full_read_at = progress, mark, by_id, now
        self._progress_generation += 1

    @staticmethod
    def _reasons(session: Session, rows: dict[str, list[tuple[str, str, str, datetime, str]]]) -> dict[str, str]:
        """The reason of each node's newest row."""
        by_node = {node_id: max(node_rows, key=lambda r: (r[3], r[4]))[4] for node_id, node_rows in rows.items()
                   if node_rows}
        ids = list(by_node.values())
        evidence = {}
        for start in range(0, len(ids), 500):
            evidence.update(session.execute(
                select(LabProgress.id, LabProgress.evidence).where(LabProgress.id.in_(ids[start:start + 500]))).all())
        return {node: str((evidence.get(row_id) or {}).get("reason", "")) for node, row_id in by_node.items()}

    def _refresh_catalogs(self, session: Session, digests: dict[str, str]) -> None:
        stale = [node_id for node_id, digest in digests.items()
                 if self._catalogs.get(node_id, (None,))[0] != digest]
        for node_id in set(self._catalogs) - set(digests):
            del self._catalogs[node_id]
        for start in range(0, len(stale), 200):
            for node_id, digest, snapshot in session.execute(
                    select(Node.id, Node.state_digest, Node.state_snapshot)
                    .where(Node.id.in_(stale[start:start + 200]))):
                self._catalogs[node_id] = (digest, ordered_catalog(snapshot))


def ordered_catalog(snapshot: Any) -> dict[str, list[str]]:
    """The node's lab catalog (validated as ``lab_progress`` does) with its steps in the order it gave."""
    known = lab_progress.reported_catalog(snapshot)
    raw = snapshot["labs"]["catalog"] if known else {}
    return {lab: [s for s in raw[lab] if s in steps] for lab, steps in known.items()}


def _tile(tile_id: str, attendee: str, name: str, host: str, state: str) -> dict[str, Any]:
    return {"id": tile_id, "attendee": attendee, "name": name, "host": host, "state": state,
            "glyph": ROOM_STATES[state], "lab": "", "step": "", "check_step": "", "check_status": "",
            "check_glyph": "", "check_reason": "", "check_at": ""}


def _provisioning_tiles(session: Session, enrolled_hosts: set[str]) -> list[dict[str, Any]]:
    """Hosts of a running provisioning run that have no node yet."""
    rows = session.execute(
        select(ProvisionHostStatus.run_id, ProvisionHostStatus.host, ProvisionHostStatus.address,
               ProvisionHostStatus.current_task)
        .join(ProvisionRun, ProvisionRun.id == ProvisionHostStatus.run_id)
        .where(ProvisionRun.state.in_(run_states.RUN_OPEN_STATES), ProvisionHostStatus.state != "failed")
    ).all()
    tiles = []
    for run_id, host, address, task in rows:
        if host in enrolled_hosts:
            continue
        tile = _tile(f"provision-{run_id}-{host}", "", host, address, "provisioning")
        tile["check_reason"] = task
        tiles.append(tile)
    return tiles


def sort_key(tile: dict[str, Any]) -> tuple[str, str]:
    return ((tile["attendee"] or "\uffff").lower(), tile["name"].lower())
