"""Text a node sends reaches the instructor's terminal as plain text: no markup, no escape sequence.

A real controller (gunicorn on loopback, SQLite) and the real ``labfleet``
CLI in a subprocess; the node is played over the agent's HTTP API, as an
attendee who is root on their VM could: its name, its agent version, a check
reason and a command error hold Rich markup and terminal escape sequences
(an OSC window title and a clear-screen CSI). Every command that shows them
must finish without a crash, print the brackets as written, and print no
control character.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from tests.processes import REPO, Controller, wait_until

PAYLOAD = "[/bold][red]x\x1b]0;pwned\x07\x1b[2J\u202e"
NAME = f"evil{PAYLOAD}"
# What must be left of the payload on screen: its text, brackets included, without a control character.
SHOWN = "[/bold][red]x]0;pwned[2J"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
LAB, STEP = "ns-ipc", "private-shm"


@pytest.fixture(scope="module")
def controller(tmp_path_factory) -> Iterator[Controller]:
    data_dir = tmp_path_factory.mktemp("cli-node-text")
    ctl = Controller(data_dir, f"sqlite:///{data_dir / 'labfleet.sqlite'}", "")
    ctl.init(enroll_uses=2)
    try:
        ctl.start_web()
        yield ctl
    finally:
        ctl.stop()


class Node:
    """The attendee's side, over the agent API (what a modified agent could send)."""

    def __init__(self, controller: Controller) -> None:
        self.url = controller.url
        self.ssl_context = controller.ssl_context()
        body = self.call("POST", "/api/agent/v1/enroll", {
            "enrollment_token": controller.enrollment_token, "machine_id": uuid.uuid4().hex,
            "machine_secret": "s" * 32, "name": NAME, "hostname": "vm", "agent_version": PAYLOAD[:60]})
        self.id, self.token, self.name = body["node_id"], body["node_token"], body["name"]

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> dict:
        headers = {"Content-Type": "application/json"}
        if getattr(self, "token", None):
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context) as response:
            return json.loads(response.read())

    def report_state(self) -> None:
        labs = {"labs": [{"id": LAB, "title": "t", "available": True, "steps": [{"id": STEP, "title": "s"}]}],
                "catalog": {LAB: [STEP]},
                "progress": {LAB: {STEP: {"status": "failed", "reason": PAYLOAD}}}}
        self.call("PUT", f"/api/agent/v1/nodes/{self.id}/state", {"digest": uuid.uuid4().hex, "state": {"labs": labs}})

    def answer_next(self, result: dict) -> None:
        """Wait for the next command and post ``result`` for it."""
        def poll() -> list:
            return self.call("GET", f"/api/agent/v1/nodes/{self.id}/commands?wait=2")["commands"]

        (command,) = wait_until(poll, timeout=30, what="a command for the node")
        self.call("POST", f"/api/agent/v1/nodes/{self.id}/results", {"command_id": command["id"], **result})


def labfleet(controller: Controller, *args: str, answer=None) -> subprocess.CompletedProcess:
    """The real CLI; ``answer`` runs as the node meanwhile (the CLI waits for results)."""
    helper = threading.Thread(target=answer) if answer else None
    if helper:
        helper.start()
    done = subprocess.run([sys.executable, "-m", "controller.cli.main", *args], env={**controller.env(),
                          "COLUMNS": "400"}, cwd=REPO, capture_output=True, text=True, timeout=120)
    if helper:
        helper.join(timeout=60)
    return done


def assert_plain(done: subprocess.CompletedProcess, *, expect_rc: int) -> None:
    assert "Traceback" not in done.stderr and "MarkupError" not in done.stderr, done.stderr
    assert done.returncode == expect_rc, (done.stdout, done.stderr)
    assert SHOWN in done.stdout, done.stdout
    assert not CONTROL.search(done.stdout + done.stderr), repr(done.stdout)


@pytest.fixture(scope="module")
def node(controller) -> Node:
    node = Node(controller)
    assert node.name == NAME  # the controller stores what the node sent
    node.report_state()
    return node


def test_status_shows_a_node_name_and_version_as_written(controller, node):
    assert_plain(labfleet(controller, "status"), expect_rc=0)


def test_exec_results_show_a_node_error_as_written(controller, node):
    answer = lambda: node.answer_next({"ok": False, "error": PAYLOAD})  # noqa: E731
    assert_plain(labfleet(controller, "exec", "ping", "--all", "--wait", "30", answer=answer), expect_rc=1)


def test_check_results_and_progress_show_a_reason_as_written(controller, node):
    steps = [{"step": STEP, "status": "failed", "reason": PAYLOAD}]
    answer = lambda: node.answer_next({"ok": True, "output": {"lab": LAB, "passed": False, "steps": steps}})  # noqa: E731
    assert_plain(labfleet(controller, "check", LAB, "--all", "--wait", "30", answer=answer), expect_rc=1)


def test_progress_shows_a_reason_as_written(controller, node):
    """The room's whole progress table: one attendee's reason must not take it down for everyone."""
    progress = labfleet(controller, "progress")
    assert_plain(progress, expect_rc=0)
    assert LAB in progress.stdout


def test_a_failed_command_error_is_shown_as_written(controller, node):
    answer = lambda: node.answer_next({"ok": False, "error": PAYLOAD})  # noqa: E731
    assert_plain(labfleet(controller, "check", LAB, "--all", "--wait", "30", answer=answer), expect_rc=1)


def test_json_output_escapes_the_control_characters(controller, node):
    done = labfleet(controller, "status", "--json")
    assert done.returncode == 0 and not CONTROL.search(done.stdout)
    assert [n["name"] for n in json.loads(done.stdout)] == [NAME]


def test_every_other_table_of_node_or_host_text_shows_it_as_written():
    """Provisioning (host messages come from the VMs), audit, tokens: the same rule."""
    from rich.console import Console

    from controller.cli import provision, render

    host = {"host": NAME, "address": PAYLOAD, "state": "failed", "ok": 1, "changed": 0, "failed": 1,
            "unreachable": 0, "failed_task": PAYLOAD, "message": PAYLOAD, "current_task": PAYLOAD}
    run = {"id": PAYLOAD, "playbook": "site", "state": PAYLOAD, "hosts": [host], "summary": {"failed": 1},
           "error": PAYLOAD}
    out = Console(width=400, record=True, force_terminal=False)
    out.print(provision.run_table(run))
    out.print(provision.events_table([{"seq": 1, "host": NAME, "task": PAYLOAD, "status": PAYLOAD,
                                       "message": PAYLOAD}]))
    out.print(render.audit_table([{"at": "2026-01-01T00:00:00", "actor": f"node:{NAME}", "action": "x",
                                   "target": PAYLOAD, "detail": {}}]))
    out.print(render.tokens_table([{"id": "t", "prefix": PAYLOAD, "label": PAYLOAD, "status": "active",
                                    "uses_left": 1, "expires_at": "2026"}]))
    out.print(provision._status(host))
    out.print(provision._status({**host, "state": "running"}))
    render.console, saved = out, render.console
    try:
        provision.print_run(run)
    finally:
        render.console = saved
    text = out.export_text()
    assert text.count(SHOWN) >= 10 and not CONTROL.search(text)
