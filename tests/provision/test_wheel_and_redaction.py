"""The agent wheel is built once per state of the sources; secrets never reach a stored message."""

from __future__ import annotations

import shutil
import zipfile

from controller.provision.redact import MASK, Redactor
from controller.provision.wheel import agent_wheel
from tests.processes import REPO


def test_the_wheel_is_reused_until_the_agent_sources_change(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "pyproject.toml", project)
    shutil.copytree(REPO / "node_agent", project / "node_agent", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "wheels"

    first = agent_wheel(cache, project=project)
    assert agent_wheel(cache, project=project) == first  # same sources: the very same file, not rebuilt
    names = zipfile.ZipFile(first).namelist()
    assert "node_agent/protocol.py" in names
    assert not [n for n in names if n.startswith("controller/")]  # the agent's wheel holds the agent only

    (project / "node_agent" / "protocol.py").write_text((project / "node_agent" / "protocol.py").read_text() + "\n")
    second = agent_wheel(cache, project=project)
    assert second != first and second.is_file() and first.is_file()


def test_redactor_masks_the_runs_secrets_tokens_keys_and_assignments():
    redact = Redactor(["s3cret-value-1"])
    text = ("env LABFLEET_AGENT_ENROLL_TOKEN=s3cret-value-1; node lfn_abcdefghijklmnopqrstuvwx0123; "
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY----- "
            "password=hunter22 {\"token\": \"abc\"} kept: lab-1 192.0.2.11")
    masked = redact(text)
    for secret in ("s3cret-value-1", "lfn_abcdefghijklmnopqrstuvwx0123", "b3BlbnNzaC1rZXk", "hunter22", '"abc"'):
        assert secret not in masked
    assert masked.count(MASK) >= 5
    assert masked.endswith("kept: lab-1 192.0.2.11")
