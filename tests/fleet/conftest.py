"""Real fleets on the real kernel: a unique prefix and /24 per fleet, so parallel runs never collide.

Every fleet made here is taken down at the end and the machine is scanned
for anything of it that is left (namespaces, links, mounts, cgroups,
processes); leftovers fail the test.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.fleet import Fleet, FleetError, FleetHost, network
from controller.fleet import cgroups as fleet_cgroups


def new_fleet(state_dir: Path) -> Fleet:
    """A fleet with a fresh prefix and a /24 no interface of this machine uses yet."""
    prefix = "lft" + uuid.uuid4().hex[:6]
    for _ in range(20):
        fleet = Fleet(state_dir, f"10.213.{random.randint(100, 250)}.0/24", prefix)
        try:
            network.check_subnet_free(fleet.config)
            return fleet
        except FleetError:
            continue
    raise RuntimeError("no free 10.213.x.0/24 for a test fleet")


def leftovers(fleet: Fleet) -> list[str]:
    """Everything of ``fleet`` the machine still has, found by scanning the kernel, not the state file."""
    cfg = fleet.config
    found = [f"netns {n}" for n in network.netns_names(cfg)]
    found += [f"link {n}" for n in network.link_names(cfg)]
    found += [f"cgroup {g}" for g in fleet_cgroups.host_groups(cfg)]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if str(cfg.state_dir) in line]
    marker = f"/labfleet-fleet/{cfg.prefix}-"
    for pid in os.listdir("/proc"):
        try:
            # A zombie has exited; it only waits for the machine's init (its parent) to reap it.
            if pid.isdigit() and marker in Path(f"/proc/{pid}/cgroup").read_text() and not zombie(pid):
                found.append(f"process {pid}")
        except (FileNotFoundError, ProcessLookupError):
            continue
    if (cfg.state_dir / "hosts").exists():
        found.append(f"directory {cfg.state_dir / 'hosts'}")
    return found


def zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Callable[[], Fleet]]:
    made: list[Fleet] = []

    def make() -> Fleet:
        fleet = new_fleet(tmp_path / f"fleet{len(made)}")
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.down()
        assert leftovers(fleet) == []


@pytest.fixture(scope="module")
def fleet3() -> Iterator[Fleet]:
    """Three running hosts shared by the tests of one module (making them takes about a second).

    Its state directory is under /var/tmp, not /tmp: hosts get a fresh /tmp anyway, so only a
    directory the overlay shows proves that the fleet hides its keys from its hosts.
    """
    state_dir = Path("/var/tmp") / f"labfleet-test-fleet-{uuid.uuid4().hex[:8]}"
    fleet = new_fleet(state_dir)
    try:
        fleet.up(3)
        yield fleet
    finally:
        fleet.down()
    assert leftovers(fleet) == []
    assert not (state_dir / "hosts").exists()
    shutil.rmtree(state_dir)  # only the kept key pair, the lock and nothing mounted (checked above)


def ssh(host: FleetHost, command: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """The OpenSSH client with the fleet's key, checking the host key strictly against its known_hosts."""
    return subprocess.run(
        ["ssh", "-i", host.private_key_path, "-o", f"UserKnownHostsFile={host.known_hosts_path}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         "-o", "ControlMaster=no", "-p", str(host.ssh_port), f"{host.ssh_user}@{host.address}", command],
        capture_output=True, text=True, timeout=timeout)


def ssh_ok(host: FleetHost, command: str) -> str:
    result = ssh(host, command)
    assert result.returncode == 0, f"{host.name}: {command!r} failed ({result.returncode}): {result.stderr}"
    return result.stdout
