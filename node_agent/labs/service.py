"""The one door to the lab engine for the agent's commands, its CLI and the attendee socket.

Lab actions on one VM are serialised: a reset racing a solve of the same lab
(the instructor and the attendee pressing buttons at once) would leave a mess.
Reads (list, hint, instructions, status) do not take the lock.

Who may have the agent do a step for them is decided here, once, from the
``Caller`` (the kernel's uid for the attendee socket; the instructor, through
the controller, is root): only root may solve, and ``reset --to-step`` is a
solve of the earlier steps, so for anyone else those are skipped, not solved.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from node_agent.activity import ActivityStore
from node_agent.labs import state_view
from node_agent.labs.engine import Engine
from node_agent.labs.model import PASSED, SKIPPED


@dataclass(frozen=True)
class Caller:
    uid: int

    @property
    def may_solve(self) -> bool:
        # An attendee whose steps the agent does for them would make checking meaningless.
        return self.uid == 0


ROOT = Caller(0)  # the instructor's commands and root's own `lab`/`labfleet-agent lab`


class Forbidden(Exception):
    """The caller may not do this (the message says who may)."""


class LabService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self.namespaces_initial: bool | None = None  # set by the daemon's self-check at start
        self.help_desk: Any = None  # node_agent.help_desk.HelpDesk, set by the daemon (`lab help`)
        self.message_box: Any = None  # node_agent.message_box.MessageBox, set by the daemon (`lab messages`)
        self.session_watch: Any = None  # node_agent.session_ceiling.SessionWatch: the session ceiling's hits
        self.activity = ActivityStore(engine.progress.path.parent / "activity.json") if engine.progress else None

    def list(self) -> dict[str, Any]:
        return self.engine.list()

    def check(self, lab: str, step: str | None = None) -> dict[str, Any]:
        with self._lock:
            return self.engine.check(lab, step)

    def solve(self, lab: str, step: str | None = None, *, caller: Caller) -> dict[str, Any]:
        if not caller.may_solve:
            raise Forbidden(f"solve is for root only (you are uid {caller.uid})")
        with self._lock:
            return self.engine.solve(lab, step)

    def reset(self, lab: str, to_step: str | None = None, *, caller: Caller) -> dict[str, Any]:
        if self.activity is not None:
            self.activity.reset(lab, self.current_step(lab))
        with self._lock:
            return self.engine.reset(lab, to_step, solve_earlier=caller.may_solve)

    def hint(self, lab: str, step: str, level: int) -> dict[str, Any]:
        answer = self.engine.hint(lab, step, level)
        if self.activity is not None and answer.get("level"):
            self.activity.hint(lab, step, answer["level"])
        return answer

    def instructions(self, lab: str, step: str | None = None) -> dict[str, Any]:
        return self.engine.instructions(lab, step)

    # -- the attendee's "current lab" (what `lab check` means without a lab) -------------
    def use(self, lab: str) -> dict[str, Any]:
        self.engine.catalog.get(lab)
        self._current_file().parent.mkdir(parents=True, exist_ok=True)
        self._current_file().write_text(lab)
        return {"lab": lab, "current": self.list_one(lab)}

    def current_lab(self) -> str | None:
        try:
            lab = self._current_file().read_text().strip()
        except OSError:
            lab = ""
        if lab in self.engine.catalog.labs:
            return lab
        progress = self.progress()
        touched = sorted(((max((s.get("at", "") for s in steps.values()), default=""), lab_id)
                          for lab_id, steps in progress.items() if lab_id in self.engine.catalog.labs), reverse=True)
        return touched[0][1] if touched else None

    def current_step(self, lab: str) -> str:
        """The first step that has not passed (nor been skipped by a reset): where the attendee is."""
        done = self.progress().get(lab, {})
        steps = self.engine.catalog.get(lab).steps
        for step in steps:
            if done.get(step.id, {}).get("status") not in (PASSED, SKIPPED):
                return step.id
        return steps[-1].id

    def list_one(self, lab: str) -> dict[str, Any]:
        for entry in self.list()["labs"]:
            if entry["id"] == lab:
                return entry
        raise LookupError(f"no lab {lab!r}")

    def _current_file(self):
        return self.engine.progress.path.parent / "current-lab" if self.engine.progress else None

    def progress(self) -> dict[str, Any]:
        return self.engine.progress.load() if self.engine.progress else {}

    def catalog_ids(self) -> dict[str, list[str]]:
        """Lab id -> step ids: the controller records progress only for steps this VM has."""
        return {lab.id: [s.id for s in lab.steps] for lab in self.engine.catalog.labs.values()}

    def inspect(self) -> dict[str, Any]:
        """The live view of the attendee's lab state, over every lab's names at once."""
        known = {"progress": self.progress(), "catalog": self.catalog_ids(),
                 "activity": self.activity.load() if self.activity else {}}
        lab = next(iter(self.engine.catalog.labs.values()), None)
        if lab is None:
            return {"processes": [], "cgroups": [], **known}
        try:
            ctx = self.engine.context(lab)
        except LookupError as exc:  # no attendee account (yet): say so instead of failing the report
            return {"error": str(exc), **known}
        return {**state_view.snapshot(ctx), **known, "namespaces_initial": self.namespaces_initial}
