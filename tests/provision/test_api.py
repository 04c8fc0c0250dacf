"""The provisioning API: instructor-only, audited, and every bad request a 4xx naming the field.

These run the real app on a real database; the runs they start stay pending
(no worker here), which is what the open-run, cancel and retry rules act on.
"""

from __future__ import annotations

import pytest

from controller.models import ProvisionHostStatus, ProvisionRun
from controller.provision import states


@pytest.fixture
def inventory(ssh_key):
    text = ("defaults: {user: root, private_key: keys/room.key}\n"
            "hosts:\n  - {name: lab-1, address: 192.0.2.11}\n  - {name: lab-2, address: 192.0.2.12}\n")
    return {"driver": "static", "inventory": {"path": "/home/instructor/room.yml", "content": text,
                                              "keys": {"keys/room.key": ssh_key}}}


def post(client, seed, body, path="/api/v1/provision-runs"):
    return client.post(path, json=body, headers=seed.auth)


def test_every_provisioning_route_needs_an_instructor_token(client, seed):
    for method, path in [("post", "/api/v1/provision-runs"), ("get", "/api/v1/provision-runs"),
                         ("get", "/api/v1/provision-runs/x"), ("post", "/api/v1/provision-runs/x/cancel"),
                         ("post", "/api/v1/attendees/import"), ("post", "/api/v1/attendees/credentials")]:
        response = getattr(client, method)(path, json={})
        assert response.status_code == 401, path
        assert response.json["error"] == "unauthenticated"


@pytest.mark.parametrize(("body", "status", "field", "words"), [
    ({"driver": "ec2"}, 400, "driver", "unknown inventory driver 'ec2'"),
    ({"driver": "static", "inventory": {"path": "/etc/shadow"}}, 400, "inventory.content", "file's text"),
    ({"driver": "static", "inventory": {"path": "r.yml", "content": "hosts:\n  - {name: a, user: root}\n"}},
     400, "hosts[0].address", "r.yml:2: hosts[0].address: missing"),
    ({"driver": "static", "inventory": {"path": "r.yml", "content": "x"}, "forks": 0}, 400, "forks", "forks"),
    ({"driver": "static", "inventory": {"path": "r.yml", "content": "x"}, "playbook": "rm-rf"}, 400, "playbook",
     "unknown playbook 'rm-rf'"),
    ({"driver": "static", "inventory": {}, "tune": "yes"}, 400, "tune", "tune"),
    ({"driver": "static", "colour": "blue"}, 400, "colour", "colour"),
    ({"retry_failed": True}, 409, "retry_failed", "no earlier site run"),
])
def test_bad_requests_name_the_field(client, seed, body, status, field, words):
    response = post(client, seed, body)
    assert response.status_code == status, response.json
    assert response.json["field"] == field
    assert words in response.json["detail"]


def test_not_json_is_a_400(client, seed):
    response = client.post("/api/v1/provision-runs", data="driver=static", headers=seed.auth)
    assert response.status_code == 400 and response.json["error"] == "malformed_body"


def test_a_run_is_stored_pending_with_its_hosts_and_audited(client, seed, inventory):
    response = post(client, seed, {**inventory, "forks": 7})
    assert response.status_code == 201, response.json
    run = response.json
    assert run["state"] == "pending" and run["playbook"] == "site" and run["driver"] == "static"
    assert run["tuning"] == {"forks": 7, "pipelining": True, "control_persist": 120.0, "gather_facts": False,
                             "python_interpreter": "/usr/bin/python3"}
    assert [(h["host"], h["address"], h["state"]) for h in run["hosts"]] == [
        ("lab-1", "192.0.2.11", "pending"), ("lab-2", "192.0.2.12", "pending")]
    listed = client.get("/api/v1/provision-runs", headers=seed.auth).json["runs"]
    assert [r["id"] for r in listed] == [run["id"]]
    audit = client.get("/api/v1/audit?action=provision.start", headers=seed.auth).json["entries"]
    assert audit[0]["target"] == run["id"] and audit[0]["detail"]["hosts"] == ["lab-1", "lab-2"]
    assert audit[0]["actor"] == "instructor:test-instructor"


