"""The Vagrantfile: valid Ruby, and what it asks Vagrant for, read through a stand-in of Vagrant's API.

There is no Vagrant and no hypervisor here, so `vagrant validate` cannot run.
`vagrant_standin.rb` is a STAND-IN for `Vagrant.configure` (named so): it
loads the real Vagrantfile with real Ruby and prints the machines, networks,
providers and provisioners it defines.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess

import pytest

from tests.processes import REPO

STANDIN = REPO / "tests" / "playbooks" / "vagrant_standin.rb"


def load(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LABFLEET_VM")}
    return subprocess.run(["ruby", str(STANDIN), str(REPO / "Vagrantfile")], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def configured(**env: str) -> dict:
    result = load(**env)
    assert result.returncode == 0, result.stderr
    (config,) = json.loads(result.stdout)
    return config


def test_vagrantfile_is_valid_ruby():
    result = subprocess.run(["ruby", "-c", "Vagrantfile"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Syntax OK" in result.stdout, result.stderr


@pytest.mark.parametrize("count", [2, 3])
def test_n_lab_vms_on_one_private_network(count):
    config = configured(LABFLEET_VMS=str(count))
    machines = config["machines"]
    assert [m["name"] for m in machines] == [f"lab-{n}" for n in range(1, count + 1)]
    assert [m["hostname"] for m in machines] == [m["name"] for m in machines]
    addresses = []
    for machine in machines:
        (net,) = machine["networks"]
        assert net["type"] == "private_network"
        addresses.append(ipaddress.ip_address(net["opts"]["ip"]))
    assert len(set(addresses)) == count
    assert all(a in ipaddress.ip_network("192.168.56.0/24") and a.is_private for a in addresses)
    assert config["box"] == "debian/bookworm64"
    assert set(config["providers"]) == {"libvirt", "virtualbox"}
    assert "provisioners" not in config and all("provisioners" not in m for m in machines)


def test_three_vms_by_default_and_the_network_is_configurable():
    assert len(configured()["machines"]) == 3
    config = configured(LABFLEET_VMS="2", LABFLEET_VM_NETWORK="10.77.5.0/24")
    assert [m["networks"][0]["opts"]["ip"] for m in config["machines"]] == ["10.77.5.11", "10.77.5.12"]


@pytest.mark.parametrize("env, key", [({"LABFLEET_VMS": "0"}, "LABFLEET_VMS"),
                                      ({"LABFLEET_VMS": "three"}, "LABFLEET_VMS"),
                                      ({"LABFLEET_VM_NETWORK": "10.77.5.9/24"}, "LABFLEET_VM_NETWORK"),
                                      ({"LABFLEET_VM_MEMORY": "-1"}, "LABFLEET_VM_MEMORY")])
def test_bad_settings_are_refused_by_name(env, key):
    result = load(**env)
    assert result.returncode == 1 and key in result.stderr, result.stderr
