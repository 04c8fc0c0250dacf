"""Bad input to ``labfleet fleet up`` gets an error naming the field, and nothing is created."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from controller.fleet import Fleet, FleetError
from tests.processes import REPO


@pytest.mark.parametrize(("args", "message"), [
    (["--count", "0"], "count must be between 1 and 245"),
    (["--count", "246"], "count must be between 1 and 245"),
    (["--count", "1", "--subnet", "8.8.8.0/24"], "subnet '8.8.8.0/24' is not private"),
    (["--count", "1", "--subnet", "10.213.0.0/16"], "subnet '10.213.0.0/16' must be an IPv4 /24"),
    (["--count", "1", "--subnet", "10.213.0.5/24"], "subnet '10.213.0.5/24' is not a network address"),
    (["--count", "1", "--subnet", "fd00::/120"], "must be an IPv4 /24"),
    (["--count", "1", "--name-prefix", "Bad_Name"], "name prefix 'Bad_Name' must be 1-10 lowercase"),
    (["--count", "1", "--name-prefix", "waytoolongprefix"], "name prefix 'waytoolongprefix'"),
])
def test_up_rejects_bad_input_with_a_clear_error(tmp_path, args, message):
    state_dir = tmp_path / "fleet"
    result = subprocess.run([sys.executable, "-m", "controller.cli.main", "fleet", "up", *args,
                             "--state-dir", str(state_dir)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (state_dir / "fleet.json").exists()


def test_the_api_rejects_bad_input_before_touching_the_machine(tmp_path):
    with pytest.raises(FleetError, match="name prefix 'a-b'"):
        Fleet(tmp_path, "10.213.0.0/24", "a-b")
    fleet = Fleet(tmp_path, "10.213.0.0/24", "lftbad")
    with pytest.raises(FleetError, match="count must be"):
        fleet.up(0)
    assert os.listdir(tmp_path) == []
