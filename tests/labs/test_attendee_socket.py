"""The attendee's `lab` command against the agent's Unix socket, run as real users (SO_PEERCRED decides)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from node_agent.attendee_socket import AttendeeServer
from node_agent.labs.service import LabService
from tests import attendee_share
from tests.labs.conftest import LabEnv
from tests.labs.test_engine import write_lab
from tests.processes import wait_until


@pytest.fixture
def served(attendee, tmp_path):
    labs = tmp_path / "labs"
    marker = f"lf-socket-{os.getpid()}-{tmp_path.name}"
    write_lab(labs, "scripted", marker)
    env = LabEnv(attendee, tmp_path, labs_dir=labs)
    # Under /run as on a VM: the attendee could not reach a socket in pytest's private temp dir.
    sock_dir = Path("/run") / f"labfleet-test-{env.prefix}"
    server = AttendeeServer(sock_dir / "attendee.sock", LabService(env.engine))
    server.start()
    yield env, server, f"/tmp/{marker}"
    server.stop()
    shutil.rmtree(sock_dir, ignore_errors=True)
    subprocess.run(["rm", "-f", f"/tmp/{marker}"])
    env.cleanup()


def lab(server, *args, uid=None, gid=None):
    share = attendee_share.get()
    argv = [share.python, "-m", "node_agent.attendee_cli", "--socket", str(server.path), *args]
    if uid is not None:
        argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=share.root, env=share.env())


def test_the_attendee_checks_gets_hints_and_resets_without_sudo(served):
    env, server, marker = served
    a = env.attendee
    out = lab(server, "--lab", "scripted", "check", uid=a.uid, gid=a.gid)
    assert out.returncode == 1 and "FAIL" in out.stdout and f"{marker} does not exist yet" in out.stdout
    assert lab(server, "use", "scripted", uid=a.uid, gid=a.gid).returncode == 0
    hint = lab(server, "hint", "-n", "2", uid=a.uid, gid=a.gid)
    assert "hint 2/2 for scripted/make" in hint.stdout and "touch the marker file" in hint.stdout
    env.run_walkthrough("scripted", "make")
    passed = lab(server, "--json", "check", uid=a.uid, gid=a.gid)
    assert passed.returncode == 0 and json.loads(passed.stdout)["result"]["steps"][0]["status"] == "passed"
    status = lab(server, "status", uid=a.uid, gid=a.gid)
    assert "[PASS] make" in status.stdout
    reset = lab(server, "reset", uid=a.uid, gid=a.gid)
    assert reset.returncode == 0 and "reset clean" in reset.stdout
    assert not os.path.exists(marker)


def test_an_attendee_may_name_the_lab_where_a_step_goes(served):
    """`lab check ns-uts` is what an attendee types first: it checks that lab, with no `lab use` before it."""
    env, server, marker = served
    a = env.attendee
    assert "no current lab" in lab(server, "check", uid=a.uid, gid=a.gid).stderr
    out = lab(server, "check", "scripted", uid=a.uid, gid=a.gid)
    assert out.returncode == 1 and f"{marker} does not exist yet" in out.stdout, out.stderr
    assert "hint 1/2 for scripted/make" in lab(server, "hint", "scripted", uid=a.uid, gid=a.gid).stdout
    env.run_walkthrough("scripted", "make")
    assert lab(server, "check", "make", uid=a.uid, gid=a.gid).returncode == 0  # a step of the current lab
    reset = lab(server, "reset", "scripted", uid=a.uid, gid=a.gid)
    assert reset.returncode == 0 and "reset clean" in reset.stdout
    assert not os.path.exists(marker)
    unknown = lab(server, "check", "no-such-thing", uid=a.uid, gid=a.gid)
    assert unknown.returncode == 2 and "no-such-thing" in unknown.stderr


def test_solve_is_for_root_only_and_strangers_are_refused(served):
    env, server, marker = served
    a = env.attendee
    refused = lab(server, "--json", "--lab", "scripted", "check", uid=65534, gid=65534)  # nobody
    answer = json.loads(refused.stdout)
    assert refused.returncode == 2 and answer["error"] == "forbidden" and "uid 65534" in answer["detail"]
    denied = subprocess.run(
        ["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--clear-groups", "--", attendee_share.get().python, "-c",
         "import json,sys; from node_agent.attendee_cli import request; "
         f"print(json.dumps(request(__import__('pathlib').Path('{server.path}'), "
         "{'action': 'solve', 'lab': 'scripted'})))"],
        capture_output=True, text=True, env=attendee_share.get().env(), timeout=60)
    assert json.loads(denied.stdout)["error"] == "forbidden"
    assert not os.path.exists(marker)
    from node_agent.attendee_cli import request

    solved = request(server.path, {"action": "solve", "lab": "scripted"})  # this test runs as root
    assert solved["ok"] and solved["result"]["passed"] and os.path.exists(marker)


@pytest.mark.parametrize("payload, field", [
    (b"not json\n", "request"),
    (b'{"action": "format-disk"}\n', "action"),
    (b'{"action": "check", "lab": 7}\n', "lab"),
    (b'{"action": "hint", "lab": "scripted", "level": "max"}\n', "request"),
    (b"x" * 5000 + b"\n", "request"),
])
def test_bad_requests_get_a_clear_error_naming_the_field(served, payload, field):
    _env, server, _marker = served
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(server.path))
        conn.sendall(payload)
        answer = json.loads(conn.makefile().readline())
    assert answer["ok"] is False and answer["error"] == "bad_request" and answer["field"] == field


def test_an_unknown_lab_is_named_in_the_answer(served):
    from node_agent.attendee_cli import request

    _env, server, _marker = served
    answer = request(server.path, {"action": "check", "lab": "no-such-lab"})
    assert answer == {"ok": False, "error": "not_found", "detail": "no lab 'no-such-lab'; labs: scripted"}


# --- reset --to-step: only root gets the earlier steps solved -----------------------------------

@pytest.fixture
def served_catalog(attendee, tmp_path):
    """The repo's own labs behind a socket: ns-net-2's solves make network namespaces a test can look for."""
    env = LabEnv(attendee, tmp_path)
    sock_dir = Path("/run") / f"labfleet-test-{env.prefix}"
    server = AttendeeServer(sock_dir / "attendee.sock", LabService(env.engine))
    server.start()
    yield env, server
    server.stop()
    shutil.rmtree(sock_dir, ignore_errors=True)
    env.cleanup()


def lab_netns(env: LabEnv) -> list[str]:
    from node_agent.kernel import netns

    return sorted(e.name for e in netns.named_netns() if e.name.startswith(env.prefix))


def test_the_attendee_resetting_to_a_later_step_gets_nothing_solved_and_the_steps_before_skipped(served_catalog):
    env, server = served_catalog
    a = env.attendee
    reset = lab(server, "--lab", "ns-net-2", "reset", "--to-step", "veth", uid=a.uid, gid=a.gid)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    # The namespaces step's solve (ip netns add, as root) did not run: the namespaces it makes are absent.
    assert lab_netns(env) == []
    assert "skipped, not solved: namespaces" in reset.stdout and "ready at step veth" in reset.stdout
    status = lab(server, "--lab", "ns-net-2", "status", uid=a.uid, gid=a.gid)
    assert "[SKIP] namespaces" in status.stdout and "[PASS]" not in status.stdout
    checked = json.loads(lab(server, "--json", "--lab", "ns-net-2", "check", "namespaces", uid=a.uid, gid=a.gid).stdout)
    (step,) = checked["result"]["steps"]
    assert (step["status"], step["passed"], checked["result"]["status"]) == ("skipped", False, "skipped")
    assert "skipped by a reset" in step["reason"]
    assert env.engine.progress.load()["ns-net-2"]["namespaces"]["status"] == "skipped"
    hint = json.loads(lab(server, "--json", "--lab", "ns-net-2", "hint", uid=a.uid, gid=a.gid).stdout)
    assert hint["result"]["step"] == "veth"  # the attendee is where they asked to be


def test_root_resetting_to_a_later_step_gets_the_steps_before_solved_and_passed(served_catalog):
    env, server = served_catalog
    reset = lab(server, "--json", "--lab", "ns-net-2", "reset", "--to-step", "veth")  # this test runs as root
    result = json.loads(reset.stdout)["result"]
    assert reset.returncode == 0 and [s["step"] for s in result["resolved"]] == ["namespaces"]
    assert lab_netns(env)  # the solve made the lab's namespaces
    status = lab(server, "--lab", "ns-net-2", "status")
    assert "[PASS] namespaces" in status.stdout and "SKIP" not in status.stdout
    assert lab(server, "--lab", "ns-net-2", "check", "namespaces").returncode == 0
    assert env.engine.reset("ns-net-2")["clean"]


def test_a_skipped_step_passes_once_the_attendee_does_it(served):
    env, server, marker = served
    a = env.attendee
    env.engine.progress.record("scripted", "make", "skipped", "skipped by a reset to a later step")
    still = json.loads(lab(server, "--json", "--lab", "scripted", "check", uid=a.uid, gid=a.gid).stdout)
    assert still["result"]["steps"][0]["status"] == "skipped"
    env.run_walkthrough("scripted", "make")
    done = json.loads(lab(server, "--json", "--lab", "scripted", "check", uid=a.uid, gid=a.gid).stdout)
    assert done["result"]["steps"][0]["status"] == "passed" and done["result"]["passed"]


def test_a_reset_to_an_unknown_step_changes_nothing(served):
    env, server, marker = served
    env.run_walkthrough("scripted", "make")
    out = lab(server, "--lab", "scripted", "reset", "--to-step", "nope", uid=env.attendee.uid, gid=env.attendee.gid)
    assert out.returncode == 2 and "has no step 'nope'" in out.stderr
    assert os.path.exists(marker)  # refused before the lab was reset


# --- bounded clients, per-client deadlines --------------------------------------------------------

@pytest.fixture
def small_server(served):
    """A second socket over the same lab, with room for two clients and a 1 s deadline."""
    env, _server, marker = served
    server = AttendeeServer(Path(str(_server.path) + ".small"), LabService(env.engine), max_clients=2,
                            client_timeout=1.0)
    server.start()
    yield env, server
    server.stop()


def half_request(server) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(str(server.path))
    conn.sendall(b'{"action": "sta')
    return conn


def test_past_the_bound_a_client_is_told_busy_at_once_and_served_once_a_slot_frees(small_server):
    env, server = small_server
    a = env.attendee
    idle = [half_request(server) for _ in range(2)]
    try:
        busy = lab(server, "--lab", "scripted", "status", uid=a.uid, gid=a.gid)
        assert busy.returncode == 2 and busy.stderr.strip() == "lab: agent busy, try again"
    finally:
        for conn in idle:
            conn.close()
    served = wait_until(lambda: (lambda r: r if r.returncode == 0 else None)(
        lab(server, "--lab", "scripted", "status", uid=a.uid, gid=a.gid)), timeout=30, what="a freed slot")
    assert "scripted" in served.stdout


def test_an_idle_or_slow_client_is_dropped_with_a_timeout_line(small_server):
    _env, server = small_server
    with half_request(server) as idle:
        idle.settimeout(30)
        answer = json.loads(idle.makefile().readline())
        assert answer["error"] == "timeout" and idle.recv(10) == b""
    with socket.socket(socket.AF_UNIX) as slow:  # a whole request, a byte at a time: never done in time
        slow.connect(str(server.path))
        slow.settimeout(30)
        answer = None
        for byte in b'{"action": "list"}\n':
            try:
                slow.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        answer = json.loads(slow.makefile().readline())
    assert answer["ok"] is False and answer["error"] == "timeout"


def test_a_stranger_is_refused_on_connect_without_taking_a_slot(small_server):
    env, server = small_server
    idle = [half_request(server) for _ in range(2)]
    try:
        refused = lab(server, "--json", "--lab", "scripted", "status", uid=65534, gid=65534)
        answer = json.loads(refused.stdout)
        assert answer["error"] == "forbidden" and "uid 65534" in answer["detail"]
    finally:
        for conn in idle:
            conn.close()
