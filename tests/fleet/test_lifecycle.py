"""A fleet's life: sshd stopped and started, down (also after a crash or lost state), refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from controller.fleet import Fleet, FleetError, cgroups, network
from tests.fleet.conftest import leftovers, ssh, ssh_ok
from tests.processes import REPO


def labfleet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller.cli.main", "fleet", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def listed(fleet: Fleet) -> dict[str, dict]:
    result = labfleet("list", "--json", "--state-dir", str(fleet.config.state_dir))
    assert result.returncode == 0, result.stderr
    return {h["name"]: h for h in json.loads(result.stdout)}


def test_a_stopped_sshd_makes_its_host_unreachable_until_started(make_fleet):
    fleet = make_fleet()
    first, second = fleet.up(2)
    session = subprocess.Popen(["ssh", "-i", second.private_key_path, "-o",
                                f"UserKnownHostsFile={second.known_hosts_path}", "-o", "BatchMode=yes",
                                f"root@{second.address}", "echo started; sleep 60"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert session.stdout.readline().strip() == "started"
        fleet.stop_sshd(second.name)
        assert session.wait(timeout=10) != 0, "an open session ends with its sshd"
    finally:
        session.kill()
        session.wait()

    refused = ssh(second, "true")
    assert refused.returncode == 255 and "refused" in refused.stderr
    status = listed(fleet)
    assert status[second.name]["state"] == "running" and status[second.name]["sshd_answers"] is False
    assert status[first.name]["sshd_answers"] is True
    assert ssh_ok(first, "hostname").strip() == first.name

    fleet.start_sshd(second.name)
    assert ssh_ok(second, "hostname").strip() == second.name
    assert listed(fleet)[second.name]["sshd_answers"] is True


def test_sshd_control_names_an_unknown_host(make_fleet):
    fleet = make_fleet()
    fleet.up(1)
    with pytest.raises(FleetError, match=r"no host named 'nosuch'.*hosts: " + fleet.config.prefix + "-1"):
        fleet.stop_sshd("nosuch")


def test_down_removes_everything_and_is_idempotent(make_fleet):
    fleet = make_fleet()
    hosts = fleet.up(2)
    pids = [s.pid for s in fleet.status()]
    assert leftovers(fleet) != []

    result = labfleet("down", "--state-dir", str(fleet.config.state_dir))
    assert result.returncode == 0, result.stderr
    assert leftovers(fleet) == []
    assert fleet.hosts() == [] and listed(fleet) == {}
    assert all(not os.path.exists(f"/proc/{pid}") or _zombie(pid) for pid in pids)
    assert not os.path.exists(f"/sys/class/net/{fleet.config.bridge}")
    assert not os.path.exists(f"/run/netns/{hosts[0].netns}")

    again = labfleet("down", "--state-dir", str(fleet.config.state_dir))
    assert again.returncode == 0, again.stderr
    assert os.path.exists(hosts[0].private_key_path), "the key pair is kept for the next up"


def test_down_after_the_hosts_crashed(make_fleet):
    fleet = make_fleet()
    fleet.up(2)
    for status in fleet.status():
        os.kill(status.pid, signal.SIGKILL)  # a crash: the inits die, nothing is cleaned
    deadline = time.monotonic() + 10
    while any(s.running for s in fleet.status()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(h["state"] == "stopped" and not h["sshd_answers"] for h in listed(fleet).values())
    assert network.netns_names(fleet.config) and network.link_names(fleet.config)

    result = labfleet("down", "--state-dir", str(fleet.config.state_dir))
    assert result.returncode == 0, result.stderr
    assert leftovers(fleet) == []


def test_down_finds_running_hosts_whose_state_file_was_lost(make_fleet):
    fleet = make_fleet()
    fleet.up(2)
    fleet.config.state_file.unlink()

    result = labfleet("down", "--state-dir", str(fleet.config.state_dir),
                      "--name-prefix", fleet.config.prefix)
    assert result.returncode == 0, result.stderr
    assert leftovers(fleet) == []


def test_down_cleans_a_half_finished_up(make_fleet):
    fleet = make_fleet()
    cfg = fleet.config
    # What `up` had made when it was killed before recording anything: bridge, netns, veths, cgroups.
    network.create_bridge(cfg)
    network.create_host_links(cfg, [1, 2])
    cgroups.create(cfg, cfg.host_name(1))
    (cfg.host_dir(cfg.host_name(1)) / "upper").mkdir(parents=True)
    assert len(leftovers(fleet)) >= 5

    fleet.down()
    assert leftovers(fleet) == []


def test_up_refuses_a_fleet_that_exists_and_a_subnet_in_use(make_fleet):
    fleet = make_fleet()
    fleet.up(1)
    with pytest.raises(FleetError, match="already records a fleet.*fleet down"):
        fleet.up(1)

    other = make_fleet()
    same_subnet = Fleet(other.config.state_dir, str(fleet.config.subnet), other.config.prefix)
    with pytest.raises(FleetError, match=f"subnet {fleet.config.subnet} is already used.*{fleet.config.bridge}"):
        same_subnet.up(1)
    assert leftovers(same_subnet) == []


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_cli_up_prints_hosts_but_never_the_private_key(make_fleet):
    fleet = make_fleet()
    cfg = fleet.config
    result = labfleet("up", "--count", "2", "--subnet", str(cfg.subnet), "--name-prefix", cfg.prefix,
                      "--state-dir", str(cfg.state_dir))
    assert result.returncode == 0, result.stderr
    assert f"{cfg.prefix}-1" in result.stdout and f"{cfg.prefix}-2" in result.stdout
    assert str(cfg.private_key) in result.stdout
    key_body = cfg.private_key.read_text().splitlines()[1]
    logs = "".join(p.read_text() for p in cfg.state_dir.glob("hosts/*/init.log"))
    assert key_body not in result.stdout + result.stderr + logs
    assert ssh_ok(fleet.hosts()[1], "hostname").strip() == f"{cfg.prefix}-2"
