"""A node cannot grow the progress table: rows only for its reported catalog, and at most N per node.

The attendee is root on the VM, so the snapshot and lab results are theirs to
forge. Before this, three 850 KiB state reports of made-up lab ids gave 6,000
rows; now ids must be in the catalog the node reported and a node holds at
most ``max_progress_rows_per_node`` rows.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from controller.app import create_app
from controller.models import LabProgress
from controller.settings import settings_for_tests

CATALOG = {"cg-pids": ["limit-set", "fork-fails"], "ns-uts": ["own-hostname"]}


@pytest.fixture
def app(tmp_path, database_url):
    app = create_app(settings_for_tests(tmp_path / "data", database_url=database_url, heartbeat_interval=1.0,
                                        max_progress_rows_per_node=40))
    yield app
    app.extensions["labfleet"].heartbeats.close()
    app.extensions["labfleet"].db.dispose()


def rows(app, node_id=None):
    with app.extensions["labfleet"].db.session() as session:
        query = select(func.count()).select_from(LabProgress)
        if node_id:
            query = query.where(LabProgress.node_id == node_id)
        return session.scalar(query)


def put_state(client, node, labs, digest="d1"):
    response = client.put(f"/api/agent/v1/nodes/{node.id}/state", json={"digest": digest, "state": {"labs": labs}},
                          headers=node.auth)
    assert response.status_code == 200, response.json
    return response


def passed(*steps):
    return {step: {"status": "passed", "reason": ""} for step in steps}


def test_progress_for_labs_and_steps_of_the_reported_catalog_is_kept(client, enroll, app, seed):
    node = enroll("vm")
    put_state(client, node, {"catalog": CATALOG, "progress": {"cg-pids": passed("limit-set")}})
    table = client.get("/api/v1/progress", headers=seed.auth).json["progress"]
    assert [(r["node"], r["lab"], r["step"], r["status"]) for r in table] == [("vm", "cg-pids", "limit-set", "passed")]


def test_ids_outside_the_reported_catalog_are_not_stored(client, enroll, app):
    node = enroll("vm")
    put_state(client, node, {"catalog": CATALOG, "progress": {
        "made-up": passed("a", "b"), "cg-pids": passed("limit-set", "not-a-step"),
    }})
    assert rows(app, node.id) == 1
    # No catalog at all (or one that is not a mapping of lists): nothing is recorded.
    other = enroll("vm-2")
    put_state(client, other, {"progress": {"cg-pids": passed("limit-set")}})
    put_state(client, other, {"catalog": ["cg-pids"], "progress": {"cg-pids": passed("limit-set")}}, digest="d2")
    assert rows(app, other.id) == 0


def test_three_large_state_reports_cannot_grow_the_table_past_the_cap(client, enroll, app, seed):
    node = enroll("vm")
    for round_ in range(3):
        labs = {f"lab-{round_}-{i}": [f"s{j}" for j in range(50)] for i in range(120)}
        progress = {lab: passed(*steps) for lab, steps in labs.items()}
        put_state(client, node, {"catalog": labs, "progress": progress}, digest=f"d{round_}")
    assert rows(app, node.id) == 40
    # A full node still moves the rows it has.
    (kept,) = client.get("/api/v1/progress?limit=1", headers=seed.auth).json["progress"][:1]
    failed = {kept["lab"]: {kept["step"]: {"status": "failed", "reason": "undone"}}}
    put_state(client, node, {"catalog": {kept["lab"]: [kept["step"]]}, "progress": failed}, digest="d9")
    table = client.get(f"/api/v1/progress?lab={kept['lab']}", headers=seed.auth).json["progress"]
    assert [(r["step"], r["status"], r["reason"]) for r in table if r["step"] == kept["step"]] == [
        (kept["step"], "failed", "undone")]
    # Another node still has its own room.
    other = enroll("vm-2")
    put_state(client, other, {"catalog": CATALOG, "progress": {"cg-pids": passed("limit-set")}})
    assert rows(app, other.id) == 1


def test_a_lab_result_records_only_the_asked_lab_and_its_catalog_steps(client, enroll, app, seed):
    node = enroll("vm")
    put_state(client, node, {"catalog": CATALOG, "progress": {}})
    client.post("/api/v1/commands", json={"kind": "lab.check", "args": {"lab": "cg-pids"}, "nodes": ["vm"]},
                headers=seed.auth)
    (command,) = client.get(f"/api/agent/v1/nodes/{node.id}/commands", headers=node.auth).json["commands"]
    output = {"lab": "cg-pids", "steps": [
        {"step": "limit-set", "status": "passed", "evidence": {"max": 5}},
        {"step": "invented", "status": "passed"},
    ] + [{"step": f"x{i}", "status": "failed"} for i in range(1500)]}
    response = client.post(f"/api/agent/v1/nodes/{node.id}/results",
                           json={"command_id": command["id"], "ok": True, "output": output}, headers=node.auth)
    assert response.status_code == 200, response.json
    assert rows(app, node.id) == 1
    # A result that names another lab than the one asked for records nothing.
    client.post("/api/v1/commands", json={"kind": "lab.check", "args": {"lab": "cg-pids"}, "nodes": ["vm"]},
                headers=seed.auth)
    (command,) = client.get(f"/api/agent/v1/nodes/{node.id}/commands", headers=node.auth).json["commands"]
    output = {"lab": "ns-uts", "steps": [{"step": "own-hostname", "status": "passed"}]}
    client.post(f"/api/agent/v1/nodes/{node.id}/results",
                json={"command_id": command["id"], "ok": True, "output": output}, headers=node.auth)
    assert rows(app, node.id) == 1
