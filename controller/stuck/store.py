"""One pass of stuck detection over the room, on data the controller already has, and its flags.

Per attendee (node) it reads, in four queries for the whole room:

- lab progress rows: where they are (current lab: the one they touched last;
  current step: its first step, in the catalog's order, not passed or skipped),
  since when (the last earlier step passing; on the lab's first step, their
  first check of it), the failing-check streak and its reason;
- the node: its last heartbeat, and the hints and resets the agent counted
  (``labs.activity`` of its state report);
- ``lab.reset`` commands the instructor issued since they reached the step.

The room's median for a step is over every attendee on it now (time so far)
or past it (time it took, when its start is known). Flags are rows of
``stuck_flags``: kept while the rules flag the node on the same step, replaced
when they flag it on another, removed as soon as they do not.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller import states
from controller.models import Attendee, Command, HelpRequest, LabProgress, Node, StuckFlag, utcnow
from controller.stuck import labs as lab_catalog
from controller.stuck.rules import Rules, Signals, evaluate

DONE = ("passed", "skipped")


@dataclass
class PassReport:
    evaluated: int
    flagged: int
    cleared: int

    def as_dict(self) -> dict[str, int]:
        return {"evaluated": self.evaluated, "flagged": self.flagged, "cleared": self.cleared}


@dataclass
class _Position:
    lab: str
    step: str
    since: datetime
    row: Any | None  # the current step's progress row, if it has one


def run_pass(session: Session, rules: Rules, *, now: datetime | None = None,
             labs_dir: Path = lab_catalog.DEFAULT_LABS_DIR) -> PassReport:
    now = now or utcnow()
    catalog = lab_catalog.catalog(labs_dir)
    nodes = session.execute(
        select(Node.id, Node.name, Node.state, Node.last_seen_at, Node.state_snapshot["labs"]["activity"],
               Node.state_snapshot["session"])
        .where(Node.state.in_((states.NODE_ONLINE, states.NODE_OFFLINE)))).all()
    rows_by_node: dict[str, list] = defaultdict(list)
    for row in session.execute(select(LabProgress.node_id, LabProgress.lab, LabProgress.step, LabProgress.status,
                                      LabProgress.updated_at, LabProgress.fail_streak, LabProgress.evidence)):
        rows_by_node[row.node_id].append(row)
    resets_by_node: dict[str, list] = defaultdict(list)
    for node_id, args, issued_at in session.execute(
            select(Command.node_id, Command.args, Command.issued_at).where(Command.kind == "lab.reset")):
        resets_by_node[node_id].append(((args or {}).get("lab"), issued_at))

    positions: dict[str, _Position] = {}
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    for node in nodes:
        position = _position(rows_by_node.get(node.id, []), catalog, samples, now)
        if position is not None:
            positions[node.id] = position

    flagged: dict[str, tuple[_Position, list[dict[str, Any]], str]] = {}
    for node in nodes:
        ceiling, hit_ago = _ceiling(node[5], now)
        position = positions.get(node.id)
        if position is None:
            reasons = evaluate(rules, Signals(node_id=node.id, node=node.name, lab="", step="", on_step_s=0.0,
                                              ceiling=ceiling, ceiling_hit_ago_s=hit_ago), None, 0)
            if reasons:  # no lab position: only the session ceiling can flag them
                flagged[node.id] = (_Position("", "", now, None), reasons, "")
            continue
        activity = _activity(node[4], position.lab, position.step)
        resets = activity.get("resets", 0) + sum(
            1 for lab, at in resets_by_node.get(node.id, ()) if lab == position.lab and at >= position.since)
        row = position.row
        failing = row is not None and row.status == "failed"
        silent = None
        if node.last_seen_at is not None:
            quiet = (now - node.last_seen_at).total_seconds()
            silent = quiet if quiet >= rules.silent_seconds or node.state == states.NODE_OFFLINE else None
        signals = Signals(
            node_id=node.id, node=node.name, lab=position.lab, step=position.step,
            on_step_s=(now - position.since).total_seconds(),
            fail_streak=row.fail_streak if failing else 0,
            fail_reason=(row.evidence or {}).get("reason", "") if failing else "",
            resets=resets, hints=activity.get("hints", 0), silent_s=silent, ceiling=ceiling,
            ceiling_hit_ago_s=hit_ago)
        sample = samples.get((position.lab, position.step), [])
        median = statistics.median(sample) if sample else None
        reasons = evaluate(rules, signals, median, len(sample))
        if reasons:
            steps = catalog.get(position.lab)
            hint = steps.hint(position.step, signals.hints) if steps else ""
            flagged[node.id] = (position, reasons, hint)
    cleared = _store(session, flagged, now)
    return PassReport(evaluated=len(positions), flagged=len(flagged), cleared=cleared)


def _position(rows: list, catalog: dict, samples: dict, now: datetime) -> _Position | None:
    """Where the node is, and (as a side effect) its times on each step into the room's samples."""
    if not rows:
        return None
    by_lab: dict[str, list] = defaultdict(list)
    for row in rows:
        by_lab[row.lab].append(row)
    current_lab = max(by_lab, key=lambda lab: max(r.updated_at for r in by_lab[lab]))
    position = None
    for lab, lab_rows in by_lab.items():
        known = catalog.get(lab)
        by_step = {r.step: r for r in lab_rows}
        order = list(known.steps) if known else sorted(by_step, key=lambda s: by_step[s].updated_at)
        first_seen = min(r.updated_at for r in lab_rows)
        start: datetime | None = None  # when the step before the one we look at was done (None: not known)
        for index, step in enumerate(order):
            row = by_step.get(step)
            if row is not None and row.status in DONE:
                if start is not None and row.status == "passed":
                    samples[(lab, step)].append(max((row.updated_at - start).total_seconds(), 0.0))
                start = row.updated_at if start is None else max(start, row.updated_at)
                continue
            since = start if start is not None else first_seen if index == 0 or row is not None else None
            if since is None:
                break  # steps skipped without a record: nothing known about where they are
            samples[(lab, step)].append(max((now - since).total_seconds(), 0.0))
            if lab == current_lab:
                position = _Position(lab, step, since, row)
            break
    return position


