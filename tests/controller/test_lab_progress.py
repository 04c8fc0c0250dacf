"""Lab progress from a node: a step the attendee skipped (reset to a later step) reaches the instructor as such."""

from __future__ import annotations

from tests.controller.test_commands import issue, poll

CATALOG = {"ns-net-2": ["namespaces", "veth", "server"]}
SKIPPED = {"status": "skipped", "reason": "skipped by a reset to a later step; not done (only root may have it solved)."}


def progress(client, seed):
    response = client.get("/api/v1/progress", headers=seed.auth)
    assert response.status_code == 200, response.json
    return {(r["lab"], r["step"]): r["status"] for r in response.json["progress"]}


def test_a_skipped_step_in_a_state_report_is_stored_and_shown(client, seed, enroll):
    node = enroll("vm")
    state = {"labs": {"catalog": CATALOG, "progress": {"ns-net-2": {"namespaces": {**SKIPPED, "at": "2026-01-01T00:00:00Z"}}}}}
    response = client.put(f"/api/agent/v1/nodes/{node.id}/state", json={"digest": "d1", "state": state},
                          headers=node.auth)
    assert response.status_code == 200, response.json
    assert progress(client, seed) == {("ns-net-2", "namespaces"): "skipped"}


def test_a_reset_to_a_later_step_replaces_the_labs_rows_with_what_it_skipped_or_solved(client, seed, enroll):
    node = enroll("vm")
    response = client.put(f"/api/agent/v1/nodes/{node.id}/state", headers=node.auth,
                          json={"digest": "d0", "state": {"labs": {"catalog": CATALOG, "progress": {}}}})
    assert response.status_code == 200, response.json
    check_id = issue(client, seed, kind="lab.check", args={"lab": "ns-net-2"}, nodes=["vm"])["commands"][0]["id"]
    poll(client, node)
    client.post(f"/api/agent/v1/nodes/{node.id}/results", headers=node.auth, json={
        "command_id": check_id, "ok": True, "output": {"lab": "ns-net-2", "passed": False, "steps": [
            {"step": "namespaces", "status": "passed"}, {"step": "veth", "status": "failed"}]}})
    assert progress(client, seed) == {("ns-net-2", "namespaces"): "passed", ("ns-net-2", "veth"): "failed"}

    reset_id = issue(client, seed, kind="lab.reset", args={"lab": "ns-net-2", "to_step": "veth"},
                     nodes=["vm"])["commands"][0]["id"]
    poll(client, node)
    response = client.post(f"/api/agent/v1/nodes/{node.id}/results", headers=node.auth, json={
        "command_id": reset_id, "ok": True, "output": {
            "lab": "ns-net-2", "clean": True, "removed": [], "leftovers": [], "to_step": "veth",
            "skipped": ["namespaces"], "steps": [{"step": "namespaces", "passed": False, **SKIPPED}]}})
    assert response.status_code == 200, response.json
    assert progress(client, seed) == {("ns-net-2", "namespaces"): "skipped"}
