"""The only module that calls ansible-runner: how a playbook is run, and how Ansible is tuned.

``Tuning`` gathers what makes a room fast in one place (forks, pipelining, SSH
multiplexing, fact gathering); ``Tuning.ansible_defaults()`` is what Ansible
does out of the box, kept for the benchmark's side-by-side run
(``labfleet provision --no-tune``).

Secrets (the enrollment token) reach Ansible only through
``<private dir>/env/extravars`` (mode 0600 in a 0700 folder, removed with the
folder after the run), never on a command line; events are handed to the
caller's handler and never written to ansible-runner's artifact folder.
See docs/provisioning.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from controller.provision.control_dir import ControlDirError, control_dir
from controller.settings import Settings


class ProvisionError(RuntimeError):
    """A playbook could not be run at all (Ansible missing, playbook missing, runner refused)."""


@dataclass(frozen=True)
class Tuning:
    """How Ansible runs. The defaults of this class are Ansible's own."""

    forks: int = 5
    pipelining: bool = False
    # Seconds an SSH master connection outlives its last use; 0 = every task opens a new connection.
    control_persist: float = 0.0
    gather_facts: bool = True
    # Ansible's interpreter_python: "auto_silent" discovers the host's Python (two more round trips per host).
    python_interpreter: str = "auto_silent"

    @classmethod
    def ansible_defaults(cls) -> Tuning:
        return cls()

    @classmethod
    def from_settings(cls, settings: Settings, *, forks: int | None = None, tune: bool = True) -> Tuning:
        if not tune:
            return cls(forks=forks or cls.forks)
        return cls(forks=forks or settings.provision_forks, pipelining=settings.provision_pipelining,
                   control_persist=settings.provision_control_persist,
                   gather_facts=settings.provision_gather_facts,
                   python_interpreter=settings.provision_python_interpreter or cls.python_interpreter)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tuning:
        return cls(**{k: data[k] for k in ("forks", "pipelining", "control_persist", "gather_facts",
                                           "python_interpreter") if k in data})

    def envvars(self, control_path_dir: Path) -> dict[str, str]:
        """Ansible's environment for this tuning (ANSIBLE_* settings, see ``ansible-config list``)."""
        if self.control_persist > 0:
            ssh_args = f"-o ControlMaster=auto -o ControlPersist={int(self.control_persist)}s"
        else:
            # Ansible's stock ssh_args turn ControlPersist on (60 s); "no multiplexing" must say so.
            ssh_args = "-o ControlMaster=no"
        return {
            "ANSIBLE_PIPELINING": str(self.pipelining),
            "ANSIBLE_SSH_ARGS": ssh_args + " -o ServerAliveInterval=15 -o ServerAliveCountMax=4",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_path_dir),
            "ANSIBLE_GATHERING": "implicit" if self.gather_facts else "explicit",
            # One failing host never stops the others (a play may still set it, which site.yml does not).
            "ANSIBLE_ANY_ERRORS_FATAL": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_PYTHON_INTERPRETER": self.python_interpreter,
            "ANSIBLE_NOCOLOR": "True",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_LOCALHOST_WARNING": "False",
        }


@dataclass
class PlaybookRun:
    """Everything one ansible-runner run needs, gathered before it starts."""

    private_dir: Path
    playbook: Path
    inventory: dict[str, Any]
    extravars: dict[str, Any]
    limit: list[str]
    tuning: Tuning
    control_path_dir: Path
    # Seconds before ansible-runner stops the run (status "timeout"); None = no limit.
    timeout: int | None = None

    def prepare(self) -> Path:
        """Write the inventory and the extra vars (0600, in a 0700 folder); return the inventory path."""
        self.private_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.private_dir, 0o700)
        for sub in ("env", "inventory"):
            (self.private_dir / sub).mkdir(exist_ok=True, mode=0o700)
        _write_private(self.private_dir / "env" / "extravars", json.dumps(self.extravars))
        inventory_path = self.private_dir / "inventory" / "hosts.json"
        _write_private(inventory_path, json.dumps(self.inventory))
        self.control_path_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return inventory_path

    def entry_playbook(self) -> Path:
        """The playbook to start: the real one, or (facts gathered) a wrapper that gathers them first.

        labfleet's playbooks say ``gather_facts: false``, which Ansible's GATHERING setting cannot
        override; Ansible's default behaviour (facts for every play) is a setup play before them.
        """
        if not self.tuning.gather_facts:
            return self.playbook
        wrapper = self.private_dir / "with-facts.yml"
        wrapper.write_text(
            "- name: Gathering facts (Ansible's default)\n  hosts: all\n  gather_facts: true\n  tasks: []\n"
            f"- name: The playbook\n  ansible.builtin.import_playbook: {json.dumps(str(self.playbook))}\n")
        return wrapper


