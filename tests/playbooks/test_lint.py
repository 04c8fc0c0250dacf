"""The playbooks pass ansible-lint's strictest profile, yamllint and ansible-playbook's syntax check."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import yaml

from tests.playbooks.ansible_run import PLAYBOOKS
from tests.processes import REPO


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ansible_lint_passes_the_production_profile():
    result = run("ansible-lint", "--profile", "production", "--nocolor", "playbooks/")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_yamllint_is_clean_on_playbooks_and_compose():
    result = run("yamllint", "--strict", "playbooks", "docker-compose.yml", ".yamllint")
    assert result.returncode == 0, result.stdout


def test_both_playbooks_pass_the_syntax_check():
    for playbook in ("site.yml", "teardown.yml"):
        result = subprocess.run(["ansible-playbook", "-i", "localhost,", "--syntax-check", playbook],
                                cwd=PLAYBOOKS, capture_output=True, text=True, timeout=120,
                                env={"ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "PATH": "/usr/bin:/bin"})
        assert result.returncode == 0, f"{playbook}: {result.stdout}{result.stderr}"


SECRET_KEY = re.compile(r"(^|_)(password|password_hash|token|secret)$")
MODULE_OPTIONS = {"update_password"}  # ansible.builtin.user's "when to set it", not a secret
IPV4 = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


def literal_secrets(node: Any, where: str) -> list[str]:
    """Keys named like a secret whose value is a literal, not "" and not a {{ template }}."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if SECRET_KEY.search(str(key)) and key not in MODULE_OPTIONS and isinstance(value, str) and value and "{{" not in value:
                found.append(f"{where}: {key}")
            found += literal_secrets(value, where)
    elif isinstance(node, list):
        for item in node:
            found += literal_secrets(item, where)
    return found


def test_no_literal_address_or_secret_in_the_playbooks():
    """Hosts, addresses and secrets come from the inventory and the controller, never from the repo."""
    found = []
    for path in sorted(PLAYBOOKS.rglob("*")):
        if not path.is_file() or path.suffix == ".md":
            continue
        text = path.read_text()
        found += [f"{path}: address {m}" for m in IPV4.findall(text)]
        if path.suffix == ".yml":
            found += literal_secrets(yaml.safe_load(text), str(path))
    assert found == []
