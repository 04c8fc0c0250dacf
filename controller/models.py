"""SQLAlchemy models: the desired and observed state of every event and node.

Models only: no queries, no business rules (those live in the service modules
named after each domain: ``nodes.py``, ``commands.py``, ``enrollment.py``,
``audit.py``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from controller import states


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Event(Base):
    """One run of a workshop: the room its nodes and attendees belong to."""

    __tablename__ = "events"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Instructor(Base):
    __tablename__ = "instructors"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The web pages' login (controller/web_accounts.py): an argon2id hash; None: no page login.
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Removed with `labfleet instructor remove`: no login, no API token; `add` brings the name back.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiToken(Base):
    """An instructor's API token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    instructor_id: Mapped[str] = mapped_column(ForeignKey("instructors.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    instructor: Mapped[Instructor] = relationship()


class EnrollmentToken(Base):
    """A one-time, expiring token a new lab VM trades for its own node token.

    A provisioning run mints one per inventory host (``bound_host``, ``provision_run_id``):
    only a machine enrolling under that host's name can use it, and the run revokes it
    when it ends.
    """

    __tablename__ = "enrollment_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, to recognise it in a list without revealing it.
    prefix: Mapped[str] = mapped_column(String(12))
    label: Mapped[str] = mapped_column(String(120), default="")
    uses_left: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    bound_host: Mapped[str | None] = mapped_column(String(64), nullable=True)
    provision_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)


class Node(Base):
    """A lab VM (or local fleet host) with its running agent."""

    __tablename__ = "nodes"
    __table_args__ = (UniqueConstraint("event_id", "machine_id"), UniqueConstraint("event_id", "name"))
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    machine_id: Mapped[str] = mapped_column(String(64))
    machine_secret_hash: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=states.NODE_ONLINE, index=True)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    address: Mapped[str] = mapped_column(String(64), default="")
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    heartbeat_interval: Mapped[float] = mapped_column(Float)  # the node's own, set at enrollment
    # The interval the controller last answered its heartbeat with: longer than its own while the
    # controller is over its heartbeat budget (controller/runtime/heartbeat_pacer.py). None: its own.
    paced_interval: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    state_digest: Mapped[str] = mapped_column(String(128), default="")
    # Deferred: listing a room's nodes must not parse every snapshot.
    state_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, deferred=True)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The inventory host a provisioning run's bound token made this node (None: enrolled by hand).
    # Credentials sheets and teardown match nodes to hosts by this, never by the name a node asked for.
    provision_host: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    event: Mapped[Event] = relationship()

    @property
    def beats_every(self) -> float:
        """Seconds between its heartbeats now: its own interval, or the longer one it was told to use."""
        return max(self.heartbeat_interval, self.paced_interval or 0.0)