@dataclass
class RunnerOutcome:
    status: str  # ansible-runner's: successful, failed, canceled, timeout
    rc: int | None
    stdout_tail: str


def run_playbook(spec: PlaybookRun, *, event_handler: Callable[[dict], bool],
                 status_handler: Callable[[dict, Any], None], cancel_callback: Callable[[], bool]) -> RunnerOutcome:
    """Run the playbook to its end (or until ``cancel_callback`` says so); events go to the handlers."""
    import ansible_runner

    ansible_playbook()  # fail early and clearly when Ansible is missing
    if not spec.playbook.is_file():
        raise ProvisionError(f"no playbook at {spec.playbook}")
    inventory_path = spec.prepare()
    try:
        runner = ansible_runner.run(
            private_data_dir=str(spec.private_dir), playbook=str(spec.entry_playbook()),
            inventory=str(inventory_path),
            limit=",".join(spec.limit) if spec.limit else None, forks=spec.tuning.forks,
            envvars={**spec.tuning.envvars(spec.control_path_dir),
                     "ANSIBLE_ROLES_PATH": str(spec.playbook.parent / "roles")}, quiet=True,
            # pexpect_timeout bounds how long a cancel waits to be read when Ansible prints nothing.
            settings={"pexpect_timeout": 0.5, "suppress_ansible_output": True}, timeout=spec.timeout,
            event_handler=event_handler, status_handler=status_handler, cancel_callback=cancel_callback,
        )
    except (ansible_runner.exceptions.AnsibleRunnerException, ValueError, OSError) as exc:
        raise ProvisionError(f"ansible-runner could not run {spec.playbook.name}: {exc}") from exc
    tail = ""
    stdout = Path(runner.config.artifact_dir) / "stdout"
    if stdout.exists():
        tail = "\n".join(stdout.read_text(errors="replace").strip().splitlines()[-15:])
    return RunnerOutcome(status=runner.status, rc=runner.rc, stdout_tail=tail)


def ansible_playbook() -> str:
    """The ``ansible-playbook`` ansible-runner will start (the first on PATH)."""
    found = shutil.which("ansible-playbook")
    if found is None:
        raise ProvisionError("ansible-playbook is not on PATH: install Ansible (apt-get install ansible-core)")
    return found


def control_path_dir(data_dir: Path) -> Path:
    """The worker's own 0700 folder for SSH control sockets, short enough for a socket path."""
    try:
        return control_dir(data_dir)
    except (ControlDirError, OSError) as exc:
        raise ProvisionError(f"no private folder for SSH control sockets: {exc}") from exc


_LIST_TASK = re.compile(r"^\s{6,}\S")


def count_tasks(playbook: Path, inventory_path: Path, extravars_path: Path, *, cache_dir: Path) -> int:
    """How many tasks the playbook lists (``--list-tasks``), cached under a hash of the playbook folder."""
    key = _tree_digest(playbook.parent) + playbook.name
    cache = cache_dir / "task-counts.json"
    known: dict[str, int] = {}
    if cache.exists():
        try:
            known = json.loads(cache.read_text())
        except ValueError:
            known = {}
    if key in known:
        return known[key]
    done = subprocess.run([ansible_playbook(), "--list-tasks", "-i", str(inventory_path),
                           "-e", f"@{extravars_path}", str(playbook)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    if done.returncode != 0:
        return 0
    lines = done.stdout.splitlines()
    count = sum(1 for line in lines if _LIST_TASK.match(line) and "TAGS:" in line)
    known[key] = count
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(known))
    return count


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
