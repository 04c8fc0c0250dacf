"""Labs through the whole system: instructor CLI → controller → agent → kernel, and the attendee's `lab`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.labs.conftest import LabEnv
from tests.labs.test_engine import write_lab
from tests.processes import REPO, Agent, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent's labs act on the kernel as root")


@pytest.fixture
def lab_agent(controller, attendee, tmp_path):
    labs = tmp_path / "labs"
    marker = f"/tmp/lf-e2e-{os.getpid()}-{tmp_path.name}"
    write_lab(labs, "scripted", Path(marker).name)
    prefix = LabEnv(attendee, tmp_path, labs_dir=labs).prefix
    socket_dir = Path("/run") / f"labfleet-e2e-{prefix}"
    config = tmp_path / "agent.toml"
    config.write_text(f'labs_dir = "{labs}"\nattendee_user = "{attendee.user}"\nlab_prefix = "{prefix}"\n'
                      f'lab_cgroup_parent = "labfleet-test/{prefix}"\n'
                      f'attendee_socket = "{socket_dir}/attendee.sock"\n')
    controller.start_web()
    agent = Agent("vm-lab", tmp_path / "agents" / "vm-lab").start(controller.url, controller.enrollment_token,
                                                                 config_file=config, ca_file=controller.ca_file)
    wait_until(lambda: controller.nodes().get("vm-lab", {}).get("state") == "online", timeout=30,
               what="the lab agent online")
    yield controller, agent, marker, socket_dir / "attendee.sock"
    agent.proc.stop()
    subprocess.run(["rm", "-f", marker])
    shutil.rmtree(socket_dir, ignore_errors=True)


def labfleet(controller, *args):
    env = {**controller.env(), "LABFLEET_URL": controller.url, "LABFLEET_TOKEN": controller.api_token}
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_instructor_checks_solves_and_resets_and_progress_is_stored(lab_agent, attendee):
    controller, _agent, marker, sock = lab_agent
    failed = labfleet(controller, "check", "scripted", "--all")
    assert failed.returncode == 1, failed.stderr
    assert "failed" in failed.stdout and "does not exist yet" in failed.stdout

    # The attendee checks from their terminal; the result reaches the controller with the state report.
    subprocess.run(["setpriv", f"--reuid={attendee.uid}", f"--regid={attendee.gid}", "--clear-groups", "--",
                    "touch", marker], check=True)
    own = subprocess.run(["setpriv", f"--reuid={attendee.uid}", f"--regid={attendee.gid}", "--clear-groups", "--",
                          sys.executable, "-m", "node_agent.attendee_cli", "--socket", str(sock), "--lab",
                          "scripted", "check"], capture_output=True, text=True, cwd=REPO, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert own.returncode == 0, own.stdout + own.stderr

    def progress():
        rows = json.loads(labfleet(controller, "progress", "--json").stdout)
        return rows if rows and rows[0]["status"] == "passed" else None

    (row,) = wait_until(progress, timeout=30, what="the attendee's check in the controller's progress")
    assert (row["node"], row["lab"], row["step"]) == ("vm-lab", "scripted", "make")

    reset = labfleet(controller, "reset", "scripted", "--all")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert "clean" in reset.stdout and not os.path.exists(marker)
    assert json.loads(labfleet(controller, "progress", "--json").stdout) == []

    solved = labfleet(controller, "solve", "scripted", "--all", "--json")
    assert solved.returncode == 0, solved.stderr
    (command,) = json.loads(solved.stdout)["commands"]
    assert command["result"]["output"]["passed"] is True and os.path.exists(marker)

    audit = controller.api("GET", "/api/v1/audit?limit=50")
    kinds = {e["detail"].get("kind") for e in audit["entries"] if e["action"] == "command.issue"}
    assert {"lab.check", "lab.reset", "lab.solve"} <= kinds


def test_unknown_lab_is_a_clear_failed_result(lab_agent):
    controller, _agent, _marker, _sock = lab_agent
    out = labfleet(controller, "check", "no-such-lab", "--all", "--json")
    (command,) = json.loads(out.stdout)["commands"]
    assert command["state"] == "failed"
    assert command["result"]["error"] == "no lab 'no-such-lab'; labs: scripted"


def test_a_bad_lab_id_is_refused_by_the_controller_with_the_field(lab_agent):
    controller, _agent, _marker, _sock = lab_agent
    out = labfleet(controller, "check", "../etc", "--all")
    assert out.returncode != 0 and "args.lab" in (out.stderr + out.stdout)
