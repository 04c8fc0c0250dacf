"""Teardown and credentials sheets match nodes to inventory hosts by the host a run's token made them.

Never by the name a node asked for, nor by the address it enrolled from (a room behind
one NAT, or Vagrant's port forwards on 127.0.0.1, share one). The real app on a real
database; runs are stored as the worker leaves them.
"""

from __future__ import annotations

import uuid

from controller import enrollment, events
from controller.models import ProvisionHostStatus, ProvisionRun
from controller.provision import states
from controller.provision.execute import retire_cleaned_nodes

ENROLL = "/api/agent/v1/enroll"


def stored_run(app, playbook: str, hosts: dict[str, str], *, ok: bool = True) -> str:
    """A finished run over ``hosts`` (name -> address), every host ``ok``."""
    with app.extensions["labfleet"].db.session() as session:
        run = ProvisionRun(event_id=events.get_or_create(session).id, playbook=playbook, driver="static",
                           hosts=[{"name": n, "address": a, "port": 22, "user": "root", "private_key": "", "vars": {}}
                                  for n, a in hosts.items()],
                           state=states.RUN_SUCCEEDED, requested_by="instructor:test")
        session.add(run)
        session.flush()
        for name, address in hosts.items():
            session.add(ProvisionHostStatus(run_id=run.id, host=name, address=address,
                                            state=states.HOST_OK if ok else states.HOST_FAILED))
        return run.id


def enroll_host(app, client, run_id: str, host: str) -> dict:
    with app.extensions["labfleet"].db.session() as session:
        token = enrollment.mint_for_run(session, event=events.get_or_create(session), run_id=run_id, hosts=[host],
                                        created_by="instructor:test", ttl=600)[host]
    return enroll_as(client, token, host)


def enroll_as(client, token: str, name: str) -> dict:
    response = client.post(ENROLL, json={"enrollment_token": token, "machine_id": uuid.uuid4().hex,
                                         "machine_secret": "s", "name": name})
    assert response.status_code == 200, response.json
    return response.json


def states_by_name(client, seed) -> dict[str, str]:
    return {n["name"]: n["state"] for n in client.get("/api/v1/nodes", headers=seed.auth).json["nodes"]}


def test_teardown_retires_the_hosts_nodes_not_a_namesake_nor_a_neighbour(app, client, seed):
    # Every host reached through 127.0.0.1 (port forwards), every agent seen from 127.0.0.1.
    site = stored_run(app, "site", {"lab-1": "127.0.0.1"})
    enroll_host(app, client, site, "lab-1")
    spare = seed.enrollment_token(uses=2)
    enroll_as(client, spare, "lab-2")  # calls itself like an inventory host, was never provisioned as it
    enroll_as(client, spare, "vm-9")
    teardown = stored_run(app, "teardown", {"lab-1": "127.0.0.1", "lab-2": "127.0.0.1"})

    with app.app_context():  # as in the worker
        retire_cleaned_nodes(app.extensions["labfleet"], teardown, "instructor:test")

    assert states_by_name(client, seed) == {"lab-1": "retired", "lab-2": "online", "vm-9": "online"}
    retired = client.get("/api/v1/audit?action=node.retire", headers=seed.auth).json["entries"]
    assert [(e["detail"]["node"], e["detail"]["host"]) for e in retired] == [("lab-1", "lab-1")]


def test_the_credentials_sheet_gives_a_node_its_own_hosts_address_only(app, client, seed):
    site = stored_run(app, "site", {"lab-1": "192.0.2.11", "lab-2": "192.0.2.12"})
    enroll_host(app, client, site, "lab-1")
    enroll_as(client, seed.enrollment_token(), "lab-2")  # a machine that merely calls itself lab-2
    client.post("/api/v1/attendees/import", headers=seed.auth,
                json={"csv": "name,email\nAda,ada@example.org\nAlan,alan@example.org\n", "source": "room.csv"})
    for email, node in (("ada@example.org", "lab-1"), ("alan@example.org", "lab-2")):
        assert client.post("/api/v1/attendees/assign", headers=seed.auth,
                           json={"attendee": email, "node": node}).status_code == 200

    rows = client.post("/api/v1/attendees/credentials", headers=seed.auth, json={}).json["credentials"]

    hosts = {r["node"]: r["host"] for r in rows}
    assert hosts == {"lab-1": "192.0.2.11", "lab-2": "127.0.0.1"}  # not the real lab-2's 192.0.2.12
