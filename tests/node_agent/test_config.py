"""AgentConfig refuses bad settings at construction, naming the key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from node_agent.config import AgentConfig
from node_agent.errors import ConfigurationError


def test_defaults_and_normalisation(tmp_path: Path) -> None:
    config = AgentConfig(controller_url="https://ctl.example:8443/", state_dir=tmp_path / "s")

    assert config.controller_url == "https://ctl.example:8443"
    assert config.name  # the hostname
    assert config.poll_wait == 25.0 and config.max_backoff == 30.0 and config.command_workers == 4
    assert config.output_limit_bytes == 64 * 1024 and config.log_format == "json"
    assert config.attendee_max_clients == 16 and config.attendee_client_timeout == 5.0
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700


@pytest.mark.parametrize("url", ["ftp://ctl", "ctl.example", "https://", "https://ctl:99999", "https://ctl/?a=1"])
def test_bad_controller_url_names_the_key(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError, match="^controller_url: "):
        AgentConfig(controller_url=url, state_dir=tmp_path)


@pytest.mark.parametrize(("key", "value"), [
    ("poll_wait", 0), ("max_backoff", "fast"), ("command_workers", 2.5), ("command_workers", True),
    ("heartbeat_interval", -1), ("log_format", "xml"), ("name", "n" * 65), ("output_limit_bytes", 10),
    ("attendee_max_clients", 0), ("attendee_max_clients", 10_000), ("attendee_client_timeout", 0),
])
def test_bad_values_name_the_key(tmp_path: Path, key: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"^{key}: "):
        AgentConfig(controller_url="https://ctl", state_dir=tmp_path, **{key: value})


def test_toml_file_with_cli_overrides(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(f'controller_url = "https://ctl:5000"\nstate_dir = "{tmp_path}/s"\nname = "lab-1"\n'
                    'heartbeat_interval = 3\nenroll_token = "from-file"\n')

    config = AgentConfig.from_file(path, name="lab-2", max_backoff=None)

    assert (config.controller_url, config.name, config.heartbeat_interval) == ("https://ctl:5000", "lab-2", 3.0)
    assert config.enroll_token == "from-file" and config.max_backoff == 30.0
    assert "from-file" not in repr(config)


def test_unknown_key_in_toml_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('controller_url = "https://ctl"\nheartbeat_intervall = 3\n')

    with pytest.raises(ConfigurationError, match="^heartbeat_intervall: unknown key"):
        AgentConfig.from_file(path)


def test_wrong_type_in_toml_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(f'controller_url = "https://ctl"\nstate_dir = "{tmp_path}"\npoll_wait = "25"\n')

    with pytest.raises(ConfigurationError, match="^poll_wait: "):
        AgentConfig.from_file(path)


def test_enroll_token_precedence_file_then_env_then_flag(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(f'controller_url = "https://ctl"\nstate_dir = "{tmp_path}"\nenroll_token = "file"\n')
    env = {"LABFLEET_AGENT_ENROLL_TOKEN": "env"}

    assert AgentConfig.load(path, environ={}).enroll_token == "file"
    assert AgentConfig.load(path, environ=env).enroll_token == "env"
    assert AgentConfig.load(path, environ=env, enroll_token="flag").enroll_token == "flag"


def test_controller_url_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="^controller_url: required"):
        AgentConfig.load(None, environ={}, state_dir=str(tmp_path))
