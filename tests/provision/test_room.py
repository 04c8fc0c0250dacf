"""A room provisioned for real: three local fleet hosts, the real site.yml over SSH, agents that enroll.

The tests run in order on one fleet and one controller (module-scoped, set up
once, to stay inside CI's time budget): provision; a second run with one
host's sshd stopped (the others report zero changed, the stopped one
unreachable) and ``--retry-failed`` for it alone; attendees and their
credentials sheet; a cancelled run; teardown. The fleet fixture then checks
``fleet down`` left nothing on the machine.
"""

from __future__ import annotations

import csv
import json

import pytest

from tests.fleet.conftest import ssh, ssh_ok
from tests.processes import wait_until
from tests.provision.conftest import labfleet, labfleet_json

pytestmark = pytest.mark.e2e


def online(room, names):
    nodes = room.nodes()
    return all(nodes.get(n, {}).get("state") == "online" for n in names) and nodes


def run_tokens(room, run_id: str) -> list[tuple[str, str]]:
    """(bound host, status) of every enrollment token the run minted."""
    return sorted((t["bound_host"], t["status"]) for t in room.api("GET", "/api/v1/enroll-tokens")["tokens"]
                  if t["provision_run"] == run_id)


def latest_run(room) -> dict:
    run_id = room.api("GET", "/api/v1/provision-runs?limit=1")["runs"][0]["id"]
    return room.api("GET", f"/api/v1/provision-runs/{run_id}")


def test_provision_makes_three_online_agents_that_answer_exec(room, fleet3):
    names = [h.name for h in fleet3.hosts()]
    done = labfleet(room, "provision", "--driver", "netns")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    # What the instructor sees at the end: the per-host table and the run's state.
    assert all(name in done.stdout for name in names)
    assert "succeeded" in done.stdout

    run = latest_run(room)
    assert run["state"] == "succeeded"
    assert [h["host"] for h in run["hosts"]] == names
    assert all(h["state"] == "ok" and h["failed"] == h["unreachable"] == 0 for h in run["hosts"])
    assert all(h["changed"] > 0 for h in run["hosts"])  # bare hosts really were changed

    wait_until(lambda: online(room, names), timeout=60, what="three agents online")
    # Over TLS: the run gave the hosts the controller's https URL and its room CA, which each agent pins.
    assert run["controller_url"].startswith("https://")
    room_ca = room.ca_file.read_text()
    for host in fleet3.hosts():
        config = ssh_ok(host, "cat /etc/labfleet-agent/agent.toml; echo ---; cat /etc/labfleet-agent/ca.pem")
        agent_toml, installed_ca = config.split("---\n", 1)
        assert 'ca_file = "/etc/labfleet-agent/ca.pem"' in agent_toml and "insecure_http" not in agent_toml
        assert installed_ca == room_ca
    batch = labfleet_json(room, "exec", "ping", "--all", "--wait", "30")
    assert sorted(c["node"] for c in batch["commands"]) == names
    assert all(c["state"] == "succeeded" and c["result"]["output"]["pong"] is True for c in batch["commands"])

    shown = labfleet_json(room, "provision", "show", run["id"], "--events")
    assert {e["host"] for e in shown["events"]} == set(names)
    assert {e["status"] for e in shown["events"]} <= {"ok", "changed", "skipped"}
    # The run's enrollment token went to the hosts, never into a stored event.
    assert not [e for e in shown["events"] if "lfe_" in e["message"] + e["task"]]
    actions = [e["action"] for e in room.api("GET", "/api/v1/audit?limit=300")["entries"]]
    assert {"provision.start", "provision.finish", "enroll_token.create", "node.enroll"} <= set(actions)

    # Each host got a token of its own, bound to its name; each node is the host its token named; the
    # run revoked them all when it ended, and none is left on a VM.
    assert run_tokens(room, run["id"]) == [(name, "revoked") for name in names]
    assert {n: room.nodes()[n]["provision_host"] for n in names} == {n: n for n in names}
    for host in fleet3.hosts():
        env = ssh(host, "cat /etc/labfleet-agent/env")
        assert env.returncode == 0 and "LABFLEET_AGENT_ENROLL_TOKEN" not in env.stdout, (host.name, env.stdout)


def test_an_agent_restarted_without_a_token_keeps_its_node(room, fleet3):
    host = fleet3.hosts()[0]
    before = room.nodes()[host.name]
    restarted = ssh(host, "/usr/local/sbin/labfleet-agent-supervisor restart")
    assert restarted.returncode == 0, restarted.stderr
    batch = labfleet_json(room, "exec", "ping", "--node", host.name, "--wait", "30")
    assert [c["state"] for c in batch["commands"]] == ["succeeded"]
    after = room.nodes()[host.name]
    assert (after["id"], after["state"]) == (before["id"], "online")


