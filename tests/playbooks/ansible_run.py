"""Running the real ``ansible-playbook`` on the repo's playbooks and reading its JSON result."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.processes import REPO

PLAYBOOKS = REPO / "playbooks"


@dataclass
class PlaybookResult:
    """One ansible-playbook run for one host: its recap counts, task results and debug messages."""

    rc: int
    stats: dict[str, int]
    tasks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    stderr: str = ""

    @property
    def changed_tasks(self) -> list[str]:
        return [name for name, result in self.tasks if result.get("changed")]

    @property
    def failed_tasks(self) -> list[str]:
        return [f"{name}: {result.get('msg', '')}" for name, result in self.tasks
                if result.get("failed") or result.get("unreachable")]

    def ran(self, name: str) -> bool:
        """The task ran on the host (neither skipped nor absent)."""
        return any(n == name and not result.get("skipped") for n, result in self.tasks)

    def messages(self) -> list[str]:
        """Every debug message, lists flattened to lines."""
        out: list[str] = []
        for _, result in self.tasks:
            msg = result.get("msg")
            if isinstance(msg, list):
                out.extend(str(m) for m in msg)
            elif isinstance(msg, str):
                out.append(msg)
        return out

    def explain(self) -> str:
        return f"rc={self.rc} stats={self.stats} failed={self.failed_tasks} changed={self.changed_tasks}\n" \
               f"{self.stderr[-2000:]}"


def run_playbook(playbook: str, inventory: Path, host: str, extra_vars: dict[str, Any], tmp: Path,
                 timeout: float = 900, flags: tuple[str, ...] = ()) -> PlaybookResult:
    """``ansible-playbook -i inventory playbooks/<playbook>`` with the JSON callback; variables from a 0600 file."""
    vars_file = tmp / f"vars-{os.getpid()}.json"
    vars_file.touch(mode=0o600)
    vars_file.write_text(json.dumps(extra_vars))
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "json",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
           # SSH master sockets per test run, never shared with another engineer's ansible on this machine.
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp / "cp")}
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory), str(PLAYBOOKS / playbook),
                           "-e", f"@{vars_file}", *flags], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=REPO)
    vars_file.unlink()
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"ansible-playbook printed no JSON (rc {proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}") from exc
    # Task names come as "<role> : <name>" from a role; tests name tasks without the role.
    tasks = [(task["task"]["name"].split(" : ", 1)[-1], task["hosts"][host])
             for play in data["plays"] for task in play["tasks"] if host in task["hosts"]]
    return PlaybookResult(proc.returncode, data["stats"].get(host, {}), tasks, proc.stderr)
