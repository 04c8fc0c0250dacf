"""Labs through the whole system: instructor CLI → controller → agent → kernel, and the attendee's `lab`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import attendee_share
from tests.labs.conftest import LabEnv
from tests.labs.test_engine import write_lab
from tests.processes import REPO, Agent, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent's labs act on the kernel as root")


@pytest.fixture
def lab_agent(controller, attendee, tmp_path):
    yield from _lab_agent(controller, attendee, tmp_path, lambda labs, marker: write_lab(labs, "scripted", marker))


def _lab_agent(controller, attendee, tmp_path, write, extra_config=""):
    """An agent with the labs ``write(labs_dir, marker_name)`` makes, and its attendee socket under /run."""
    labs = tmp_path / "labs"
    marker = f"/tmp/lf-e2e-{os.getpid()}-{tmp_path.name}"
    write(labs, Path(marker).name)
    prefix = LabEnv(attendee, tmp_path, labs_dir=labs).prefix
    socket_dir = Path("/run") / f"labfleet-e2e-{prefix}"
    config = tmp_path / "agent.toml"
    config.write_text(f'labs_dir = "{labs}"\nattendee_user = "{attendee.user}"\nlab_prefix = "{prefix}"\n'
                      f'lab_cgroup_parent = "labfleet-test/{prefix}"\n'
                      f'attendee_socket = "{socket_dir}/attendee.sock"\n' + extra_config)
    controller.start_web()
    agent = Agent("vm-lab", tmp_path / "agents" / "vm-lab").start(controller.url, controller.enrollment_token,
                                                                 config_file=config, ca_file=controller.ca_file)
    wait_until(lambda: controller.nodes().get("vm-lab", {}).get("state") == "online", timeout=30,
               what="the lab agent online")
    yield controller, agent, marker, socket_dir / "attendee.sock"
    agent.proc.stop()
    subprocess.run(["rm", "-f", marker, marker + ".more"])
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
    share = attendee_share.get()
    subprocess.run(["setpriv", f"--reuid={attendee.uid}", f"--regid={attendee.gid}", "--clear-groups", "--",
                    "touch", marker], check=True)
    own = subprocess.run(["setpriv", f"--reuid={attendee.uid}", f"--regid={attendee.gid}", "--clear-groups", "--",
                          share.python, "-m", "node_agent.attendee_cli", "--socket", str(sock), "--lab",
                          "scripted", "check"], capture_output=True, text=True, cwd=share.root, timeout=60,
                         env=share.env())
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


# --- the attendee socket: reset --to-step, and a flood of idle connections ------------------------

TWO_STEP_LAB = """
id = "two-step"
title = "Two markers"
topic = "namespaces"
minutes = 5
summary = "Make {marker}, then {marker}.more."
[[steps]]
id = "make"
title = "The first marker"
instructions = "make.md"
check = {{ kind = "script", path = "check-make.sh" }}
solve = {{ kind = "script", path = "solve-make.sh" }}
reset = {{ kind = "script", path = "reset.sh" }}
[[steps]]
id = "more"
title = "The second marker"
instructions = "make.md"
check = {{ kind = "script", path = "check-more.sh" }}
solve = {{ kind = "script", path = "solve-more.sh" }}
reset = {{ kind = "script", path = "reset.sh" }}
"""


def write_two_step_lab(labs: Path, marker: str) -> None:
    folder = labs / "two-step"
    folder.mkdir(parents=True)
    path = f"/tmp/{marker}"
    (folder / "lab.toml").write_text(TWO_STEP_LAB.format(marker=path))
    (folder / "make.md").write_text("Make the markers.\n")
    for step, target in (("make", path), ("more", path + ".more")):
        (folder / f"check-{step}.sh").write_text(f"[ -e {target} ] && echo '{{}}' && exit 0\necho '{{}}'; echo '{target} is missing'; exit 1\n")
        (folder / f"solve-{step}.sh").write_text(f"touch {target}\n")
    (folder / "reset.sh").write_text(f"rm -f {path} {path}.more\n")


@pytest.fixture
def two_step_agent(controller, attendee, tmp_path):
    # Idle attendee connections are held up to 30 s: long enough to watch heartbeats go on meanwhile.
    yield from _lab_agent(controller, attendee, tmp_path, write_two_step_lab,
                          "attendee_max_clients = 16\nattendee_client_timeout = 30\n")


def attendee_lab(attendee, sock, *args):
    share = attendee_share.get()
    return subprocess.run(["setpriv", f"--reuid={attendee.uid}", f"--regid={attendee.gid}", "--clear-groups", "--",
                           share.python, "-m", "node_agent.attendee_cli", "--socket", str(sock), *args],
                          capture_output=True, text=True, cwd=share.root, timeout=60, env=share.env())


def progress_of(controller, step):
    rows = json.loads(labfleet(controller, "progress", "--json").stdout)
    return next((r["status"] for r in rows if (r["lab"], r["step"]) == ("two-step", step)), None)


def test_an_attendee_reset_to_a_later_step_reaches_the_instructor_as_skipped_and_root_gets_it_solved(
        two_step_agent, attendee):
    controller, _agent, marker, sock = two_step_agent
    reset = attendee_lab(attendee, sock, "--lab", "two-step", "reset", "--to-step", "more")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert not os.path.exists(marker)  # the first step's solve did not run
    wait_until(lambda: progress_of(controller, "make") == "skipped", timeout=30,
               what="the skipped step in the controller's progress")
    table = labfleet(controller, "progress", "--lab", "two-step")
    assert table.returncode == 0 and "skipped" in table.stdout, table.stdout + table.stderr

    by_instructor = labfleet(controller, "reset", "two-step", "--to-step", "more", "--all")
    assert by_instructor.returncode == 0, by_instructor.stdout + by_instructor.stderr
    assert os.path.exists(marker) and not os.path.exists(marker + ".more")
    assert progress_of(controller, "make") == "passed"


def agent_threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_a_flood_of_idle_connections_is_bounded_and_neither_starves_lab_nor_the_heartbeat(two_step_agent, attendee):
    controller, agent, _marker, sock = two_step_agent
    max_clients, flood = 16, 200
    pid = agent.proc.pid
    baseline = agent_threads(pid)
    seen = controller.nodes()["vm-lab"]["last_seen_at"]
    conns: list[socket.socket] = []
    answers: dict[int, object] = {}

    def read_answers() -> int:
        for i, conn in enumerate(conns):
            if i not in answers:
                try:
                    data = conn.recv(4096, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    answers[i] = repr(exc)
                    continue
                answers[i] = json.loads(data) if data else "closed"
        return len(answers)

    try:
        for _ in range(flood):  # half a request each, as the attendee would leave them
            conn = socket.socket(socket.AF_UNIX)
            conns.append(conn)
            conn.connect(str(sock))
            try:
                conn.sendall(b'{"action": "sta')
            except (BrokenPipeError, ConnectionResetError):
                pass  # past the limit the agent may answer "busy" and close before we send; the answer waits to be read
        try:
            wait_until(lambda: read_answers() >= flood - max_clients, timeout=30, what="busy answers")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the agent has {agent_threads(pid)} threads, {baseline} before") from None
        assert all(a == {"ok": False, "error": "busy", "detail": "agent busy, try again"} for a in answers.values())
        assert len(answers) == flood - max_clients  # the others hold the slots, waiting for their deadline
        assert agent_threads(pid) <= baseline + max_clients, (agent_threads(pid), baseline)

        # Heartbeats go on while every slot is held, and a fresh `lab` is told to come back.
        wait_until(lambda: controller.nodes()["vm-lab"]["last_seen_at"] != seen, timeout=20,
                   what="a heartbeat while the socket is flooded")
        busy = attendee_lab(attendee, sock, "--lab", "two-step", "status")
        assert busy.returncode == 2 and "agent busy, try again" in busy.stderr

        # The idle ones are dropped at their deadline; then `lab` is answered again.
        wait_until(lambda: read_answers() == flood, timeout=60, what="the idle clients dropped")
        held = [a for a in answers.values() if a != {"ok": False, "error": "busy", "detail": "agent busy, try again"}]
        assert len(held) == max_clients and all(a["error"] == "timeout" for a in held), held
    finally:
        for conn in conns:
            conn.close()
    status = wait_until(lambda: (lambda r: r if r.returncode == 0 else None)(
        attendee_lab(attendee, sock, "--lab", "two-step", "status")), timeout=30, what="lab status answered")
    assert "two-step" in status.stdout
    wait_until(lambda: agent_threads(pid) <= baseline, timeout=30, what="the agent back to its own threads")
