"""``labfleet status`` is an HTTP client: the installed console script against a live controller,
loading none of the server stack (Flask, SQLAlchemy, Alembic, Celery, gunicorn).

A real controller (gunicorn on loopback, SQLite, TLS with the room CA ``labfleet init`` made) and
the real ``labfleet`` entry point in a subprocess, with ``PYTHONPROFILEIMPORTTIME=1`` (what
``python -X importtime`` does): every module the process imported is listed on its stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import REPO, Controller, free_port

SERVER_MODULES = ("flask", "werkzeug", "sqlalchemy", "alembic", "celery", "gunicorn")
LABFLEET = Path(sys.executable).parent / "labfleet"


@pytest.fixture(scope="module")
def controller(tmp_path_factory) -> Iterator[Controller]:
    data_dir = tmp_path_factory.mktemp("cli-client-only")
    ctl = Controller(data_dir, f"sqlite:///{data_dir / 'labfleet.sqlite'}", "")
    ctl.init(enroll_uses=1)
    try:
        ctl.start_web()
        body = json.dumps({"enrollment_token": ctl.enrollment_token, "machine_id": uuid.uuid4().hex,
                           "machine_secret": "s" * 32, "name": "vm-7", "hostname": "vm-7",
                           "agent_version": "1.0"}).encode()
        request = urllib.request.Request(ctl.url + "/api/agent/v1/enroll", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30, context=ctl.ssl_context()):
            pass
        yield ctl
    finally:
        ctl.stop()


def labfleet(controller: Controller, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """The console script; returns what it did and the top-level packages it imported."""
    env = {**controller.env(), "COLUMNS": "200", "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run([str(LABFLEET), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in done.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    return done, imported


def test_status_lists_the_node_without_loading_the_server_stack(controller):
    assert LABFLEET.exists(), f"the console script is not installed at {LABFLEET}"
    done, imported = labfleet(controller, "status")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "vm-7" in done.stdout and "/1 online" in done.stdout, done.stdout
    assert "click" in imported and "controller" in imported  # the import listing works at all
    assert not imported & set(SERVER_MODULES), f"labfleet status imported {sorted(imported & set(SERVER_MODULES))}"


def test_status_json_is_the_node_list(controller):
    done, imported = labfleet(controller, "status", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [n["name"] for n in json.loads(done.stdout)] == ["vm-7"]
    assert not imported & set(SERVER_MODULES)


def test_unreachable_controller_is_one_line_and_exit_1(controller):
    done, _ = labfleet(controller, "--url", f"https://127.0.0.1:{free_port()}", "status")
    assert done.returncode == 1
    assert "cannot reach the controller" in done.stderr and "Traceback" not in done.stderr
