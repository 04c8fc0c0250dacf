"""Enrollment tokens bound to inventory hosts, names that are never taken over, and re-enrollment for free.

The real app on a real database, over its HTTP API. A provisioning run's tokens are minted
here as its worker mints them (``enrollment.mint_for_run``): one per host, single use,
bound to that host's name.
"""

from __future__ import annotations

import subprocess
import uuid

from sqlalchemy import select

from controller import enrollment, events
from controller.models import EnrollmentToken, Node

ENROLL = "/api/agent/v1/enroll"


def mint(app, hosts: list[str], run_id: str = "run-1") -> dict[str, str]:
    with app.extensions["labfleet"].db.session() as session:
        return enrollment.mint_for_run(session, event=events.get_or_create(session), run_id=run_id, hosts=hosts,
                                       created_by="instructor:test", ttl=600)


def enroll(client, token: str, name: str, machine: str | None = None, secret: str = "secret"):
    return client.post(ENROLL, json={"enrollment_token": token, "machine_id": machine or uuid.uuid4().hex,
                                      "machine_secret": secret, "name": name, "hostname": name})


def node_names(app) -> dict[str, str | None]:
    """name -> the inventory host the node was provisioned as."""
    with app.extensions["labfleet"].db.session() as session:
        return {n.name: n.provision_host for n in session.scalars(select(Node))}


def refusals(client, seed) -> list[dict]:
    return client.get("/api/v1/audit?action=node.enroll_refused", headers=seed.auth).json["entries"]


def uses_left(app, token: str) -> int:
    with app.extensions["labfleet"].db.session() as session:
        return session.scalar(select(EnrollmentToken.uses_left).where(EnrollmentToken.prefix == token[:10]))


def test_another_hosts_token_cannot_enroll_under_a_real_hosts_name(app, client, seed):
    tokens = mint(app, ["lab-3", "lab-5"])

    rogue = enroll(client, tokens["lab-5"], "lab-3", machine="rogue")

    assert rogue.status_code == 409 and rogue.json["field"] == "name"
    assert "for host 'lab-5', not 'lab-3'" in rogue.json["detail"]
    (entry,) = refusals(client, seed)
    assert entry["detail"]["name"] == "lab-3" and entry["detail"]["machine_id"] == "rogue"
    assert entry["detail"]["bound_host"] == "lab-5" and entry["actor"] == "address:127.0.0.1"
    # Nothing was spent: both real hosts enroll under their own names.
    for host in ("lab-3", "lab-5"):
        real = enroll(client, tokens[host], host)
        assert real.status_code == 200 and real.json["name"] == host
    assert node_names(app) == {"lab-3": "lab-3", "lab-5": "lab-5"}


def test_a_leftover_token_cannot_push_a_real_host_aside(app, client, seed):
    host_token = mint(app, ["lab-3"])["lab-3"]
    spare = seed.enrollment_token(uses=3)  # a hand-made token with uses to spare
    assert enroll(client, host_token, "lab-3", machine="real-3").status_code == 200

    reused = enroll(client, host_token, "lab-3", machine="rogue")
    taken = enroll(client, spare, "lab-3", machine="rogue")

    assert reused.status_code == 401 and reused.json["field"] == "enrollment_token"
    assert taken.status_code == 409 and taken.json["field"] == "name"
    assert "a node named 'lab-3' is enrolled already" in taken.json["detail"]
    assert [e["detail"]["machine_id"] for e in refusals(client, seed)] == ["rogue", "rogue"]
    assert node_names(app) == {"lab-3": "lab-3"}  # no lab-3-2: the real host keeps its name
    assert uses_left(app, spare) == 3


def test_a_hand_made_token_cannot_take_a_name_a_run_reserved(app, client, seed):
    mint(app, ["lab-4"])
    spare = seed.enrollment_token(uses=3)

    early = enroll(client, spare, "lab-4", machine="rogue")

    assert early.status_code == 409 and "reserved for the provisioned host" in early.json["detail"]
    assert refusals(client, seed)[0]["detail"]["name"] == "lab-4"
    assert enroll(client, spare, "vm-1").status_code == 200  # any other free name is fine
    assert node_names(app) == {"vm-1": None}


def test_a_name_collision_is_refused_and_audited_not_renamed(app, client, seed):
    token = seed.enrollment_token(uses=2)
    assert enroll(client, token, "vm", machine="machine-a").status_code == 200

    second = enroll(client, token, "vm", machine="machine-b")

    assert second.status_code == 409 and second.json["error"] == "conflict" and second.json["field"] == "name"
    assert refusals(client, seed)[0]["detail"]["machine_id"] == "machine-b"
    assert node_names(app) == {"vm": None}
    assert uses_left(app, token) == 1  # a refused enrollment spends nothing


def test_a_run_token_is_single_use_and_bound_to_its_host(app, client, seed):
    tokens = mint(app, ["lab-1", "lab-2"])
    assert enroll(client, tokens["lab-1"], "lab-1", machine="a").status_code == 200

    assert enroll(client, tokens["lab-1"], "lab-1", machine="b").status_code == 401
    assert enroll(client, tokens["lab-1"], "lab-9", machine="b").status_code == 401
    other = enroll(client, tokens["lab-2"], "lab-1", machine="b")
    assert other.status_code == 409 and other.json["field"] == "name"
    # A machine that is lab-1 cannot use lab-2's token either (it would make lab-2 its own).
    crossed = enroll(client, tokens["lab-2"], "lab-1", machine="a")
    assert crossed.status_code == 409 and "for host 'lab-2', not for node 'lab-1'" in crossed.json["detail"]
    assert len(refusals(client, seed)) == 4
    assert uses_left(app, tokens["lab-2"]) == 1
    assert enroll(client, tokens["lab-2"], "lab-2", machine="b").status_code == 200
    assert node_names(app) == {"lab-1": "lab-1", "lab-2": "lab-2"}


