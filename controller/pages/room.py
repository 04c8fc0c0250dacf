"""The room's tiles: one per node (and per host still being provisioned), read from the database.

A tile is a plain dict of text (what the page shows, what the live stream
sends): the attendee, the node and its host, the room state, the lab and step
the attendee is on, and the last check with its reason. Everything in it but
the state words may come from a node, so the page escapes all of it.

``TileReader`` is called a few times a second by the live feed: it re-reads
the nodes (one row each), but the lab progress only when its count or newest
time moved, and a node's lab catalog only when its state digest moved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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
        for node_id, name, hostname, address, state, _digest, provision_host, attendee in nodes:
            if node_id in tiles:  # two attendees on one node: the first one names the tile
                continue
            tiles[node_id] = self._node_tile(node_id, name, hostname or address or provision_host or "",
                                             state, attendee)
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
        progress = _Progress()
        newest: dict[str, tuple[datetime, str]] = {}
        for row_id, node_id, lab, step, status, updated_at in session.execute(
                select(LabProgress.id, LabProgress.node_id, LabProgress.lab, LabProgress.step,
                       LabProgress.status, LabProgress.updated_at)):
            progress.rows.setdefault(node_id, []).append((lab, step, status, updated_at, row_id))
            if node_id not in newest or (updated_at, row_id) > newest[node_id]:
                newest[node_id] = (updated_at, row_id)
        ids = [row_id for _, row_id in newest.values()]
        by_id = {node: row_id for node, (_, row_id) in newest.items()}
        evidence = {}
        for start in range(0, len(ids), 500):
            evidence.update(session.execute(
                select(LabProgress.id, LabProgress.evidence).where(LabProgress.id.in_(ids[start:start + 500]))).all())
        progress.reasons = {node: str((evidence.get(row_id) or {}).get("reason", "")) for node, row_id in by_id.items()}
        self._progress, self._progress_mark = progress, mark

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
