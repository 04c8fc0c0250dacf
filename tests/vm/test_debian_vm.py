"""The labs where attendees are: a real Debian 12 VM (QEMU), provisioned by `labfleet provision`.

One VM and one TLS controller for the module (``conftest.py``); the tests run in
order: the VM is what Debian 12 attendees get (systemd as PID 1, pure cgroup v2)
and reaches nothing but this machine; the real ``playbooks/site.yml`` provisions
it over SSH through the controller (static inventory, the uploaded key), the
agent runs under its systemd unit and enrolls over TLS; then each cgroup lab's
v2 back-end passes the attendee's walkthrough (typed over SSH as the attendee),
the instructor's solve, check and reset through the controller, and every reset
is clean.
"""

from __future__ import annotations

import json
import shlex

import pytest

from tests.processes import REPO, wait_until
from tests.provision.conftest import labfleet, labfleet_json

# The first test also builds the image when this machine has none (about a minute) and boots the VM;
# the playbook's tasks run under TCG.
pytestmark = [pytest.mark.e2e, pytest.mark.vm, pytest.mark.timeout(1500)]

NODE = "labvm"
# The cgroup labs and their one step each.
CGROUP_LABS = {"cg-pids": "limit", "cg-cpu": "throttle", "cg-forkbomb": "bomb", "ns-cgroup": "rooted"}


def test_the_vm_runs_systemd_on_pure_cgroup_v2_and_reaches_only_this_machine(vm):
    assert vm.ssh_ok("cat /proc/1/comm").strip() == "systemd"
    assert vm.ssh_ok("stat -fc %T /sys/fs/cgroup").strip() == "cgroup2fs"
    mounts = [line.split() for line in vm.ssh_ok("cat /proc/mounts").splitlines()]
    assert [m[2] for m in mounts if m[2].startswith("cgroup")] == ["cgroup2"]  # no v1 hierarchy at all
    assert {"cpu", "pids"} <= set(vm.ssh_ok("cat /sys/fs/cgroup/cgroup.controllers").split())
    # restrict=on: no route out of QEMU, not even to this machine's own services through QEMU's gateway
    # (10.0.2.2); only the two forwards the fixture set up.
    for address, port in (("1.1.1.1", 80), ("10.0.2.2", 22)):
        probe = vm.ssh(f"timeout 5 bash -c '</dev/tcp/{address}/{port}' && echo reached || echo unreachable")
        assert probe.stdout.strip() == "unreachable", (address, probe)


def test_provision_installs_the_agent_under_systemd_and_it_enrolls(vm, vm_controller, tmp_path):
    key = tmp_path / "root.key"
    key.write_text(vm.key.read_text())
    key.chmod(0o600)
    attendee_key = vm.key.with_suffix(".key.pub").read_text().strip()
    inventory = tmp_path / "vm.yml"
    inventory.write_text(json.dumps({"hosts": [{
        "name": NODE, "address": "127.0.0.1", "port": vm.ssh_port, "user": "root", "private_key": "root.key",
        "vars": {"labfleet_attendee_ssh_keys": [attendee_key]}}]}))
    done = labfleet(vm_controller, "provision", "--inventory", str(inventory), timeout=1500)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    run_id = vm_controller.api("GET", "/api/v1/provision-runs?limit=1")["runs"][0]["id"]
    run = vm_controller.api("GET", f"/api/v1/provision-runs/{run_id}")
    assert run["state"] == "succeeded" and run["controller_url"] == "https://10.0.2.100:8300"
    assert [(h["host"], h["state"]) for h in run["hosts"]] == [(NODE, "ok")]

    wait_until(lambda: vm_controller.nodes().get(NODE, {}).get("state") == "online", timeout=120,
               what="the VM's agent online")
    # systemd keeps the agent (its unit, in its own cgroup), not the supervisor; it pins the room CA.
    assert vm.ssh_ok("systemctl is-active labfleet-agent").strip() == "active"
    main_pid = vm.ssh_ok("systemctl show -p MainPID --value labfleet-agent").strip()
    assert vm.ssh_ok(f"cat /proc/{main_pid}/cgroup").strip() == "0::/system.slice/labfleet-agent.service"
    assert vm.ssh("test -e /usr/local/sbin/labfleet-agent-supervisor").returncode != 0
    assert vm.ssh_ok("cat /etc/labfleet-agent/ca.pem") == vm_controller.ca_file.read_text()
    batch = labfleet_json(vm_controller, "exec", "ping", "--node", NODE, "--wait", "60")
    assert [c["state"] for c in batch["commands"]] == ["succeeded"]


def lab_env(vm, lab: str) -> dict[str, str]:
    """The LAB_* values the agent on the VM gives this lab (its own context: nonce, cgroup paths)."""
    script = ("import json, sys\n"
              "from node_agent.config import AgentConfig\n"
              "from node_agent.labs.engine_setup import engine_from_config\n"
              "engine = engine_from_config(AgentConfig.from_file('/etc/labfleet-agent/agent.toml'))\n"
              "ctx = engine._make_context(engine.catalog.get(sys.argv[1]))\n"
              "print(json.dumps({'LAB_' + k.upper(): v for k, v in ctx.placeholders().items()}))\n")
    out = vm.ssh_ok(f"/opt/labfleet-agent/venv/bin/python -c {shlex.quote(script)} {lab}")
    return json.loads(out)


def instructor(vm_controller, verb: str, lab: str) -> dict:
    """``labfleet check|solve|reset LAB --node labvm`` as the instructor runs it; the one command's output."""
    done = labfleet(vm_controller, verb, lab, "--node", NODE, "--wait", "240", "--json", timeout=300)
    batch = json.loads(done.stdout)
    [command] = batch["commands"]
    assert command["state"] == "succeeded", command
    return command["result"]["output"]


@pytest.mark.parametrize("lab", list(CGROUP_LABS))
def test_cgroup_lab_walkthrough_cheat_and_reset_on_the_vm(vm, vm_controller, lab):
    step = CGROUP_LABS[lab]
    env = lab_env(vm, lab)
    assert env["LAB_CGROUP_DIR"].startswith("/sys/fs/cgroup/"), env  # the v2 path: no per-controller mount

    # The attendee types the walkthrough in a login shell over SSH; the instructor checks it.
    script = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    script += (REPO / "labs" / lab / f"{step}.sh").read_text()
    typed = vm.ssh(f"bash -ls <<'LABFLEET_WALKTHROUGH'\n{script}\nLABFLEET_WALKTHROUGH", user="class", timeout=240)
    assert typed.returncode == 0, typed.stdout[-3000:] + typed.stderr[-3000:]
    checked = instructor(vm_controller, "check", lab)
    assert checked["passed"], checked
    reset = instructor(vm_controller, "reset", lab)
    assert reset["clean"], reset

    # The instructor's cheat, the check, and a reset that leaves nothing.
    solved = instructor(vm_controller, "solve", lab)
    assert solved["passed"], solved
    checked = instructor(vm_controller, "check", lab)
    assert checked["passed"], checked
    reset = instructor(vm_controller, "reset", lab)
    assert reset["clean"], reset
    again = instructor(vm_controller, "check", lab)
    assert not again["passed"], again