def test_second_run_changes_nothing_and_an_unreachable_host_is_retried_alone(room, fleet3):
    first, victim, third = fleet3.hosts()
    fleet3.stop_sshd(victim.name)
    try:
        done = labfleet(room, "provision", "--driver", "netns", "--json")
        assert done.returncode == 1, done.stderr[-2000:]
        run = json.loads(done.stdout)
    finally:
        fleet3.start_sshd(victim.name)
    by_host = {h["host"]: h for h in run["hosts"]}
    assert run["state"] == "failed"
    assert by_host[victim.name]["state"] == "unreachable"
    assert by_host[victim.name]["failed_task"] and by_host[victim.name]["message"]
    # The others finished, and a second run of site.yml changed nothing on them.
    changed = [(e["host"], e["task"]) for e in labfleet_json(room, "provision", "show", run["id"], "--events")["events"]
               if e["status"] == "changed"]
    for host in (first, third):
        assert (by_host[host.name]["state"], by_host[host.name]["changed"]) == ("ok", 0), changed

    retry = labfleet_json(room, "provision", "--retry-failed")
    assert retry["retry_of"] == run["id"] and retry["limit"] == [victim.name]
    assert [(h["host"], h["state"], h["changed"]) for h in retry["hosts"]] == [(victim.name, "ok", 0)]
    shown = labfleet_json(room, "provision", "show", retry["id"], "--events")
    assert {e["host"] for e in shown["events"]} == {victim.name}


def test_attendees_get_a_host_and_a_printed_access_code(room, fleet3, tmp_path):
    hosts = fleet3.hosts()
    roster = tmp_path / "room.csv"
    roster.write_text("name,email\n" + "".join(f"Attendee {i},a{i}@example.org\n" for i in range(1, 4))
                      + "Attendee 1 again,A1@example.org\n")
    imported = labfleet(room, "attendees", "import", str(roster))
    assert imported.returncode == 0, imported.stderr
    assert "imported 3 attendee(s)" in imported.stdout and "skipped line 5" in imported.stdout
    assigned = labfleet_json(room, "assign")
    assert {p["node"] for p in assigned["assigned"]} == {h.name for h in hosts}

    out = tmp_path / "sheet"
    done = labfleet(room, "credentials", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((out / "credentials.csv").open()))
    assert {r["host"] for r in rows} == {h.address for h in hosts}
    assert {r["login"] for r in rows} == {"class"} and all(len(r["access_code"]) == 14 for r in rows)
    page = (out / "credentials.html").read_text()
    assert all(r["access_code"] in page and r["host"] in page for r in rows)
    assert (out / "credentials.csv").stat().st_mode & 0o777 == 0o600


def test_a_cancelled_run_stops_and_says_so(room, fleet3):
    started = labfleet_json(room, "provision", "--driver", "netns", "--no-wait")
    wait_until(lambda: room.api("GET", f"/api/v1/provision-runs/{started['id']}")["state"] == "running",
               timeout=60, interval=0.05, what="the run to start")
    cancel = labfleet(room, "provision", "cancel", started["id"])
    assert cancel.returncode == 0, cancel.stderr
    run = wait_until(lambda: (r := room.api("GET", f"/api/v1/provision-runs/{started['id']}"))["state"]
                     not in ("pending", "running") and r, timeout=60, what="the run to stop")
    assert run["state"] == "cancelled" and run["cancel_requested"] is True
    assert {h["state"] for h in run["hosts"]} <= {"ok", "cancelled"}
    assert "cancelled" in {h["state"] for h in run["hosts"]}
    audit = room.api("GET", "/api/v1/audit?action=provision.cancel")["entries"]
    assert [e["target"] for e in audit] == [started["id"]]
    assert {status for _, status in run_tokens(room, started["id"])} == {"revoked"}


def test_teardown_removes_the_agents_and_retires_the_nodes(room, fleet3):
    names = [h.name for h in fleet3.hosts()]
    done = labfleet(room, "teardown", "--driver", "netns")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    nodes = room.nodes()
    assert [nodes[n]["state"] for n in names] == ["retired"] * 3
    for host in fleet3.hosts():
        probe = ssh(host, "ls -d /opt/labfleet-agent /etc/labfleet-agent /var/lib/labfleet-agent 2>/dev/null; true")
        assert probe.returncode == 0 and probe.stdout.strip() == "", f"{host.name} still has: {probe.stdout}"
    retired = room.api("GET", "/api/v1/audit?action=node.retire&limit=10")["entries"]
    assert sorted(e["detail"]["node"] for e in retired) == names
