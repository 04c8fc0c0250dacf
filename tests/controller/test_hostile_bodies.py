"""Bodies built to crash the parser or the database get a 4xx naming the field, and nothing is stored.

Each case here was a 500 once: Python's JSON decoder recursing past its
limit, a lab result whose ``steps`` is an object failing after its insert (and
knocking the group writer back to one job at a time), text the database
cannot hold, a heartbeat counter past the database's integer.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from controller.models import AuditEntry, Command, CommandResult, LabProgress, Node


def counts(app):
    with app.extensions["labfleet"].db.session() as session:
        return {model.__name__: session.scalar(select(func.count()).select_from(model))
                for model in (Node, Command, CommandResult, AuditEntry, LabProgress)}


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def post_raw(client, path, data: bytes, headers=None, method="post"):
    return getattr(client, method)(path, data=data, headers={**(headers or {}), "Content-Type": "application/json"})


@pytest.mark.parametrize("depth", [100_000, 200])
def test_deeply_nested_json_on_enroll_is_a_400(client, app, depth):
    before = counts(app)
    response = post_raw(client, "/api/agent/v1/enroll", nested(depth))
    assert response.status_code == 400, response.data[:200]
    assert response.json["error"] in ("malformed_body", "validation_failed")
    assert "nest" in response.json["detail"]
    assert counts(app) == before


def test_deeply_nested_state_is_refused_naming_the_field(client, enroll, app):
    node = enroll("vm")
    body = b'{"digest": "d", "state": ' + nested(200) + b"}"
    response = post_raw(client, f"/api/agent/v1/nodes/{node.id}/state", body, node.auth, method="put")
    assert response.status_code == 400
    assert response.json["field"] == "state"


def test_a_nul_character_the_database_cannot_hold_is_refused(client, seed, app):
    before = counts(app)
    body = b'{"enrollment_token": "x", "machine_id": "m", "machine_secret": "s", "name": "a\\u0000b"}'
    response = post_raw(client, "/api/agent/v1/enroll", body)
    assert response.status_code == 400, response.data[:300]
    assert response.json["field"] == "name"
    assert counts(app) == before


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e999"])
def test_numbers_json_cannot_store_are_refused(client, enroll, app, number):
    node = enroll("vm")
    body = b'{"digest": "d", "state": {"load": ' + number.encode() + b'}}'
    response = post_raw(client, f"/api/agent/v1/nodes/{node.id}/state", body, node.auth, method="put")
    assert response.status_code == 400
    assert response.json["field"] == "state.load"


def test_a_nul_in_a_path_or_query_parameter_is_a_400(client, seed):
    response = client.get("/api/v1/nodes/vm%00x", headers=seed.auth)
    assert response.status_code == 400
    assert response.json["field"] == "node_ref"
    response = client.get("/api/v1/progress?lab=a%00b", headers=seed.auth)
    assert response.status_code == 400
    assert response.json["field"] == "lab"


def test_a_heartbeat_counter_past_the_database_integer_is_refused(client, enroll):
    node = enroll("vm")
    response = client.post(f"/api/agent/v1/nodes/{node.id}/heartbeat", json={"seq": 2**31, "digest": "d"},
                           headers=node.auth)
    assert response.status_code == 400
    assert response.json["field"] == "seq"


@pytest.mark.parametrize("output,field", [
    ({"lab": "cg-pids", "steps": {"a": {"step": "s", "status": "passed"}}}, "output.steps"),
    ({"lab": "cg-pids", "steps": [{"step": 5, "status": "passed"}]}, "output.steps.0.step"),
    ({"lab": ["cg-pids"], "steps": []}, "output.lab"),
])
def test_a_lab_result_of_the_wrong_shape_is_a_400_before_anything_is_stored(
        client, seed, enroll, app, caplog, output, field):
    node = enroll("vm")
    issued = client.post("/api/v1/commands", json={"kind": "lab.check", "args": {"lab": "cg-pids"},
                                                   "nodes": ["vm"]}, headers=seed.auth).json
    (command,) = client.get(f"/api/agent/v1/nodes/{node.id}/commands", headers=node.auth).json["commands"]
    before = counts(app)
    with caplog.at_level(logging.WARNING, logger="controller.runtime.group_commit"):
        response = client.post(f"/api/agent/v1/nodes/{node.id}/results",
                               json={"command_id": command["id"], "ok": True, "output": output}, headers=node.auth)
    assert response.status_code == 400, response.data[:300]
    assert response.json["field"] == field
    assert counts(app) == before
    # The group writer kept batching: nothing failed inside a group transaction.
    assert "group commit" not in caplog.text
    # The node can still post the right result for the same command.
    good = {"lab": "cg-pids", "steps": [{"step": "limit-set", "status": "failed", "reason": "not yet"}]}
    response = client.post(f"/api/agent/v1/nodes/{node.id}/results",
                           json={"command_id": command["id"], "ok": True, "output": good}, headers=node.auth)
    assert response.status_code == 200, response.json
    batch = client.get(f"/api/v1/batches/{issued['batch_id']}", headers=seed.auth).json
    assert batch["done"] == 1
