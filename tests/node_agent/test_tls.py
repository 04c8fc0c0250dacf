"""TLS on the room network, agent side: the agent pins the room CA, refuses any other certificate before a
token leaves the machine, and refuses plain HTTP unless told --insecure-http. Against the real controller
under gunicorn with TLS (what `labfleet init` + `labfleet serve` make), and real agent processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.settings import settings_for_tests
from controller.tls import ensure_certificates
from node_agent.config import AgentConfig
from node_agent.errors import ConfigurationError
from tests.node_agent.conftest import WAIT
from tests.processes import Controller, wait_until


@pytest.fixture
def tls_controller(tmp_path, database_url):
    """`labfleet init` (room CA + certificate for 127.0.0.1) and `labfleet serve` with TLS, on loopback."""
    ctl = Controller(tmp_path / "controller", database_url, redis_url="")
    ctl.data_dir.mkdir()
    ctl.init(enroll_uses=1)
    ctl.start_web()
    assert ctl.url.startswith("https://")
    yield ctl
    ctl.stop()


def agent_args(ctl: Controller, state_dir: Path, *extra: str) -> list[str]:
    return ["--controller", ctl.url, "--state-dir", str(state_dir), "--name", "vm-tls", "--max-backoff", "0.5",
            "--config", str(_socket_config(state_dir)), *extra]


def _socket_config(state_dir: Path) -> Path:
    config = state_dir.parent / "agent.toml"
    config.write_text(f'attendee_socket = "{state_dir.parent}/attendee.sock"\n')
    return config


def uses_left(ctl: Controller) -> list[int]:
    return [t["uses_left"] for t in ctl.api("GET", "/api/v1/enroll-tokens")["tokens"]]


def test_an_agent_pinned_to_another_ca_refuses_the_controller_and_sends_no_token(
        tls_controller, start_agent, state_dir, tmp_path) -> None:
    other = settings_for_tests(tmp_path / "other-room")
    ensure_certificates(other)  # a CA of its own: what an attacker on the Wi-Fi would present
    other_ca = other.tls_dir / "ca.crt"
    env = {"LABFLEET_AGENT_ENROLL_TOKEN": tls_controller.enrollment_token}

    agent = start_agent(*agent_args(tls_controller, state_dir, "--ca-file", str(other_ca)), env=env)
    retries = agent.wait_event("enroll.retry", count=2)

    assert all("refused the controller's certificate" in r["error"] and f"ca_file {other_ca}" in r["error"]
               for r in retries), retries
    assert "unable to get local issuer certificate" in retries[0]["error"]
    assert agent.proc.poll() is None  # it keeps trying (the attacker may leave), but never sends the token
    assert tls_controller.nodes() == {} and uses_left(tls_controller) == [1]
    assert tls_controller.enrollment_token not in str(agent.log_lines)
    assert agent.terminate() == 0

    # The token is intact: the same machine pinned to the right CA enrolls with it.
    agent = start_agent(*agent_args(tls_controller, state_dir, "--ca-file", str(tls_controller.ca_file)), env=env)
    agent.wait_event("enrolled")
    assert uses_left(tls_controller) == [0]
    assert agent.terminate() == 0


def test_an_agent_enrolls_and_heartbeats_over_tls(tls_controller, start_agent, state_dir) -> None:
    env = {"LABFLEET_AGENT_ENROLL_TOKEN": tls_controller.enrollment_token}
    agent = start_agent(*agent_args(tls_controller, state_dir, "--ca-file", str(tls_controller.ca_file)), env=env)

    agent.wait_event("enrolled")
    node = wait_until(lambda: tls_controller.nodes().get("vm-tls", {}).get("state") == "online"
                      and tls_controller.nodes()["vm-tls"], timeout=WAIT, what="vm-tls online")
    assert node["address"] == "127.0.0.1"
    first_seen = node["last_seen_at"]
    wait_until(lambda: tls_controller.nodes()["vm-tls"]["last_seen_at"] not in (None, first_seen), timeout=WAIT,
               what="a later heartbeat over TLS")
    assert not agent.events("heartbeat.failed") and not agent.events("enroll.retry")
    assert agent.terminate() == 0


def test_an_agent_refuses_plain_http_without_insecure_http_and_sends_nothing(controller, start_agent,
                                                                             state_dir) -> None:
    # `controller` is the real app on werkzeug's plain HTTP server: it would enroll the agent if asked.
    agent = start_agent("--controller", controller.url, "--state-dir", str(state_dir),
                        env={"LABFLEET_AGENT_ENROLL_TOKEN": controller.enrollment_token(1)})

    assert agent.proc.wait(timeout=WAIT) == 2
    agent.terminate()
    (line,) = [e["line"].strip() for e in agent.log_lines]
    assert line.startswith(f"labfleet-agent: configuration error: controller_url: '{controller.url}' is plain HTTP")
    assert "--insecure-http" in line and "https://" in line
    assert controller.access_log == []  # not one request: no token crossed the network

    # Told so explicitly (a demo, a test), it talks plain HTTP.
    agent = start_agent("--controller", controller.url, "--insecure-http", "--state-dir", str(state_dir),
                        env={"LABFLEET_AGENT_ENROLL_TOKEN": controller.enrollment_token(1)})
    agent.wait_event("enrolled")
    assert agent.terminate() == 0


def test_insecure_http_and_ca_file_in_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(f'controller_url = "http://ctl:8300"\nstate_dir = "{tmp_path}/s"\n')
    with pytest.raises(ConfigurationError, match="^controller_url: .* is plain HTTP"):
        AgentConfig.load(path, environ={})

    path.write_text(f'controller_url = "http://ctl:8300"\nstate_dir = "{tmp_path}/s"\ninsecure_http = true\n')
    assert AgentConfig.load(path, environ={}).insecure_http is True

    path.write_text(f'controller_url = "http://ctl:8300"\nstate_dir = "{tmp_path}/s"\ninsecure_http = "yes"\n')
    with pytest.raises(ConfigurationError, match="^insecure_http: expected true or false"):
        AgentConfig.load(path, environ={})

    missing, garbage = tmp_path / "missing.pem", tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    for ca_file in (missing, garbage):
        path.write_text(f'controller_url = "https://ctl:8300"\nstate_dir = "{tmp_path}/s"\nca_file = "{ca_file}"\n')
        with pytest.raises(ConfigurationError, match=f"^ca_file: cannot load CA certificates from {ca_file}"):
            AgentConfig.load(path, environ={})
