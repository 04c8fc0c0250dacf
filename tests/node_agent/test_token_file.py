"""The enrollment token leaves the VM's disk once the agent holds node credentials.

A real agent process (``python -m node_agent run``) against the real controller over real
HTTP, configured as playbooks/roles/node_agent configures it: the token in an env file
that systemd or the supervisor turns into LABFLEET_AGENT_ENROLL_TOKEN, and
``enroll_token_file`` naming that file. Then the file-level rules on real files: links and
FIFOs are refused, not followed or waited on.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import pytest

from node_agent.token_file import TokenFileError, forget_token
from tests.node_agent.conftest import WAIT, LiveController
from tests.processes import wait_until


def write_config(path: Path, controller: LiveController, state_dir: Path, **extra: str) -> Path:
    # insecure_http: LiveController is werkzeug's plain HTTP server on loopback; TLS is test_tls.py's.
    lines = [f'controller_url = "{controller.url}"', "insecure_http = true", f'state_dir = "{state_dir}"', 'name = "lab-01"',
             "max_backoff = 0.5", f'attendee_socket = "{path.parent / "attendee.sock"}"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_env(path: Path) -> dict[str, str]:
    """What systemd's EnvironmentFile= (and the supervisor's read_env) make of the file."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#")


def test_the_token_leaves_the_env_file_once_enrolled_and_a_restart_needs_none(start_agent, state_dir, controller,
                                                                             tmp_path):
    token = controller.enrollment_token()
    env_file = tmp_path / "env"
    env_file.write_text(f"# written by the playbook\nLABFLEET_AGENT_ENROLL_TOKEN={token}\nLANG=C.UTF-8\n")
    env_file.chmod(0o600)
    config = write_config(tmp_path / "agent.toml", controller, state_dir, enroll_token_file=str(env_file))

    agent = start_agent("--config", str(config), env=read_env(env_file))
    agent.wait_event("enrolled")
    agent.wait_event("enroll_token.removed")

    assert env_file.read_text() == "# written by the playbook\nLANG=C.UTF-8\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and env_file.stat().st_uid == os.getuid()
    assert not list(tmp_path.glob(".env*")), "a temporary file was left next to the env file"
    node = controller.wait_node()
    assert agent.terminate() == 0

    # The VM reboots (or the supervisor restarts the agent): the env file now gives it no token.
    again = start_agent("--config", str(config), env={"LABFLEET_AGENT_ENROLL_TOKEN": "", **read_env(env_file)})
    ping_id = controller.issue("ping")
    assert controller.wait_result(ping_id)["output"]["agent_pid"] == again.proc.pid
    assert again.events("enrolled") == []  # it kept its credentials
    assert [n["id"] for n in controller.nodes()] == [node["id"]]
    assert [e["target"] for e in controller.audit("node.enroll")] == [node["id"]]
    assert controller.audit("node.re_enroll") == []
    assert token not in str(agent.log_lines + again.log_lines)
    assert again.terminate() == 0


def test_a_token_in_the_config_file_is_removed_from_it(start_agent, state_dir, controller, tmp_path):
    token = controller.enrollment_token()
    config = write_config(tmp_path / "agent.toml", controller, state_dir, enroll_token=token)

    agent = start_agent("--config", str(config), env={"LABFLEET_AGENT_ENROLL_TOKEN": ""})
    agent.wait_event("enroll_token.removed")

    settings = tomllib.loads(config.read_text())
    assert "enroll_token" not in settings and settings["name"] == "lab-01"
    wait_until(lambda: controller.nodes(), timeout=WAIT, what="the node")
    assert agent.terminate() == 0


def test_an_env_file_that_is_a_link_is_neither_followed_nor_changed(tmp_path):
    target = tmp_path / "shadow"
    target.write_text("LABFLEET_AGENT_ENROLL_TOKEN=lfe_x\nroot:$6$hash\n")
    link = tmp_path / "env"
    link.symlink_to(target)

    with pytest.raises(TokenFileError, match="without following links"):
        forget_token(link)

    assert target.read_text() == "LABFLEET_AGENT_ENROLL_TOKEN=lfe_x\nroot:$6$hash\n" and link.is_symlink()


def test_an_env_file_that_is_a_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "env"
    os.mkfifo(fifo)

    with pytest.raises(TokenFileError, match="not a regular file"):
        forget_token(fifo)


def test_only_token_lines_go_and_a_missing_file_is_nothing_to_do(tmp_path):
    env = tmp_path / "env"
    env.write_text("A=1\n  export LABFLEET_AGENT_ENROLL_TOKEN = lfe_y\nLABFLEET_AGENT_ENROLL_TOKENS=keep\n")

    assert forget_token(env) is True
    assert env.read_text() == "A=1\nLABFLEET_AGENT_ENROLL_TOKENS=keep\n"
    assert forget_token(env) is False
    assert forget_token(tmp_path / "absent") is False
