"""Bad input gets a 4xx whose JSON names the field, and nothing reaches the database."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from controller.models import AuditEntry, Command, CommandResult, Node


def counts(app):
    with app.extensions["labfleet"].db.session() as session:
        return {model.__name__: session.scalar(select(func.count()).select_from(model))
                for model in (Node, Command, CommandResult, AuditEntry)}


def test_malformed_json_is_refused(client, enroll, app):
    node = enroll("vm")
    before = counts(app)
    response = client.post(f"/api/agent/v1/nodes/{node.id}/heartbeat", data=b'{"seq": 1,',
                           headers={**node.auth, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["error"] == "malformed_body"
    assert counts(app) == before


def test_body_that_is_not_json_content_type_is_refused(client, seed):
    response = client.post("/api/v1/commands", data="kind=ping", headers={**seed.auth,
                           "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert response.json["error"] == "malformed_body"


@pytest.mark.parametrize("body,field", [
    ({"seq": "1", "digest": "d"}, "seq"),
    ({"seq": -1, "digest": "d"}, "seq"),
    ({"seq": 1, "digest": 5}, "digest"),
    ({"digest": "d"}, "seq"),
    ({"seq": 1, "digest": "x" * 500}, "digest"),
    ([1, 2], None),
])
def test_heartbeat_with_wrong_types_names_the_field(client, enroll, body, field):
    node = enroll("vm")
    response = client.post(f"/api/agent/v1/nodes/{node.id}/heartbeat", json=body, headers=node.auth)
    assert response.status_code == 400
    assert response.json["error"] == "validation_failed"
    assert response.json["field"] == field


@pytest.mark.parametrize("body,field", [
    ({"kind": "shell", "args": {"cmd": "rm -rf /"}, "all": True}, "kind"),
    ({"kind": "ping", "args": {"delay_ms": "10"}, "all": True}, "args.delay_ms"),
    ({"kind": "ping", "args": {"cmd": "id"}, "all": True}, "args.cmd"),
    ({"kind": "ping", "nodes": "vm"}, "nodes"),
    ({"kind": "ping", "all": True, "timeout": -1}, "timeout"),
    ({"kind": "ping"}, "nodes"),
    ({"kind": "ping", "nodes": ["no-such-node"]}, "nodes"),
])
def test_bad_commands_are_refused_and_nothing_is_stored(client, seed, enroll, app, body, field):
    enroll("vm")
    before = counts(app)
    response = client.post("/api/v1/commands", json=body, headers=seed.auth)
    assert response.status_code in (400, 404)
    assert response.json["field"] == field
    assert set(response.json) == {"error", "detail", "field"}
    assert counts(app) == before


def test_oversized_body_gets_413(client, enroll, app, settings):
    node = enroll("vm")
    before = counts(app)
    huge = {"digest": "d", "state": {"blob": "x" * (settings.max_body_bytes + 10)}}
    response = client.put(f"/api/agent/v1/nodes/{node.id}/state", json=huge, headers=node.auth)
    assert response.status_code == 413
    assert response.json["error"] == "payload_too_large"
    assert counts(app) == before
    with app.extensions["labfleet"].db.session() as session:
        assert session.get(Node, node.id).state_snapshot == {}


def test_bad_long_poll_wait_names_the_parameter(client, enroll):
    node = enroll("vm")
    for raw in ("soon", "-1", "9999"):
        response = client.get(f"/api/agent/v1/nodes/{node.id}/commands?wait={raw}", headers=node.auth)
        assert response.status_code == 400
        assert response.json["field"] == "wait"


def test_result_for_unknown_command_is_404(client, enroll):
    node = enroll("vm")
    response = client.post(f"/api/agent/v1/nodes/{node.id}/results", json={"command_id": "nope", "ok": True},
                           headers=node.auth)
    assert response.status_code == 404
    assert response.json["field"] == "command_id"


def test_enroll_with_missing_fields_names_them(client):
    response = client.post("/api/agent/v1/enroll", json={"enrollment_token": "x", "machine_id": "m"})
    assert response.status_code == 400
    assert response.json["field"] in ("machine_secret", "name")


def test_unknown_route_is_json_404(client):
    response = client.get("/api/v1/does-not-exist")
    assert response.status_code in (401, 404)
    assert "error" in response.json
