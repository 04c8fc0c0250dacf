"""The instructor CLI is an HTTP client: its help must not load the server stack."""

from __future__ import annotations

import subprocess
import sys

SERVER_MODULES = ("flask", "sqlalchemy", "alembic", "celery")

PROBE = f"""
import sys
SERVER_MODULES = {SERVER_MODULES!r}
from click.testing import CliRunner
from controller.cli.main import cli
result = CliRunner().invoke(cli, ["--help"])
assert result.exit_code == 0, result.output
print("USAGE" if "Usage:" in result.output else "NO-USAGE")
print(",".join(m for m in SERVER_MODULES if m in sys.modules))
"""


def test_help_loads_no_server_module() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "USAGE"
    assert out[1] == "", f"labfleet --help imported server modules: {out[1]}"
