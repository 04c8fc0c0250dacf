"""The API the node agents call. Everything but enroll needs the node's own token."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify, request

from controller import commands, enrollment, nodes
from controller.api.auth import node_changed, require_node
from controller.api.db_session import get_session, release_session
from controller.api.openapi import Param, documented
from controller.api.query_args import seconds_arg
from controller.api.validation import parse_body
from controller.command_bulk import Delivery, ResultPost
from controller.errors import Conflict, Unauthenticated
from controller.runtime.app_state import app_state
from node_agent.protocol import (
    AGENT_API,
    Ack,
    CommandBatch,
    CommandResult,
    EnrollRequest,
    EnrollResponse,
    Heartbeat,
    HeartbeatResponse,
    StateReport,
    encode,
)

bp = Blueprint("agent_api", __name__, url_prefix=AGENT_API)

# Between database checks a long-poll sleeps at most this long, so a lost
# cross-process notification delays a command by seconds, never loses it.
RECHECK_SECONDS = 5.0
# While this process is cut off from Redis (another process's commands cannot wake its polls), they
# re-check this often instead: a light read per waiting poll per second, for the outage only.
RECHECK_SECONDS_WITHOUT_REDIS = 1.0
WAIT = Param("wait", {"type": "number", "minimum": 0}, "seconds to hold the request open when no command is waiting")
RESYNC = Param("resync", {"type": "integer", "enum": [0, 1]},
               "1 after a lost connection: offer every command without a result again")


@bp.post("/enroll")
@documented("Trade a one-time enrollment token for a node token", request=EnrollRequest,
            responses={200: EnrollResponse}, security=None, errors=(400, 401, 409, 413, 429), common_errors=False)
def enroll():
    state = app_state()
    address = request.remote_addr or ""
    body = parse_body(EnrollRequest)  # a malformed body is a 400, not a guess
    session = get_session()
    state.enroll_guard.check(address, body.enrollment_token,
                             prefix_is_live=lambda prefix: enrollment.prefix_is_live(session, prefix))
    try:
        node, token = enrollment.enroll(
            session, body, address=address, heartbeat_interval=state.settings.heartbeat_interval
        )
    except (Unauthenticated, Conflict) as exc:
        state.enroll_guard.failed(address, body.enrollment_token)
        enrollment.record_refusal(session, exc, body, address=address)
        raise
    session.commit()
    # After the commit: a process that re-read the node before it would cache the old token again.
    for changed in (node.id, *enrollment.changed_nodes(session)):
        node_changed(changed)  # a re-enrolled node's old token (a replaced one's too) must stop working everywhere
    return jsonify(encode(EnrollResponse(
        node_id=node.id, node_token=token, name=node.name,
        heartbeat_interval=node.heartbeat_interval, poll_wait=state.settings.poll_wait_max,
    )))


@bp.post("/nodes/<node_id>/heartbeat")
@documented("Heartbeat with the state digest", request=Heartbeat, responses={200: HeartbeatResponse},
            security="node")
def heartbeat(node_id: str):
    started = time.perf_counter()
    node = require_node(node_id)
    beat = parse_body(Heartbeat)
    state = app_state()
    interval = state.heartbeat_pacer.next_interval(node.heartbeat_interval, beat.interval)
    state.heartbeats.record(node.id, beat.seq, interval)
    response = HeartbeatResponse(send_state=beat.digest != node.state_digest, heartbeat_interval=interval)
    state.metrics.heartbeat_seconds.observe(time.perf_counter() - started)
    return jsonify(encode(response))


@bp.put("/nodes/<node_id>/state")
@documented("Full state snapshot", request=StateReport, responses={200: Ack}, security="node")
def put_state(node_id: str):
    node = require_node(node_id)
    report = parse_body(StateReport)
    nodes.store_state(get_session(), node.id, digest=report.digest, snapshot=report.state,
                      max_progress_rows=app_state().settings.max_progress_rows_per_node)
    get_session().commit()
    app_state().node_cache.set_digest(node.id, report.digest)
    app_state().notifier.node_changed(node.id)
    return jsonify(encode(Ack()))


@bp.get("/nodes/<node_id>/commands")
@documented("Long-poll for commands", responses={200: CommandBatch}, query=[WAIT, RESYNC], security="node",
            errors=(429,))
def poll_commands(node_id: str):
    """Long-poll: answer as soon as there is a command for this node, or after ``wait`` seconds."""
    node_id = require_node(node_id).id
    state = app_state()
    wait = seconds_arg("wait", default=0.0, low=0.0, high=state.settings.poll_wait_max)
    resync = request.args.get("resync", "0") in ("1", "true")
    if resync:
        state.notifier.supersede_polls(node_id)
    with state.polls.slot(node_id, "long-polls per node", hold_seconds=wait, supersede=resync):
        return _hold_poll(state, node_id, wait, resync)


def _hold_poll(state, node_id: str, wait: float, resync: bool):
    give_up = time.monotonic() + wait
    generation = state.notifier.poll_generation(node_id)
    notified = False
    while True:
        if state.notifier.poll_generation(node_id) != generation:
            return jsonify(encode(CommandBatch(commands=[])))  # a newer poll of this node took over
        seen = state.notifier.version(node_id)
        options = {"resync": resync, "redeliver_after": state.settings.redeliver_after}
        taken = []
        # Woken for a command: it is there, go straight to the writer; else look read-only first.
        if notified or commands.has_deliverable(get_session(), node_id, **options):
            release_session()
            taken = state.group_commit.submit(Delivery(node_id, **options))
        batch = CommandBatch(commands=taken)
        remaining = give_up - time.monotonic()
        if taken or remaining <= 0:
            return jsonify(encode(batch))
        resync = False
        release_session()  # do not hold a pooled connection while we sleep
        recheck = RECHECK_SECONDS if state.notifier.reliable else RECHECK_SECONDS_WITHOUT_REDIS
        notified = state.notifier.wait(node_id, seen, min(remaining, recheck))


@bp.post("/nodes/<node_id>/results")
@documented("Post a command's result (idempotent)", request=CommandResult, responses={200: Ack}, security="node")
def post_result(node_id: str):
    node = require_node(node_id)
    message = parse_body(CommandResult)
    max_rows = app_state().settings.max_progress_rows_per_node
    stored = app_state().group_commit.submit(ResultPost(node, message, max_rows))
    if not stored.duplicate:
        metrics = app_state().metrics
        metrics.command_seconds.labels(kind=stored.kind).observe(stored.latency)
        metrics.results_total.labels(kind=stored.kind, outcome="ok" if message.ok else "failed").inc()
    return jsonify(encode(Ack(duplicate=stored.duplicate)))
