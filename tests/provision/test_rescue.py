"""SSH rescue and diagnostics bundles on real local fleet hosts, over real SSH, with a real controller and worker.

Two fleet hosts run a supervised agent each (tests/rescue_fleet.py: what site.yml leaves, recorded
as a site run). Host 1's agent is frozen, then killed with its supervisor: `labfleet rescue
--silent` reaches it with the fleet's key, checks its host key against the one provisioning
recorded, collects diagnostics, restarts the agent, and the node is online again. Host 2's
diagnostics bundle comes over SSH while its agent is silent; then its host key changes and a rescue
of it is refused and reported, never accepted.
"""

from __future__ import annotations

import json
import os
import tarfile

import pytest

from tests.fleet.conftest import ssh, ssh_ok
from tests.processes import wait_until
from tests.provision.conftest import labfleet, labfleet_json, provisioning_controller, running_fleet
from tests.rescue_fleet import freeze_then_kill_agent, install_agent, record_run, stop_agent

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.geteuid() != 0, reason="fleet hosts are namespaces made by root")]

SECRET_LINE = "db password=hunter2-very-secret and lfn_AAAAAAAAAAAAAAAAAAAAAAAA in the log"


@pytest.fixture(scope="module")
def fleet2(tmp_path_factory):
    with running_fleet(tmp_path_factory, 2) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def room(tmp_path_factory, module_database_url, fleet2):
    # No automatic rescue here: the test asks for it (the beat would otherwise race `labfleet rescue`).
    with provisioning_controller(tmp_path_factory, module_database_url, queue_prefix="lfrescue", fleet=fleet2,
                                 extra_env={"LABFLEET_RESCUE_SILENT_AFTER": "0",
                                            "LABFLEET_RESCUE_HOST_TIMEOUT": "90"}) as ctl:
        hosts = fleet2.hosts()
        tokens = record_run(module_database_url, hosts)
        for host in hosts:
            install_agent(host, controller_url=ctl.url, token=tokens[host.name], ca_pem=ctl.ca_file.read_text())
        wait_until(lambda: all(ctl.nodes().get(h.name, {}).get("state") == "online" for h in hosts), timeout=60,
                   what="both fleet agents online")
        yield ctl


def state_of(room, name):
    return room.nodes()[name]["state"]


def test_rescue_silent_restarts_a_frozen_then_killed_agent(room, fleet2):
    host = fleet2.hosts()[0]
    before = room.nodes()[host.name]
    freeze_then_kill_agent(host)
    # Runaway processes: a lab cgroup at its pids ceiling, and the attendee's processes outside any lab
    # (a fork bomb's aftermath: more than the 300 the rescue allows), both as an attendee leaves them.
    # The labs' pids hierarchy as the agent and the rescue find it (cgroup v2, or v1's pids hierarchy).
    labs = ssh_ok(host, "if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo /sys/fs/cgroup; "
                        "else echo /sys/fs/cgroup/pids; fi").strip() + "/" + host.lab_cgroup_parent
    filled = ssh_ok(host, f"set -e; mkdir -p {labs}/runaway; test -f {labs}/runaway/pids.current; "
                          f"echo 8 > {labs}/runaway/pids.max; "
                          f"for i in 1 2 3 4 5 6 7 8; do sh -c 'echo $$ > {labs}/runaway/cgroup.procs; exec sleep 600' "
                          f">/dev/null 2>&1 & done; sleep 0.5; cat {labs}/runaway/pids.current; "
                          "id class >/dev/null 2>&1 || useradd -M -s /bin/sh class; "
                          "for i in $(seq 320); do setpriv --reuid=class --regid=class --clear-groups sleep 600 "
                          ">/dev/null 2>&1 & done; sleep 1; pgrep -c -U class").split()
    assert filled == ["8", "320"]
    wait_until(lambda: state_of(room, host.name) == "offline", timeout=30, what=f"{host.name} offline")

    run = labfleet_json(room, "rescue", "--silent", timeout=200)
    assert run["state"] == "done"
    (rescued,) = run["hosts"]
    assert (rescued["node"], rescued["address"], rescued["state"]) == (host.name, host.address, "recovered"), rescued
    assert [s["name"] for s in rescued["steps"]] == ["connect", "diagnose", "kill_runaway", "restart_agent",
                                                     "wait_online"]
    assert all(s["ok"] and s["seconds"] >= 0 for s in rescued["steps"])
    killed = rescued["steps"][2]["summary"]
    assert "killed lab cgroup runaway (pids=8 max=8" in killed and "processes of attendee class" in killed
    assert ssh_ok(host, f"cat {labs}/runaway/pids.current; pgrep -c -U class || true").split() == ["0", "0"]
    ssh_ok(host, f"rmdir {labs}/runaway")

    after = room.nodes()[host.name]
    assert (after["id"], after["state"]) == (before["id"], "online")
    assert after["last_seen_at"] > before["last_seen_at"]
    # Exactly one agent again, under a live supervisor.
    assert ssh_ok(host, "/usr/local/sbin/labfleet-agent-supervisor status").startswith("running")
    assert len(ssh_ok(host, "pgrep -f -- '[l]abfleet-agent run --config'").split()) == 1

    detail = room.api("GET", f"/api/v1/rescue/{run['id']}/hosts/{host.name}")
    diagnostics = detail["diagnostics"]
    assert diagnostics["agent_status"].startswith("not running")  # what the instructor learns: it had died
    assert {"agent_log", "process_tree", "load", "memory", "lab_cgroups", "kernel_log"} <= set(diagnostics)
    assert "MemTotal" in diagnostics["memory"] and "parent " in diagnostics["lab_cgroups"]
    assert "# step restart_agent: ok" in detail["transcript"]

    entries = room.api("GET", "/api/v1/audit?limit=300")["entries"]
    steps = [e["detail"]["step"] for e in entries if e["action"] == "rescue.step" and e["target"] == before["id"]]
    assert sorted(steps) == sorted(["connect", "diagnose", "kill_runaway", "restart_agent", "wait_online"])
    assert any(e["action"] == "rescue.result" and e["detail"]["state"] == "recovered" for e in entries)


