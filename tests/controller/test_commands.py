"""Commands reach their node once per poll, are redelivered after a lost connection, and store one result."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import func, select

from controller import sweep
from controller.models import Command, CommandResult, utcnow
from tests.processes import wait_until


def issue(client, seed, **body):
    response = client.post("/api/v1/commands", json=body, headers=seed.auth)
    assert response.status_code == 201, response.json
    return response.json


def poll(client, node, *, wait=0, resync=False):
    response = client.get(f"/api/agent/v1/nodes/{node.id}/commands?wait={wait}&resync={int(resync)}",
                          headers=node.auth)
    assert response.status_code == 200, response.json
    return [c["id"] for c in response.json["commands"]]


def test_exec_all_reaches_every_node_and_results_are_stored(client, seed, enroll):
    nodes = [enroll(f"vm-{i}") for i in range(3)]
    issued = issue(client, seed, kind="ping", all=True)
    assert sorted(c["node"] for c in issued["commands"]) == ["vm-0", "vm-1", "vm-2"]
    for node in nodes:
        (command_id,) = poll(client, node)
        response = client.post(f"/api/agent/v1/nodes/{node.id}/results",
                               json={"command_id": command_id, "ok": True, "output": {"pong": True}},
                               headers=node.auth)
        assert response.json == {"ok": True, "duplicate": False}
    batch = client.get(f"/api/v1/batches/{issued['batch_id']}", headers=seed.auth).json
    assert batch["done"] == batch["total"] == 3
    assert {c["state"] for c in batch["commands"]} == {"succeeded"}
    assert all(c["result"]["output"] == {"pong": True} for c in batch["commands"])


def test_a_delivered_command_is_not_offered_again_on_a_normal_poll(client, seed, enroll):
    node = enroll("vm")
    issue(client, seed, kind="ping", nodes=["vm"])
    assert len(poll(client, node)) == 1
    assert poll(client, node) == []


def test_resync_after_a_lost_connection_redelivers_commands_without_result(client, seed, enroll):
    node = enroll("vm")
    command_id = issue(client, seed, kind="ping", nodes=["vm"])["commands"][0]["id"]
    assert poll(client, node) == [command_id]
    assert poll(client, node, resync=True) == [command_id]
    client.post(f"/api/agent/v1/nodes/{node.id}/results", json={"command_id": command_id, "ok": True},
                headers=node.auth)
    assert poll(client, node, resync=True) == []


def test_a_result_posted_twice_is_stored_once(client, seed, enroll, app):
    node = enroll("vm")
    command_id = issue(client, seed, kind="ping", nodes=["vm"])["commands"][0]["id"]
    poll(client, node)
    first = {"command_id": command_id, "ok": True, "output": {"n": 1}}
    second = {"command_id": command_id, "ok": False, "error": "late duplicate"}
    assert client.post(f"/api/agent/v1/nodes/{node.id}/results", json=first, headers=node.auth).json["duplicate"] is False
    assert client.post(f"/api/agent/v1/nodes/{node.id}/results", json=second, headers=node.auth).json["duplicate"] is True
    with app.extensions["labfleet"].db.session() as session:
        results = list(session.scalars(select(CommandResult)))
        assert len(results) == 1 and results[0].output == {"n": 1}
    results_audited = client.get("/api/v1/audit?action=command.result", headers=seed.auth).json["entries"]
    assert len(results_audited) == 1


def test_long_poll_returns_as_soon_as_a_command_is_issued(client, seed, enroll, app):
    node = enroll("vm")
    got: list = []
    waiter = threading.Thread(target=lambda: got.append((poll(app.test_client(), node, wait=10), time.monotonic())))
    waiter.start()
    notifier = app.extensions["labfleet"].notifier
    wait_until(lambda: notifier.waiter_count(node.id) == 1, timeout=10, interval=0.01, what="the poll to wait")
    issued_at = time.monotonic()
    command_id = issue(client, seed, kind="ping", nodes=["vm"])["commands"][0]["id"]
    waiter.join(timeout=15)
    (commands, answered_at) = got[0]
    assert commands == [command_id]
    # Woken by the notification, not by the 10 s timeout (nor by a periodic re-check).
    assert answered_at - issued_at < 1


def test_commands_past_their_deadline_expire_and_are_not_delivered(client, seed, enroll, app):
    node = enroll("vm")
    issue(client, seed, kind="ping", nodes=["vm"], deadline=60)
    with app.extensions["labfleet"].db.session() as session:
        report = sweep.sweep(session, missed_heartbeats=3, now=utcnow() + timedelta(seconds=61))
    assert report.expired == 1
    assert poll(client, node, resync=True) == []
    with app.extensions["labfleet"].db.session() as session:
        assert session.scalar(select(Command.state)) == "expired"


def test_issuing_is_audited_with_who_what_and_which_nodes(client, seed, enroll):
    enroll("vm-1"), enroll("vm-2")
    issue(client, seed, kind="collect-state", nodes=["vm-2", "vm-1"])
    (entry,) = client.get("/api/v1/audit?action=command.issue", headers=seed.auth).json["entries"]
    assert entry["actor"] == "instructor:test-instructor"
    assert entry["detail"]["kind"] == "collect-state"
    assert sorted(entry["detail"]["nodes"]) == ["vm-1", "vm-2"]


def test_command_count_metrics_follow_the_database(client, seed, enroll, app):
    node = enroll("vm")
    command_id = issue(client, seed, kind="ping", nodes=["vm"])["commands"][0]["id"]
    poll(client, node)
    client.post(f"/api/agent/v1/nodes/{node.id}/results", json={"command_id": command_id, "ok": True},
                headers=node.auth)
    text = client.get("/metrics").data.decode()
    assert 'labfleet_commands{kind="ping",state="succeeded"} 1.0' in text
    assert 'labfleet_nodes{state="online"} 1.0' in text
    assert 'labfleet_command_seconds_count{kind="ping"} 1.0' in text
    with app.extensions["labfleet"].db.session() as session:
        assert session.scalar(select(func.count()).select_from(CommandResult)) == 1


def test_a_reconnecting_agent_supersedes_its_orphaned_poll(client, seed, enroll, app):
    """The old poll (its socket is dead) must not swallow the next command."""
    node = enroll("vm")
    orphan: list = []
    old = threading.Thread(target=lambda: orphan.append(poll(app.test_client(), node, wait=10)))
    old.start()
    notifier = app.extensions["labfleet"].notifier
    wait_until(lambda: notifier.waiter_count(node.id) == 1, timeout=10, interval=0.01, what="the old poll to wait")
    fresh: list = []
    new = threading.Thread(target=lambda: fresh.append(poll(app.test_client(), node, wait=10, resync=True)))
    new.start()
    old.join(timeout=5)
    assert orphan == [[]]  # answered at once, empty
    command_id = issue(client, seed, kind="ping", nodes=["vm"])["commands"][0]["id"]
    new.join(timeout=10)
    assert fresh == [[command_id]]


def test_a_stored_result_is_never_turned_back_into_a_delivery(client, seed, enroll, app):
    node = enroll("vm")
    command_id = issue(client, seed, kind="ping", nodes=["vm"])["commands"][0]["id"]
    assert poll(client, node) == [command_id]
    client.post(f"/api/agent/v1/nodes/{node.id}/results", json={"command_id": command_id, "ok": True},
                headers=node.auth)
    from controller import commands as commands_service

    with app.extensions["labfleet"].db.session() as session:
        # Even a resync that considers every open command leaves a finished one alone.
        assert commands_service.take_for_delivery(session, node.id, resync=True, redeliver_after=0) == []
        command = session.get(Command, command_id)
        assert (command.state, command.delivery_count) == ("succeeded", 1)
