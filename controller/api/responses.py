"""The JSON bodies the HTTP API answers with, one pydantic model per shape (the agent's are in node_agent/protocol.py).

The OpenAPI document (controller/api/openapi.py) takes its response schemas
from these; ``extra="forbid"`` makes a field a view adds without saying so
here a failing test (tests/controller/test_openapi.py), not a silent drift.
Times are ISO 8601 text, as the services write them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Time = Annotated[str, Field(description="ISO 8601 time")]
Cursor = Annotated[str | None, Field(description="pass as ?cursor= for the next page; null on the last")]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorResponse(Answer):
    """Every 4xx/5xx answer: a machine-readable code, a sentence, and the field (body key or parameter) at fault."""

    error: str = Field(description="e.g. validation_failed, unauthenticated, not_found")
    detail: str
    field: str | None = Field(description="the body field or parameter at fault, dotted for nested ones")


class OpenAPIDocument(BaseModel):
    """/api/openapi.json itself (its full schema is the OpenAPI 3.1 specification's)."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


class Health(Answer):
    status: str
    version: str


class WhoAmI(Answer):
    kind: str
    name: str


class NodeView(Answer):
    id: str
    name: str
    state: str
    address: str
    hostname: str
    agent_version: str
    provision_host: str | None
    last_seen_at: Time | None
    enrolled_at: Time
    heartbeat_interval: float
    beats_every: float = Field(description="seconds between its heartbeats now: heartbeat_interval, or longer "
                                           "while the controller is over its heartbeat budget")


class NodeDetail(NodeView):
    state_snapshot: dict[str, Any] | None
    state_digest: str


class NodePage(Answer):
    nodes: list[NodeView]
    next: Cursor


class IssuedCommand(Answer):
    id: str
    node: str
    node_id: str


class IssuedBatch(Answer):
    batch_id: str
    commands: list[IssuedCommand]


class CommandResultView(Answer):
    ok: bool
    output: dict[str, Any]
    error: str | None
    duration_ms: float
    received_at: Time


class CommandView(Answer):
    id: str
    batch_id: str
    node_id: str
    node: str
    kind: str
    args: dict[str, Any]
    state: str
    issued_by: str
    issued_at: Time
    deadline: Time
    delivery_count: int
    delivered_at: Time | None = Field(description="when it was last handed to its node; null while pending")
    result: CommandResultView | None


class Batch(Answer):
    """A batch's counts; without ``?summary=1`` also a page of its commands."""

    batch_id: str
    total: int
    done: int
    states: dict[str, int]
    commands: list[CommandView] = Field(default_factory=list, description="absent with ?summary=1")
    next: Cursor = Field(default=None, description="absent with ?summary=1")


class EnrollTokenView(Answer):
    id: str
    prefix: str
    label: str
    status: str
    uses_left: int
    bound_host: str | None
    provision_run: str | None
    created_by: str
    created_at: Time
    expires_at: Time


class CreatedEnrollToken(EnrollTokenView):
    token: str = Field(description="the clear token, shown once")


class EnrollTokenPage(Answer):
    tokens: list[EnrollTokenView]
    next: Cursor


class AuditEntryView(Answer):
    id: int
    at: Time
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


class AuditPage(Answer):
    entries: list[AuditEntryView]
    next: Cursor


class ProgressRow(Answer):
    node: str
    attendee: str | None
    lab: str
    step: str
    status: str
    reason: str
    updated_at: Time


class ProgressPage(Answer):
    progress: list[ProgressRow]
    next: Cursor


class ProvisionHostView(Answer):
    host: str
    address: str
    state: str
    ok: int
    changed: int
    failed: int
    unreachable: int
    skipped: int
    tasks_done: int
    current_task: str
    failed_task: str
    message: str


class RunView(Answer):
    """A provisioning run as listed."""

    id: str
    playbook: str
    driver: str
    state: str
    retry_of: str | None
    requested_by: str
    tuning: dict[str, Any]
    limit: list[str]
    controller_url: str
    tasks_total: int
    created_at: Time
    started_at: Time | None
    finished_at: Time | None
    cancel_requested: bool
    error: str | None


class RunDetail(RunView):
    """A run with its hosts and how many are in each state."""

    hosts: list[ProvisionHostView]
    summary: dict[str, int]


class RunPage(Answer):
    runs: list[RunView]
    next: Cursor


class ProvisionEventView(Answer):
    seq: int
    at: Time
    host: str
    task: str
    status: str
    message: str


class RunEvents(Answer):
    run_id: str
    events: list[ProvisionEventView]
    next: Cursor


class DuplicateAttendee(Answer):
    line: int
    email: str
    reason: str


class ImportReport(Answer):
    created: int
    emails: list[str]
    duplicates: list[DuplicateAttendee]


class AttendeeView(Answer):
    id: str
    name: str
    email: str
    node: str | None
    has_access_code: bool


class AttendeePage(Answer):
    attendees: list[AttendeeView]
    next: Cursor


class Assignment(Answer):
    attendee: str
    node: str


class Assignments(Answer):
    assigned: list[Assignment]
    unassigned: list[str] = Field(description="emails left without a node")


class CredentialRow(Answer):
    name: str
    email: str
    node: str | None
    host: str | None
    login: str
    access_code: str | None = Field(description="only when issued by this call; afterwards null")
    issued_at: Time | None


class Credentials(Answer):
    credentials: list[CredentialRow]


class HelpView(Answer):
    """A raised hand in the help queue, with how long it has waited (to its resolution, once resolved)."""

    id: str
    node: str
    attendee: str | None
    source: str = Field(description="attendee (lab help) or instructor (raised from a stuck flag)")
    state: str = Field(description="open, claimed or resolved")
    lab: str | None
    step: str | None
    reason: str | None
    message: str | None
    created_at: Time
    waited_s: int
    claimed_by: str | None
    claimed_at: Time | None
    reply: str | None
    replied_by: str | None
    replied_at: Time | None
    resolved_by: str | None
    resolved_at: Time | None


class StuckView(Answer):
    """An attendee the stuck rules flag, with the reasons in words and the lab's suggested hint."""

    node: str
    attendee: str | None
    lab: str
    step: str
    reasons: list[dict[str, Any]]
    reason: str
    hint: str | None
    since: Time
    stuck_s: int
    hand_raised: bool


class StuckList(Answer):
    stuck: list[StuckView]


class HelpQueue(Answer):
    requests: list[HelpView]
    stuck: list[StuckView]


class MessageSentTo(Answer):
    id: str
    node: str


class MessagesSent(Answer):
    """One message per node (a batch): each delivered as a message.notice command."""

    batch_id: str
    kind: str = Field(description="message or hint")
    text: str = Field(description="what was sent (a hint's text from the lab catalog)")
    messages: list[MessageSentTo]


class MessageView(Answer):
    id: str
    batch_id: str
    kind: str
    lab: str
    step: str
    text: str
    sent_by: str
    created_at: Time


class SentMessageView(MessageView):
    node: str
    read: bool = Field(description="the node's agent reports its attendee has seen it")


class MessageList(Answer):
    messages: list[SentMessageView]


class UnreadMessages(Answer):
    messages: list[MessageView]


class RescueStep(Answer):
    name: str = Field(description="connect, diagnose, kill_runaway, restart_agent or wait_online")
    ok: bool
    seconds: float
    summary: str


class RescueHostView(Answer):
    """One node of a rescue: where it stands and each step it finished, timed."""

    node: str
    node_id: str
    address: str
    state: str = Field(description="pending, running, recovered, failed, refused (host key unknown or changed), "
                                   "unreachable or no_record (never provisioned over SSH)")
    current_step: str
    message: str
    steps: list[RescueStep]
    seconds: float


class RescueHostDetail(RescueHostView):
    diagnostics: dict[str, str] = Field(description="diagnose's outputs by name (redacted)")
    transcript: str = Field(description="every command and its output, redacted")


class RescueRunView(Answer):
    id: str
    trigger: str = Field(description="instructor or silent (the silent-agent beat)")
    requested_by: str
    state: str = Field(description="pending, running or done")
    created_at: Time
    finished_at: Time | None
    hosts: list[RescueHostView]


class RescueRunList(Answer):
    rescues: list[RescueRunView]