def _activity(activity: Any, lab: str, step: str) -> dict[str, int]:
    """Hints read and resets on this step, as the agent counted them (absent from older agents)."""
    entry = activity.get(lab, {}).get(step, {}) if isinstance(activity, dict) and isinstance(
        activity.get(lab), dict) else {}
    if not isinstance(entry, dict):
        return {}
    return {k: v for k, v in entry.items() if k in ("hints", "resets") and isinstance(v, int) and 0 <= v < 10_000}


def _ceiling(session_view: Any, now: datetime) -> tuple[dict[str, Any] | None, float | None]:
    """The agent's report of the attendee's session ceiling, and the seconds since it was last hit."""
    if not isinstance(session_view, dict) or not isinstance(session_view.get("last_hit_at"), str):
        return None, None
    try:
        at = datetime.fromisoformat(session_view["last_hit_at"].replace("Z", "+00:00"))
    except ValueError:
        return None, None
    if at.tzinfo is None:
        return None, None
    if now.tzinfo is None:  # a caller's naive UTC clock
        at = at.replace(tzinfo=None)
    view = {k: session_view.get(k) if isinstance(session_view.get(k), int) and not isinstance(
        session_view.get(k), bool) else None for k in ("pids_max", "pids_hits", "memory_max", "oom_kills")}
    return view, max((now - at).total_seconds(), 0.0)


def _store(session: Session, flagged: dict, now: datetime) -> int:
    existing = {flag.node_id: flag for flag in session.scalars(select(StuckFlag))}
    gone = [node_id for node_id in existing if node_id not in flagged]
    if gone:
        session.execute(delete(StuckFlag).where(StuckFlag.node_id.in_(gone)))
    for node_id, (position, reasons, hint) in flagged.items():
        flag = existing.get(node_id)
        if flag is None:
            session.add(StuckFlag(node_id=node_id, lab=position.lab, step=position.step, reasons=reasons,
                                  hint=hint, since=now, evaluated_at=now))
            continue
        if (flag.lab, flag.step) != (position.lab, position.step):
            flag.lab, flag.step, flag.since = position.lab, position.step, now
        if flag.reasons != reasons:
            flag.reasons = reasons
        flag.hint, flag.evaluated_at = hint, now
    session.flush()
    return len(gone)


def listing(session: Session, now: datetime | None = None) -> list[dict[str, Any]]:
    """Stuck attendees, longest first, with whether their hand is already up."""
    now = now or utcnow()
    raised = set(session.scalars(select(HelpRequest.node_id).where(HelpRequest.state.in_(("open", "claimed")))))
    rows = session.execute(select(StuckFlag, Node.name, Attendee.name.label("attendee"))
                           .join(Node, Node.id == StuckFlag.node_id)
                           .outerjoin(Attendee, Attendee.node_id == StuckFlag.node_id)
                           .order_by(StuckFlag.since, Node.name)).all()
    return [{"node": name, "attendee": attendee, "lab": flag.lab, "step": flag.step, "reasons": flag.reasons,
             "reason": "; ".join(r["text"] for r in flag.reasons), "hint": flag.hint,
             "since": flag.since.isoformat(), "stuck_s": round((now - flag.since).total_seconds()),
             "hand_raised": flag.node_id in raised} for flag, name, attendee in rows]
