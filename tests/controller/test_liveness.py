"""Heartbeats keep a node online; silence turns it offline; a beat brings it back."""

from __future__ import annotations

import re
from datetime import timedelta

from controller import sweep, web_accounts
from controller.models import Node, utcnow
from controller.runtime.heartbeat_pacer import HeartbeatPacer


def signed_in(app):
    with app.extensions["labfleet"].db.session() as session:
        web_accounts.add(session, "ada", password="a long page password")
    instructor = app.test_client()
    form = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', instructor.get("/login").text)
    instructor.post("/login", data={"name": "ada", "password": "a long page password", "csrf_token": form.group(1)})
    return instructor


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


def test_a_node_told_to_beat_less_often_is_not_marked_offline_early(client, enroll, app, seed):
    """Over its heartbeat budget the controller stretches the next interval; the sweep waits for that one."""
    node = enroll("vm")
    state = app.extensions["labfleet"]
    now = [0.0]
    state.heartbeat_pacer = HeartbeatPacer(2.0, clock=lambda: now[0])  # 2 beats/s; a clock the test moves
    assert all(beat(client, node, seq=i)["heartbeat_interval"] == 1.0 for i in range(1, 21))  # 20 in 1 s
    now[0] = 1.0
    answer = beat(client, node, seq=21)
    assert answer["heartbeat_interval"] == 11.0  # 20/s against 2/s (+10 % headroom): 11x the node's 1 s
    state.heartbeats.flush()
    shown = client.get("/api/v1/nodes/vm", headers=seed.auth).json
    assert shown["heartbeat_interval"] == 1.0 and shown["beats_every"] == 11.0
    instructor = signed_in(app)  # the node page says so, and its live view
    assert "beats every <b id=\"n-beats\">11 s (stretched: the controller is busy)</b>" in \
        instructor.get(f"/nodes/{node.id}").text
    assert instructor.get(f"/nodes/{node.id}/live").json["beats_every"] == 11.0
    with state.db.session() as session:  # three of its own intervals would be 3 s: it was told 11 s
        assert sweep.sweep(session, missed_heartbeats=3, now=utcnow() + timedelta(seconds=30)).offline == []
    with state.db.session() as session:
        assert sweep.sweep(session, missed_heartbeats=3, now=utcnow() + timedelta(seconds=34)).offline == ["vm"]


def test_an_agent_that_says_it_is_stretched_is_counted_at_its_own_rate(client, enroll, app):
    """Demand, not the measured rate: one beat of a node stretched 10x stands for 10 of its own beats, so the
    stretch holds once the nodes obey (and does not swing back and forth)."""
    node = enroll("vm")
    state = app.extensions["labfleet"]
    now = [0.0]
    state.heartbeat_pacer = HeartbeatPacer(2.0, clock=lambda: now[0])
    for i in range(2):
        client.post(f"/api/agent/v1/nodes/{node.id}/heartbeat", json={"seq": i, "digest": "d", "interval": 10.0},
                    headers=node.auth)
    now[0] = 1.0
    assert beat(client, node, seq=3)["heartbeat_interval"] == 11.0  # 2 beats x 10 = 20/s of demand


def test_the_stretch_comes_back_in_steps_as_the_load_falls(client, enroll, app):
    node = enroll("vm")
    state = app.extensions["labfleet"]
    now = [0.0]
    state.heartbeat_pacer = HeartbeatPacer(2.0, clock=lambda: now[0])
    for i in range(20):
        beat(client, node, seq=i)
    now[0] = 1.0
    assert beat(client, node, seq=20)["heartbeat_interval"] == 11.0
    answers = []
    for i in range(21, 25):  # one beat per second from now on: well under the budget
        now[0] += 1.0
        answers.append(beat(client, node, seq=i)["heartbeat_interval"])
    assert answers == [5.5, 2.75, 1.5, 1.0]


def test_no_budget_means_never_stretched(client, enroll, app):
    node = enroll("vm")
    state = app.extensions["labfleet"]
    now = [0.0]
    state.heartbeat_pacer = HeartbeatPacer(0, clock=lambda: now[0])
    for i in range(30):
        beat(client, node, seq=i)
    now[0] = 1.0
    assert beat(client, node, seq=31)["heartbeat_interval"] == 1.0
