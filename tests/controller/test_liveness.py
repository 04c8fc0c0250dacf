"""Heartbeats keep a node online; silence turns it offline; a beat brings it back."""

from __future__ import annotations

from datetime import timedelta

from controller import sweep
from controller.models import Node, utcnow


def beat(client, node, seq=1, digest="d1"):
    response = client.post(f"/api/agent/v1/nodes/{node.id}/heartbeat", json={"seq": seq, "digest": digest},
                           headers=node.auth)
    assert response.status_code == 200, response.json
    return response.json


def test_state_is_requested_only_when_the_digest_changes(client, enroll, seed):
    node = enroll("vm")
    assert beat(client, node, digest="d1")["send_state"] is True
    client.put(f"/api/agent/v1/nodes/{node.id}/state", json={"digest": "d1", "state": {"hostname": "vm"}},
               headers=node.auth)
    assert beat(client, node, digest="d1")["send_state"] is False
    assert beat(client, node, digest="d2")["send_state"] is True
    shown = client.get("/api/v1/nodes/vm", headers=seed.auth).json
    assert shown["state_snapshot"] == {"hostname": "vm"}


def test_silent_node_goes_offline_after_three_missed_beats_and_back_online(client, enroll, app, seed):
    node = enroll("vm")
    state = app.extensions["labfleet"]
    beat(client, node)
    state.heartbeats.flush()
    with state.db.session() as session:
        assert sweep.sweep(session, missed_heartbeats=3, now=utcnow() + timedelta(seconds=2.5)).offline == []
    with state.db.session() as session:
        assert sweep.sweep(session, missed_heartbeats=3, now=utcnow() + timedelta(seconds=3.5)).offline == ["vm"]
    assert client.get("/api/v1/nodes/vm", headers=seed.auth).json["state"] == "offline"
    beat(client, node, seq=2)
    state.heartbeats.flush()
    with state.db.session() as session:
        node_row = session.get(Node, node.id)
        assert node_row.state == "online" and node_row.last_seq == 2
    actions = [e["action"] for e in client.get("/api/v1/audit", headers=seed.auth).json["entries"]]
    assert "node.offline" in actions and "node.online" in actions