def test_no_tune_asks_for_ansibles_defaults(client, seed, inventory):
    run = post(client, seed, {**inventory, "tune": False}).json
    assert run["tuning"] == {"forks": 5, "pipelining": False, "control_persist": 0.0, "gather_facts": True,
                             "python_interpreter": "auto_silent"}


def test_one_open_run_at_a_time_and_cancel_of_a_pending_run(client, seed, inventory):
    first = post(client, seed, inventory).json
    second = post(client, seed, inventory)
    assert second.status_code == 409 and second.json["field"] == "run_id"
    assert f"labfleet provision cancel {first['id']}" in second.json["detail"]

    cancelled = client.post(f"/api/v1/provision-runs/{first['id']}/cancel", headers=seed.auth)
    assert cancelled.status_code == 200
    assert cancelled.json["state"] == "cancelled"
    assert {h["state"] for h in cancelled.json["hosts"]} == {"cancelled"}
    again = client.post(f"/api/v1/provision-runs/{first['id']}/cancel", headers=seed.auth)
    assert again.status_code == 409 and "already cancelled" in again.json["detail"]
    assert post(client, seed, inventory).status_code == 201


def test_unknown_run_is_a_404_naming_it(client, seed):
    for path in ("/api/v1/provision-runs/nope", "/api/v1/provision-runs/nope/events"):
        response = client.get(path, headers=seed.auth)
        assert response.status_code == 404 and response.json["field"] == "run_id"
    response = client.get("/api/v1/provision-runs?limit=0", headers=seed.auth)
    assert response.status_code == 400 and response.json["field"] == "limit"


def test_retry_failed_runs_only_the_failed_hosts_of_the_latest_run(app, client, seed, inventory):
    first = post(client, seed, inventory).json
    # As the worker would have left it: lab-1 ok, lab-2 unreachable.
    with app.extensions["labfleet"].db.session() as session:
        session.get(ProvisionRun, first["id"]).state = states.RUN_FAILED
        for status in session.query(ProvisionHostStatus).filter_by(run_id=first["id"]):
            status.state = states.HOST_OK if status.host == "lab-1" else states.HOST_UNREACHABLE
    retry = post(client, seed, {"retry_failed": True})
    assert retry.status_code == 201, retry.json
    assert retry.json["retry_of"] == first["id"]
    assert retry.json["limit"] == ["lab-2"]
    assert [h["host"] for h in retry.json["hosts"]] == ["lab-2"]
    actions = [e["action"] for e in client.get("/api/v1/audit", headers=seed.auth).json["entries"]]
    assert "provision.retry" in actions


def test_a_run_the_broker_refuses_is_a_503_and_does_not_block_the_next(tmp_path, database_url, inventory):
    from controller import events, instructors
    from controller.app import create_app
    from controller.settings import settings_for_tests

    # Nothing listens on loopback port 9: the broker is down.
    app = create_app(settings_for_tests(tmp_path / "data", database_url=database_url,
                                        redis_url="redis://127.0.0.1:9/0"))
    with app.extensions["labfleet"].db.session() as session:
        events.get_or_create(session)
        _, token = instructors.create_with_token(session, name="t")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    response = client.post("/api/v1/provision-runs", json=inventory, headers=auth)
    assert response.status_code == 503 and response.json["error"] == "broker_unavailable"
    run = client.get("/api/v1/provision-runs", headers=auth).json["runs"][0]
    assert run["state"] == "error" and run["error"].startswith("not queued")
    assert client.post("/api/v1/provision-runs", json=inventory, headers=auth).status_code == 503  # not 409
    app.extensions["labfleet"].db.dispose()