def test_re_enrolling_the_same_machine_spends_no_use(app, client, seed):
    token = seed.enrollment_token(uses=2)
    first = enroll(client, token, "vm-1", machine="a", secret="a-secret")
    assert first.status_code == 200

    again = [enroll(client, token, "vm-1", machine="a", secret="a-secret") for _ in range(3)]

    assert [r.status_code for r in again] == [200] * 3
    assert {r.json["node_id"] for r in again} == {first.json["node_id"]}
    assert uses_left(app, token) == 1
    assert enroll(client, token, "vm-2", machine="b").status_code == 200  # the use a re-enrollment left
    # A run's host re-enrolls with its own, spent token; the run's next host is not refused.
    tokens = mint(app, ["lab-1", "lab-2"])
    lab1 = enroll(client, tokens["lab-1"], "lab-1", machine="c", secret="c-secret")
    lab1_again = enroll(client, tokens["lab-1"], "lab-1", machine="c", secret="c-secret")
    assert lab1_again.status_code == 200 and lab1_again.json["node_id"] == lab1.json["node_id"]
    assert enroll(client, tokens["lab-2"], "lab-2", machine="d").status_code == 200


def test_a_revoked_node_needs_a_use_to_come_back(app, client, seed):
    token = mint(app, ["lab-1"])["lab-1"]
    assert enroll(client, token, "lab-1", machine="a").status_code == 200
    assert client.post("/api/v1/nodes/lab-1/revoke", headers=seed.auth).json["state"] == "revoked"

    back = enroll(client, token, "lab-1", machine="a")

    assert back.status_code == 401
    assert refusals(client, seed)[0]["detail"]["token_status"] == "consumed"


def test_a_retired_nodes_name_goes_to_the_host_provisioned_again(app, client, seed):
    first = mint(app, ["lab-1"], run_id="run-1")["lab-1"]
    old = enroll(client, first, "lab-1", machine="old-install").json
    with app.extensions["labfleet"].db.session() as session:
        session.get(Node, old["node_id"]).state = "retired"  # as teardown leaves it

    new = enroll(client, mint(app, ["lab-1"], run_id="run-2")["lab-1"], "lab-1", machine="new-install")

    assert new.status_code == 200 and new.json["name"] == "lab-1" and new.json["node_id"] != old["node_id"]
    names = node_names(app)
    assert names["lab-1"] == "lab-1" and names[f"lab-1~{old['node_id'][:8]}"] == "lab-1"
    released = client.get("/api/v1/audit?action=node.name_released", headers=seed.auth).json["entries"]
    assert released[0]["target"] == old["node_id"]


def test_a_rebuilt_host_replaces_its_offline_predecessor_but_not_an_online_one(app, client, seed):
    old = enroll(client, mint(app, ["lab-1"], run_id="run-1")["lab-1"], "lab-1", machine="old-install").json

    while_online = enroll(client, mint(app, ["lab-1"], run_id="run-2")["lab-1"], "lab-1", machine="new-install")
    assert while_online.status_code == 409 and "enrolled already" in while_online.json["detail"]
    with app.extensions["labfleet"].db.session() as session:
        session.get(Node, old["node_id"]).state = "offline"  # the old VM is gone: its heartbeats stopped

    rebuilt = enroll(client, mint(app, ["lab-1"], run_id="run-3")["lab-1"], "lab-1", machine="new-install")

    assert rebuilt.status_code == 200 and rebuilt.json["name"] == "lab-1"
    states = {n["id"]: (n["name"], n["state"]) for n in client.get("/api/v1/nodes", headers=seed.auth).json["nodes"]}
    assert states == {old["node_id"]: (f"lab-1~{old['node_id'][:8]}", "retired"),
                      rebuilt.json["node_id"]: ("lab-1", "online")}
    retired = client.get("/api/v1/audit?action=node.retire", headers=seed.auth).json["entries"]
    assert [e["target"] for e in retired] == [old["node_id"]]
    # The old machine's node token stopped working with it.
    beat = client.post(f"/api/agent/v1/nodes/{old['node_id']}/heartbeat", json={"seq": 1, "digest": "d"},
                       headers={"Authorization": f"Bearer {old['node_token']}"})
    assert beat.status_code == 401


def test_tokens_of_a_cancelled_run_are_revoked(app, client, seed, tmp_path):
    key = tmp_path / "room.key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    text = "defaults: {user: root, private_key: room.key}\nhosts:\n  - {name: lab-1, address: 192.0.2.11}\n"
    run = client.post("/api/v1/provision-runs", headers=seed.auth, json={
        "driver": "static", "inventory": {"path": "room.yml", "content": text,
                                          "keys": {"room.key": key.read_text()}}}).json
    token = mint(app, ["lab-1"], run_id=run["id"])["lab-1"]  # as the worker does once it starts the run

    cancelled = client.post(f"/api/v1/provision-runs/{run['id']}/cancel", headers=seed.auth)

    assert cancelled.json["state"] == "cancelled"
    listed = client.get("/api/v1/enroll-tokens", headers=seed.auth).json["tokens"]
    assert [(t["bound_host"], t["status"]) for t in listed if t["provision_run"] == run["id"]] == \
        [("lab-1", "revoked")]
    late = enroll(client, token, "lab-1")
    assert late.status_code == 401 and refusals(client, seed)[0]["detail"]["token_status"] == "revoked"
    assert node_names(app) == {}