class Attendee(Base):
    __tablename__ = "attendees"
    __table_args__ = (UniqueConstraint("event_id", "email"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(254))
    node_id: Mapped[str | None] = mapped_column(ForeignKey("nodes.id"), nullable=True, index=True)
    access_code_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the current access code was printed (it is shown once, then only its hash is kept).
    access_code_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Command(Base):
    """An action for one node, issued by someone, with a deadline."""

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_node_state", "node_id", "state"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    batch_id: Mapped[str] = mapped_column(String(32), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    kind: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=states.COMMAND_PENDING)
    issued_by: Mapped[str] = mapped_column(String(120))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    timeout: Mapped[float] = mapped_column(Float)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivery_count: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    node: Mapped[Node] = relationship()
    result: Mapped[CommandResult | None] = relationship(back_populates="command", uselist=False)


class CommandResult(Base):
    """What the node reported. One per command: a repeated post is stored once."""

    __tablename__ = "command_results"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    command_id: Mapped[str] = mapped_column(ForeignKey("commands.id"), unique=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    output: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[str] = mapped_column(String(40), default="")
    finished_at: Mapped[str] = mapped_column(String(40), default="")
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    command: Mapped[Command] = relationship(back_populates="result")


class LabProgress(Base):
    """The last check outcome of one lab step on one node, with its evidence."""

    __tablename__ = "lab_progress"
    __table_args__ = (UniqueConstraint("node_id", "lab", "step"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    attendee_id: Mapped[str | None] = mapped_column(ForeignKey("attendees.id"), nullable=True)
    lab: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Checks in a row that failed with the same reason (stuck detection), and when the last one ran.
    fail_streak: Mapped[int] = mapped_column(Integer, default=0)
    checked_at: Mapped[str] = mapped_column(String(40), default="")


class AuditEntry(Base):
    """Who did what to which node, and when. Never holds a secret."""

    __tablename__ = "audit_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(160))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(160), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ProvisionRun(Base):
    """One ansible-runner run of a playbook over an inventory (see ``controller/provision/``).

    ``hosts`` is the inventory as resolved when the run was asked for (names,
    addresses, users, key paths: never a secret), so a retry reaches the same
    machines; ``limit_hosts`` names the hosts this run touches (empty: all).
    """

    __tablename__ = "provision_runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    playbook: Mapped[str] = mapped_column(String(64))
    driver: Mapped[str] = mapped_column(String(32))
    hosts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    limit_hosts: Mapped[list[str]] = mapped_column(JSON, default=list)
    tuning: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    controller_url: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    retry_of: Mapped[str | None] = mapped_column(String(32), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Tasks each host is expected to run (from ``ansible-playbook --list-tasks``): the progress bar's total.
    tasks_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ProvisionHostStatus(Base):
    """Where one host of a run stands: counts per outcome, the task it is on, why it failed."""

    __tablename__ = "provision_host_status"
    __table_args__ = (UniqueConstraint("run_id", "host"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("provision_runs.id"), index=True)
    host: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), default="pending")
    ok: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    unreachable: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    tasks_done: Mapped[int] = mapped_column(Integer, default=0)
    current_task: Mapped[str] = mapped_column(String(255), default="")
    failed_task: Mapped[str] = mapped_column(String(255), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProvisionEvent(Base):
    """One ansible-runner event for one host and task, already redacted."""

    __tablename__ = "provision_events"
    __table_args__ = (Index("ix_provision_events_run_seq", "run_id", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("provision_runs.id"))
    seq: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(64), default="")
    task: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HelpRequest(Base):
    """A raised hand: from the attendee (``lab help``) or an instructor turning a stuck flag into one."""

    __tablename__ = "help_requests"
    __table_args__ = (Index("ix_help_requests_state_created", "state", "created_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    attendee_id: Mapped[str | None] = mapped_column(ForeignKey("attendees.id"), nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="attendee")  # attendee | stuck
    lab: Mapped[str] = mapped_column(String(64), default="")
    step: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | claimed | resolved
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(160), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reply: Mapped[str] = mapped_column(Text, default="")
    replied_by: Mapped[str | None] = mapped_column(String(160), nullable=True)
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(160), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    node: Mapped[Node] = relationship()


class StuckFlag(Base):
    """A node the stuck rules flag now (one row per node; removed when the rules no longer flag it)."""

    __tablename__ = "stuck_flags"
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), primary_key=True)
    lab: Mapped[str] = mapped_column(String(64), default="")
    step: Mapped[str] = mapped_column(String(64), default="")
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    hint: Mapped[str] = mapped_column(Text, default="")
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Message(Base):
    """A message or a lab hint an instructor sent to one attendee's node (``labfleet message``).

    Delivered as a ``message.notice`` command; the agent keeps it until the attendee has seen it
    and reports the ids it has shown in its state snapshot (``messages.read``).
    """

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_node_created", "node_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    attendee_id: Mapped[str | None] = mapped_column(ForeignKey("attendees.id"), nullable=True)
    batch_id: Mapped[str] = mapped_column(String(32), index=True)  # one send to a selection or the room
    kind: Mapped[str] = mapped_column(String(16), default="message")  # message | hint
    lab: Mapped[str] = mapped_column(String(64), default="")
    step: Mapped[str] = mapped_column(String(64), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    sent_by: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RescueRun(Base):
    """One SSH rescue request (``labfleet rescue``, the API, or the silent-agent beat): its hosts are below."""

    __tablename__ = "rescue_runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    trigger: Mapped[str] = mapped_column(String(16), default="instructor")  # instructor | silent
    requested_by: Mapped[str] = mapped_column(String(160))
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending|running|done
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RescueHost(Base):
    """One node's rescue in a run: its state, the step it is on, each step timed, and the redacted transcript."""

    __tablename__ = "rescue_hosts"
    __table_args__ = (UniqueConstraint("run_id", "node_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("rescue_runs.id"), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    node_name: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(255), default="")
    # pending | running | recovered | failed | refused (host key unknown or changed) | unreachable
    state: Mapped[str] = mapped_column(String(16), default="pending")
    current_step: Mapped[str] = mapped_column(String(32), default="")
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{name, ok, seconds, summary}]
    diagnostics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    transcript: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