def test_diagnostics_bundle_through_the_agent_and_over_ssh_without_secrets(room, fleet2, tmp_path):
    alive, silent = fleet2.hosts()
    for host in (alive, silent):
        ssh_ok(host, f"echo '{SECRET_LINE}' >> /var/log/labfleet-agent/agent.log")
    wait_until(lambda: state_of(room, alive.name) == "online", timeout=60, what=f"{alive.name} online")
    stop_agent(silent)
    wait_until(lambda: state_of(room, silent.name) == "offline", timeout=30, what=f"{silent.name} offline")

    for host, source in ((alive, "agent (collect-state, now)"), (silent, "controller (the agent's last snapshot)")):
        out = tmp_path / f"{host.name}.tar.gz"
        done = labfleet(room, "diagnostics", host.name, "-o", str(out), timeout=120)
        assert done.returncode == 0, done.stderr
        with tarfile.open(out) as tar:
            files = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode() for m in tar.getmembers()}
        assert {"state-snapshot.json", "lab-progress.json", "command-history.json", "agent.log", "readiness.json",
                "system-facts.txt", "processes.txt", "manifest.json"} <= set(files)
        assert json.loads(files["readiness.json"])["ready"] is True
        manifest = json.loads(files["manifest.json"])
        assert manifest["parts"]["state-snapshot.json"] == source
        assert manifest["parts"]["agent.log"] == "node over SSH"
        assert json.loads(files["state-snapshot.json"]).get("hostname") == host.name
        assert "supervisor: starting" in files["agent.log"]
        everything = "".join(files.values())
        assert "hunter2-very-secret" not in everything and "lfn_AAAA" not in everything
        assert "password=********" in files["agent.log"]
        assert "BEGIN OPENSSH PRIVATE KEY" not in everything
    audited = [e["detail"]["node"] for e in room.api("GET", "/api/v1/audit?action=node.diagnostics")["entries"]]
    assert sorted(audited) == sorted([alive.name, silent.name])


def test_a_changed_host_key_is_refused_and_reported(room, fleet2):
    host = fleet2.hosts()[1]
    known_before = open(host.known_hosts_path).read()
    ssh_ok(host, "rm -f /etc/ssh/labfleet-fleet/ssh_host_ed25519_key* && "
                 "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/labfleet-fleet/ssh_host_ed25519_key")
    fleet2.stop_sshd(host.name)
    fleet2.start_sshd(host.name)
    assert ssh(host, "true").returncode != 0  # OpenSSH agrees: the key is not the recorded one

    done = labfleet(room, "rescue", "--node", host.name, "--json", timeout=120)
    assert done.returncode == 1
    (refused,) = json.loads(done.stdout)["hosts"]
    assert refused["state"] == "refused" and "host key CHANGED" in refused["message"], refused
    assert [s["name"] for s in refused["steps"]] == ["connect"]  # nothing ran on the host
    assert open(host.known_hosts_path).read() == known_before  # never accepted, nowhere written
    entries = room.api("GET", "/api/v1/audit?action=rescue.refused")["entries"]
    assert [e["detail"]["node"] for e in entries] == [host.name]

    shown = labfleet(room, "rescue", "--node", host.name, timeout=120)  # the table an instructor reads
    assert shown.returncode == 1 and "refused" in shown.stdout and "CHANGED" in shown.stdout  # (cells wrap)
