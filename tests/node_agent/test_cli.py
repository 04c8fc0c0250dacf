"""The command line: version, and configuration errors as one line with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from node_agent import __version__
from node_agent.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"labfleet-agent {__version__}"


def test_unknown_key_in_the_config_file_is_exit_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('controller_url = "http://ctl"\npoll_wiat = 5\n')

    assert main(["run", "--config", str(config)]) == 2

    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("labfleet-agent: configuration error: poll_wiat: unknown key")


def test_bad_flag_value_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--controller", "https://ctl", "--state-dir", str(tmp_path), "--max-backoff", "-1"])

    assert code == 2
    assert "max_backoff: expected a number between" in capsys.readouterr().err
