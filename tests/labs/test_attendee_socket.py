"""The attendee's `lab` command against the agent's Unix socket, run as real users (SO_PEERCRED decides)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node_agent.attendee_socket import AttendeeServer
from node_agent.labs.service import LabService
from tests.labs.conftest import LabEnv
from tests.labs.test_engine import write_lab


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
    argv = [sys.executable, "-m", "node_agent.attendee_cli", "--socket", str(server.path), *args]
    if uid is not None:
        argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=os.getcwd(),
                          env={**os.environ, "PYTHONPATH": os.getcwd()})


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


def test_solve_is_for_root_only_and_strangers_are_refused(served):
    env, server, marker = served
    a = env.attendee
    refused = lab(server, "--json", "--lab", "scripted", "check", uid=65534, gid=65534)  # nobody
    answer = json.loads(refused.stdout)
    assert refused.returncode == 2 and answer["error"] == "forbidden" and "uid 65534" in answer["detail"]
    denied = subprocess.run(
        ["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--clear-groups", "--", sys.executable, "-c",
         "import json,sys; from node_agent.attendee_cli import request; "
         f"print(json.dumps(request(__import__('pathlib').Path('{server.path}'), "
         "{'action': 'solve', 'lab': 'scripted'})))"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=60)
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
    import socket

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
