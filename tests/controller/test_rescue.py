"""Rescue requests on the real app and database: who the silent-agent beat picks, what a request refuses, and
how a node that was never provisioned over SSH is reported (the SSH part itself: tests/provision/test_rescue.py)."""

from __future__ import annotations

from datetime import timedelta

from controller import states
from controller.models import Node, utcnow
from controller.rescue import service


def _silence(app, name: str, *, provisioned: bool, minutes: float = 10) -> None:
    with app.extensions["labfleet"].db.session() as session:
        node = session.query(Node).filter_by(name=name).one()
        node.state, node.last_seen_at = states.NODE_OFFLINE, utcnow() - timedelta(minutes=minutes)
        node.provision_host = name if provisioned else None  # as a run's bound token would have set it
        session.commit()


def test_the_silent_agent_check_picks_provisioned_silent_nodes_once(app, client, seed, enroll):
    for name in ("vm-a", "vm-b", "vm-c", "vm-d"):
        enroll(name)
    _silence(app, "vm-a", provisioned=True)
    _silence(app, "vm-b", provisioned=False)  # enrolled by hand: no SSH record to reach it with
    _silence(app, "vm-c", provisioned=True, minutes=1)  # silent, but not past the threshold yet
    db = app.extensions["labfleet"].db
    with db.session() as session:
        run = service.auto_rescue(session, silent_after=180, retry_after=600)
        session.commit()
        assert run is not None and (run.trigger, run.requested_by) == ("silent", "system:rescue")
        assert [h.node_name for h in service.host_rows(session, run.id)] == ["vm-a"]
    with db.session() as session:  # tried a moment ago: not again within retry_after
        assert service.auto_rescue(session, silent_after=180, retry_after=600) is None
    requested = client.get("/api/v1/audit?action=rescue.request", headers=seed.auth).json["entries"]
    assert [(e["actor"], e["detail"]["node"], e["detail"]["trigger"]) for e in requested] == [
        ("system:rescue", "vm-a", "silent")]


def test_a_node_never_provisioned_over_ssh_is_reported_not_attempted(app, client, seed, enroll):
    enroll("vm-hand")
    _silence(app, "vm-hand", provisioned=False)
    answer = client.post("/api/v1/rescue", json={"silent": True}, headers=seed.auth)
    assert answer.status_code == 202, answer.json
    run_id = answer.json["id"]
    assert [(h["node"], h["state"]) for h in answer.json["hosts"]] == [("vm-hand", "pending")]

    with app.app_context():  # as the worker runs it
        assert service.run(app.extensions["labfleet"], run_id) == {"vm-hand": "no_record"}
        assert service.run(app.extensions["labfleet"], run_id) == {"skipped": "done"}  # a redelivered task

    shown = client.get(f"/api/v1/rescue/{run_id}", headers=seed.auth).json
    (host,) = shown["hosts"]
    assert shown["state"] == "done" and host["state"] == "no_record"
    assert "was not provisioned by labfleet" in host["message"] and host["steps"] == []
    results = client.get("/api/v1/audit?action=rescue.result", headers=seed.auth).json["entries"]
    assert [(e["detail"]["node"], e["detail"]["state"]) for e in results] == [("vm-hand", "no_record")]


def test_bad_rescue_requests_name_the_field(client, seed, enroll):
    enroll("vm-1")
    cases = [({}, 400, "nodes"), ({"nodes": ["vm-1"], "silent": True}, 400, "nodes"),
             ({"nodes": "vm-1"}, 400, "nodes"), ({"silent": "yes"}, 400, "silent"),
             ({"nodes": ["nobody"]}, 404, "nodes"), ({"silent": True}, 400, "silent"),  # nobody is silent
             ({"nodes": ["vm-1"], "everyone": True}, 400, "everyone")]
    for body, status, field in cases:
        answer = client.post("/api/v1/rescue", json=body, headers=seed.auth)
        assert (answer.status_code, answer.json["field"]) == (status, field), (body, answer.json)
    assert client.get("/api/v1/rescue/nothing", headers=seed.auth).status_code == 404
    assert client.get("/api/v1/nodes/nobody/diagnostics", headers=seed.auth).json["field"] == "node"
    assert client.post("/api/v1/rescue", json={"nodes": ["vm-1"]}).status_code == 401


def test_the_beat_task_queues_a_rescue_of_a_node_silent_past_the_threshold(app, enroll):
    from controller.tasks.rescue import rescue_silent

    enroll("vm-quiet")
    _silence(app, "vm-quiet", provisioned=True)
    with app.app_context():  # as the worker runs the beat's task
        queued = rescue_silent()
        assert queued["rescue"] and rescue_silent() == {"rescue": None}  # not twice within retry_after
        with app.extensions["labfleet"].db.session() as session:
            run = service.get_or_404(session, queued["rescue"])
            assert (run.trigger, run.state) == ("silent", "pending")
