"""One local fleet host, one real controller on its bridge, and the playbooks run against them over SSH.

Why a fleet host: site.yml adds a user, sudo rights, a venv and a running
agent. Run against this machine it would change the dev box itself; a fleet
host (controller/fleet) is a real machine view of its own (own mount, PID,
network and UTS namespaces, an overlay root, its own sshd) that `fleet down`
removes completely. Ansible reaches it over real SSH, as it reaches a VM.
Everything here is module-scoped: making the host is cheap, Ansible runs are
not, so the tests of a module share one host and one controller and run in
file order (provision, re-run, drift, teardown).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.fleet import Fleet, FleetHost
from tests.fleet.conftest import leftovers, new_fleet
from tests.playbooks.ansible_run import PlaybookResult, run_playbook
from tests.processes import REPO, Controller

FLAGGED_LAB = "zz-needs-missing"
MISSING_PROGRAM = "labfleet-no-such-program"


class BridgeController(Controller):
    """A controller listening on the fleet's bridge address: the only address a fleet host can reach."""

    bridge: str = ""

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.bridge}:{self.port}"


@dataclass
class Room:
    """The test's room: one fleet host, its controller, and how to run a playbook against it."""

    fleet: Fleet
    host: FleetHost
    controller: BridgeController
    inventory: Path
    extra_vars: dict
    work: Path

    def play(self, playbook: str, *flags: str, **more_vars) -> PlaybookResult:
        return run_playbook(playbook, self.inventory, self.host.name, {**self.extra_vars, **more_vars}, self.work,
                            flags=flags)

    def ssh(self, command: str, user: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-i", self.host.private_key_path, "-o", f"UserKnownHostsFile={self.host.known_hosts_path}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
             "-o", "ControlMaster=no", "-o", "ControlPath=none",
             f"{user or self.host.ssh_user}@{self.host.address}", command],
            capture_output=True, text=True, timeout=timeout)

    def sh(self, command: str, user: str | None = None) -> str:
        result = self.ssh(command, user)
        assert result.returncode == 0, f"{command!r} on {self.host.name} failed ({result.returncode}): {result.stderr}"
        return result.stdout


def build_wheel(out: Path) -> Path:
    """The labfleet wheel of the current sources, as `make wheel` builds it."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    return next(out.glob("labfleet-*.whl"))


def make_catalog(out: Path) -> Path:
    """The repo's catalog plus one lab this host cannot run (it requires a program nobody has)."""
    shutil.copytree(REPO / "labs", out)
    flagged = out / FLAGGED_LAB
    shutil.copytree(REPO / "labs" / "ns-uts", flagged)
    toml = (flagged / "lab.toml").read_text()
    toml = re.sub(r"(?m)^requires\s*=.*$\n?", "", toml)  # one-line requires, as the catalog writes it
    edited = re.sub(r'(?m)^id\s*=.*$', f'id = "{FLAGGED_LAB}"\nrequires = ["ns:uts", "program:{MISSING_PROGRAM}"]',
                    toml, count=1)
    assert tomllib.loads(edited)["requires"] == ["ns:uts", f"program:{MISSING_PROGRAM}"], edited
    (flagged / "lab.toml").write_text(edited)
    return out


def password_hash(password: str) -> str:
    """A crypt(3) SHA-512 hash, as an inventory carries an attendee's password."""
    return subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()


def write_inventory(path: Path, host: FleetHost) -> None:
    path.write_text(
        "all:\n  hosts:\n"
        f"    {host.name}:\n"
        f"      ansible_host: {host.address}\n"
        f"      ansible_port: {host.ssh_port}\n"
        f"      ansible_user: {host.ssh_user}\n"
        f"      ansible_ssh_private_key_file: {host.private_key_path}\n"
        f"      ansible_ssh_common_args: -o UserKnownHostsFile={host.known_hosts_path} -o StrictHostKeyChecking=yes\n"
        f"      labfleet_cgroup_parent: {host.lab_cgroup_parent}\n"
        f"      labfleet_session_cgroup: {host.session_cgroup}\n")


def close_ssh_masters(control_dir: Path) -> None:
    """Ansible's ControlPersist masters are ours: ask each to exit instead of leaving them for 60 s."""
    for sock in control_dir.glob("*") if control_dir.is_dir() else []:
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "fleet-host"], capture_output=True,
                       timeout=10)


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> Iterator[Room]:
    work = tmp_path_factory.mktemp("playbooks")
    fleet = new_fleet(work / "fleet")
    controller = None
    try:
        host = fleet.up(1)[0]
        room_ssh = Room(fleet, host, None, work / "inventory.yml", {}, work)  # type: ignore[arg-type]
        # The lab tests stage a root fs on this machine at the VM's path (/usr/share/labfleet): the
        # fleet hides every product path from its hosts (controller/fleet/product_paths.py).
        assert room_ssh.sh("test -e /usr/share/labfleet || echo absent").strip() == "absent"
        controller = BridgeController(work / "controller", f"sqlite:///{work / 'labfleet.sqlite'}", "",
                                      extra_env={"LABFLEET_HOST": fleet.bridge_address})
        controller.bridge = fleet.bridge_address
        controller.data_dir.mkdir()
        controller.init(enroll_uses=5)
        controller.start_web()
        inventory = work / "inventory.yml"
        write_inventory(inventory, host)
        extra_vars = {
            "labfleet_controller_url": controller.url,  # https: the controller serves its room CA's certificate
            "labfleet_ca_pem": controller.ca_file.read_text(),  # as `labfleet provision` passes it
            "labfleet_enroll_token": controller.enrollment_token,
            "labfleet_agent_wheel": str(build_wheel(work / "dist")),
            "labfleet_labs_src": str(make_catalog(work / "catalog")),
            "labfleet_stage_dir": str(work / "stage"),
            # The attendee logs in with the fleet's test key: the test then acts as the attendee over SSH.
            "labfleet_attendee_ssh_keys": [Path(host.private_key_path + ".pub").read_text().strip()],
            "labfleet_attendee_password_hash": password_hash("labfleet-test-password"),
        }
        yield Room(fleet, host, controller, inventory, extra_vars, work)
    finally:
        close_ssh_masters(work / "cp")
        if controller is not None:
            controller.stop()
        fleet.down()
    assert leftovers(fleet) == []
