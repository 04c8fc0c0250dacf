"""Five real agents on loopback: enroll, answer exec --all, go offline when killed, return with their identity."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.processes import REPO, wait_until

pytestmark = pytest.mark.e2e


def labfleet(controller, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *args], env=controller.env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def online(controller, names):
    nodes = controller.nodes()
    return all(nodes.get(n, {}).get("state") == "online" for n in names) and nodes


def test_five_agents_enroll_answer_and_survive_a_kill(controller, agents):
    controller.start_web()
    controller.start_worker(beat=True)
    names = [f"vm-{i}" for i in range(1, 6)]
    fleet = {name: agents(name, controller) for name in names}
    nodes = wait_until(lambda: online(controller, names), timeout=60, what="5 agents online")
    identity = {name: nodes[name]["id"] for name in names}

    status = json.loads(labfleet(controller, "status", "--json").stdout)
    assert sorted(n["name"] for n in status if n["state"] == "online") == names

    run = labfleet(controller, "exec", "ping", "--all", "--json", "--wait", "30")
    assert run.returncode == 0, run.stderr
    batch = json.loads(run.stdout)
    assert batch["total"] == batch["done"] == 5
    assert sorted(c["node"] for c in batch["commands"]) == names
    assert all(c["state"] == "succeeded" and c["result"]["output"]["pong"] is True for c in batch["commands"])

    victim = fleet["vm-3"]
    victim.proc.kill()
    # Offline within 3 missed heartbeats (1 s each), plus one sweep period and the heartbeat flush.
    wait_until(lambda: controller.nodes()["vm-3"]["state"] == "offline", timeout=3 * 1.0 + 0.5 + 0.5 + 2,
               what="vm-3 offline after SIGKILL")
    assert all(controller.nodes()[n]["state"] == "online" for n in names if n != "vm-3")

    victim.start(controller.url, controller.enrollment_token, ca_file=controller.ca_file)
    nodes = wait_until(lambda: online(controller, ["vm-3"]), timeout=30, what="vm-3 back online")
    assert nodes["vm-3"]["id"] == identity["vm-3"]
    assert len(nodes) == 5  # no duplicate node was created

    audit = json.loads(labfleet(controller, "audit", "--json", "--limit", "200").stdout)
    actions = [(e["action"], e["detail"].get("node") or e["target"]) for e in audit]
    assert ("node.offline", "vm-3") in actions
    assert any(a == "command.issue" for a, _ in actions)
    assert sum(1 for e in audit if e["action"] == "command.result") == 5


def test_collect_state_reports_the_kernel_facts(controller, agents):
    controller.start_web()
    agents("vm-1", controller)
    wait_until(lambda: online(controller, ["vm-1"]), timeout=60, what="agent online")
    run = labfleet(controller, "exec", "collect-state", "--node", "vm-1", "--json")
    assert run.returncode == 0, run.stderr
    (command,) = json.loads(run.stdout)["commands"]
    output = command["result"]["output"]
    assert output["kernel_release"] == subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    assert output["cgroup"]["layout"] in ("v1", "v2", "hybrid")
    assert {"user", "mnt", "pid", "ipc", "uts", "net", "cgroup"} <= set(output["namespaces"])
    # The heartbeat digest made the agent send its full state: the instructor sees it without asking.
    node = wait_until(lambda: controller.api("GET", "/api/v1/nodes/vm-1")["state_snapshot"] or None,
                      timeout=30, what="state snapshot stored")
    assert node.get("hostname")
