"""The JSON the pages' scripts send and get (web/static/*.js), as pydantic models for /api/openapi.json.

The pages' JSON routes (the matrix's data, the bulk actions, the node page's
live view and actions, the attendee page's progress, actions and commands,
the attendee terminal's banner, the provisioning page's state and actions) are documented like the API's
(controller/api/openapi.py), under the session-cookie security schemes
``instructor_session`` and ``attendee_session``. The views check their bodies
themselves (naming the field at fault); the request models here say what they
accept. ``extra="forbid"`` on the answers makes a field a view adds without
saying so here a failing test (tests/openapi_check.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.api.responses import Answer, AttendeeView, CommandView, RunDetail, RunView, Time

# -- requests ---------------------------------------------------------------------------------------


class Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class BulkRequest(Body):
    """One command to the selected nodes, from the matrix or the room."""

    kind: Literal["lab.check", "lab.solve", "lab.reset"]
    lab: str = Field(min_length=1)
    step: str | None = Field(default=None, description="check or solve this step; reset to it (empty: the whole lab)")
    nodes: list[str] = Field(min_length=1, max_length=2000, description="node ids")


class NodeActionRequest(Body):
    """One action from the node page's buttons; ``args`` as ``POST /api/v1/commands`` takes them for the kind."""

    kind: Literal["lab.check", "lab.solve", "lab.reset", "collect-state", "agent-restart", "inspect"]
    args: dict[str, Any] = Field(default_factory=dict, description="lab.*: must name a lab the node has")


class AttendeeActionRequest(Body):
    """An attendee's button: on their own node only, rate limited (429)."""

    action: Literal["check", "hint", "reset", "instructions"]
    lab: str = Field(description="one of the attendee's labs")
    step: str | None = Field(default=None, description="a step of that lab (hint: required; reset: reset to it)")
    level: int = Field(default=1, ge=1, le=20, description="hint: which hint of the step")


# -- answers ----------------------------------------------------------------------------------------


class MatrixColumn(Answer):
    lab: str
    step: str
    failing: int
    passed: int
    reasons: list[tuple[int, str]] = Field(description="[attendees, reason], most common first")


class MatrixRow(Answer):
    id: str
    attendee: str
    name: str
    state: Literal["online", "offline"]
    cells: list[tuple[str, str, str]] = Field(description="per column: [class, status, reason]")


LabSteps = tuple[str, list[str]]


class MatrixData(Answer):
    columns: list[MatrixColumn]
    rows: list[MatrixRow]
    catalog: list[LabSteps] = Field(description="[lab, [step, ...]] pairs, in the labs' order")


class BulkLabs(Answer):
    catalog: list[LabSteps] = Field(description="[lab, [step, ...]] pairs over every enrolled node")


class BulkCommand(Answer):
    id: str
    node: str
    node_id: str


class BulkIssued(Answer):
    batch_id: str
    kind: str
    args: dict[str, Any]
    commands: list[BulkCommand]


class BulkCommandView(CommandView):
    attendee: str
    summary: str = Field(description="one line for the result list: the error, or each step's status")


class BulkResults(Answer):
    batch_id: str
    total: int
    done: int
    states: dict[str, int]
    commands: list[BulkCommandView]


class NodeStepView(Answer):
    step: str
    status: str
    reason: str
    at: str = Field(description="ISO 8601 time; empty while not started")


class NodeLabView(Answer):
    lab: str
    steps: list[NodeStepView]


class NodeCommandView(Answer):
    id: str
    kind: str
    args: dict[str, Any]
    state: str
    issued_by: str
    issued_at: Time
    ok: bool | None
    error: str
    output: dict[str, Any] | None


class NodeLive(Answer):
    """Everything the node page shows (its ``inspect`` view, progress and newest commands)."""

    id: str
    name: str
    hostname: str
    address: str
    state: str
    attendee: str
    agent_version: str
    last_seen_at: str = Field(description="ISO 8601 time; empty if never seen")
    beats_every: float = Field(description="seconds between its heartbeats now: its own interval, or longer "
                                           "while the controller is over its heartbeat budget")
    heartbeat_interval: float = Field(description="its own heartbeat interval (seconds)")
    kernel: str
    seccomp: dict[str, Any]
    processes: list[Any]
    cgroups: list[Any]
    labs_error: str
    activity: dict[str, Any]
    progress: list[NodeLabView]
    commands: list[NodeCommandView]


class NodeActionIssued(Answer):
    command_id: str
    batch_id: str


class AttendeeStep(Answer):
    step: str
    status: str
    reason: str


class AttendeeLab(Answer):
    lab: str
    steps: list[AttendeeStep]


class AttendeeHelp(Answer):
    """The node's latest raised hand, as the attendee sees it."""

    id: int | str
    state: str
    lab: str | None
    step: str | None
    message: str
    claimed_by: str
    reply: str
    replied_by: str
    resolved_by: str
    created_at: Time


class AttendeeMessage(Answer):
    id: int | str
    kind: str
    lab: str | None
    step: str | None
    text: str
    sent_by: str
    created_at: Time
    read: bool = Field(description="the node's agent reports the attendee saw it")


class AttendeeProgress(Answer):
    node_state: str
    labs: list[AttendeeLab]
    help: AttendeeHelp | None = Field(description="the latest raised hand; null if none")
    messages: list[AttendeeMessage] = Field(description="the newest instructor messages and hints, newest first")


class AttendeeHelpRequest(Body):
    """"Raise my hand" (rate limited with the attendee's other actions)."""

    message: str = Field(default="", description="what the attendee says (bounded)")
    lab: str | None = Field(default=None, description="one of the attendee's labs; default the last touched")
    step: str | None = Field(default=None, description="a step of that lab; default its first not done")


class AttendeeActionIssued(Answer):
    command_id: str = Field(description="follow it at /attendee/commands/{command_id}")


class AttendeeInstructionStep(Answer):
    step: str
    title: str
    html: str = Field(description="the step's Markdown, rendered and sanitized")
    hints: int


class AttendeeCommand(Answer):
    """One of the attendee's own commands; the fields after ``error`` depend on its kind."""

    id: str
    kind: str
    state: str
    done: bool
    ok: bool | None
    error: str
    steps: list[AttendeeStep] | list[AttendeeInstructionStep] | None = Field(
        default=None, description="lab.check: each step's status; lab.instructions: each step's text")
    hint_html: str | None = Field(default=None, description="lab.hint: the hint, rendered and sanitized")
    level: int | None = Field(default=None, description="lab.hint")
    of: int | None = Field(default=None, description="lab.hint: how many hints the step has")
    title: str | None = Field(default=None, description="lab.instructions")
    summary_html: str | None = Field(default=None, description="lab.instructions")


class TerminalStatus(Answer):
    watching: list[str] = Field(description="instructors watching the attendee's terminal")
    consent: bool = Field(description="the attendee let them type")


class InventoryHosts(Answer):
    hosts: list[str] = Field(description="the hosts the uploaded inventory names, as a run would read them")


class ProvisioningState(Answer):
    """What the provisioning page polls."""

    latest: RunDetail | None = Field(description="the newest run with its hosts")
    runs: list[RunView] = Field(description="the recent runs, newest first")
    attendees: list[AttendeeView]
    free_nodes: list[str] = Field(description="names of enrolled nodes no attendee holds")
