"""Inventory drivers: the same hosts from YAML, INI and CSV; bad files named by path, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.provision.inventory import (
    HOSTS_GROUP,
    InventoryError,
    InventoryHost,
    ansible_inventory,
    open_inventory,
)
from controller.provision.inventory.vagrant import parse_ssh_config


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "room.key"
    path.parent.mkdir()
    path.write_text("not a real key; only its existence is checked\n")
    return path


def hosts_of(path: Path, text: str) -> list[InventoryHost]:
    path.write_text(text)
    return open_inventory("static", {"path": str(path)}).hosts()


def error_of(path: Path, text: str) -> InventoryError:
    path.write_text(text)
    with pytest.raises(InventoryError) as caught:
        open_inventory("static", {"path": str(path)}).hosts()
    return caught.value


def expected(key: str) -> list[InventoryHost]:
    """Keys stay the reference the file writes: only the API's KeyResolver turns one into a key."""
    return [InventoryHost("lab-1", "192.0.2.11", 22, "ubuntu", key),
            InventoryHost("lab-2", "192.0.2.12", 2222, "ubuntu", key, {"labfleet_attendee_shell": "/bin/zsh"})]


def test_yaml_ini_and_csv_give_the_same_hosts(tmp_path, key):
    yaml_hosts = hosts_of(tmp_path / "room.yml", """
defaults: {user: ubuntu, private_key: keys/room.key}
hosts:
  - {name: lab-1, address: 192.0.2.11}
  - name: lab-2
    address: 192.0.2.12
    port: 2222
    vars: {labfleet_attendee_shell: /bin/zsh}
""")
    ini_hosts = hosts_of(tmp_path / "room.ini", """
# the room
[all:vars]
ansible_user=ubuntu
ansible_ssh_private_key_file=keys/room.key

[lab]
lab-1 ansible_host=192.0.2.11
lab-2 ansible_host=192.0.2.12 ansible_port=2222 labfleet_attendee_shell=/bin/zsh
""")
    csv_hosts = hosts_of(tmp_path / "room.csv", "name,address,port,user,private_key\n"
                         f"lab-1,192.0.2.11,,ubuntu,{key}\nlab-2,192.0.2.12,2222,ubuntu,keys/room.key\n")
    assert yaml_hosts == ini_hosts == expected("keys/room.key")
    assert csv_hosts == [expected(str(key))[0], InventoryHost("lab-2", "192.0.2.12", 2222, "ubuntu", "keys/room.key")]


def test_yaml_hosts_may_be_a_mapping_of_names(tmp_path):
    hosts = hosts_of(tmp_path / "room.yaml", "hosts:\n  lab-1: {address: 192.0.2.11, user: root}\n")
    assert hosts == [InventoryHost("lab-1", "192.0.2.11", 22, "root")]


def test_ansible_inventory_puts_every_host_in_the_lab_group_with_its_connection(tmp_path, key):
    inventory = ansible_inventory(expected(str(key)), ssh_common_args="-o StrictHostKeyChecking=accept-new")
    lab2 = inventory["all"]["hosts"]["lab-2"]
    assert lab2 == {"ansible_host": "192.0.2.12", "ansible_port": 2222, "ansible_user": "ubuntu",
                    "ansible_ssh_private_key_file": str(key), "labfleet_attendee_shell": "/bin/zsh",
                    "ansible_ssh_common_args": "-o StrictHostKeyChecking=accept-new"}
    assert set(inventory["all"]["children"][HOSTS_GROUP]["hosts"]) == {"lab-1", "lab-2"}


@pytest.mark.parametrize(("name", "text", "line", "key", "words"), [
    ("room.yml", "hosts:\n  - {name: lab-1, address: 192.0.2.11, user: root}\n  - name: lab-2\n"
                 "    adress: 192.0.2.12\n", 4, "hosts[1].adress", "unknown key"),
    ("room.yml", "hosts:\n  - {name: lab-1, address: 192.0.2.11, user: root, port: 70000}\n", 2,
     "hosts[0].port", "not a port"),
    ("room.yml", "hosts:\n  - {name: lab-1, user: root}\n", 2, "hosts[0].address", "missing"),
    ("room.yml", "hosts:\n  - {name: lab-1, address: 192.0.2.11}\n", 2, "hosts[0].user", "missing"),
    ("room.yml", "hosts:\n  - {name: a, address: 192.0.2.1, user: root}\n  - {name: a, address: 192.0.2.2,"
                 " user: root}\n", 3, "name", "listed twice (first on line 2)"),
    ("room.yml", "hosts: [\n", 2, None, "not valid YAML"),
    ("room.yml", "hosts:\n  - {name: 'bad name', address: 192.0.2.11, user: root}\n", 2, "hosts[0].name",
     "not a host name"),
    ("room.ini", "[lab]\nlab-1 ansible_host=192.0.2.11 ansible_user=root\nlab-2 ansible_port=x "
                 "ansible_host=192.0.2.12 ansible_user=root\n", 3, "port", "not a port"),
    ("room.ini", "[lab]\nlab-1 192.0.2.11\n", 2, None, "expected key=value"),
    ("room.ini", "[lab:children]\nother\n", 1, None, "not supported"),
    ("room.csv", "name,adress,user\nlab-1,192.0.2.11,root\n", 1, "adress", "unknown column"),
    ("room.csv", "name,address,user\nlab-1,192.0.2.11,root\nlab-2,192.0.2.12\n", 3, None, "2 columns"),
    ("room.csv", "name,address,user\nlab-1,192.0.2.11,root\nlab-2,,root\n", 3, "address", "missing"),
    ("room.txt", "lab-1\n", None, None, "unknown inventory format"),
])
def test_a_bad_file_is_named_by_path_line_and_key(tmp_path, name, text, line, key, words):
    error = error_of(tmp_path / name, text)
    assert error.path == str(tmp_path / name)
    assert error.line == line
    assert error.key == key
    assert words in str(error)
    assert str(error).startswith(f"{tmp_path / name}{':' + str(line) if line else ''}: ")


def test_a_missing_file_and_an_empty_one_are_errors(tmp_path):
    with pytest.raises(InventoryError, match="cannot read the inventory"):
        open_inventory("static", {"path": str(tmp_path / "nowhere.yml")}).hosts()
    assert "lists no hosts" in str(error_of(tmp_path / "empty.csv", "name,address,user\n"))


def test_unknown_driver_and_option_are_named():
    with pytest.raises(InventoryError, match="unknown inventory driver 'ec2'; known: netns, static, vagrant"):
        open_inventory("ec2", {})
    with pytest.raises(InventoryError, match="static driver: .*'colour'"):
        open_inventory("static", {"path": "x.yml", "colour": "blue"})


# Stand-in for `vagrant ssh-config` (named as such): Vagrant cannot run here (no hypervisor), so the parser
# reads a sample in the format Vagrant prints for two libvirt VMs, one key path quoted as Vagrant quotes
# paths with spaces. Not captured from a live Vagrant.
VAGRANT_SSH_CONFIG = """Host lab-1
  HostName 192.168.121.23
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /home/instructor/labfleet/.vagrant/machines/lab-1/libvirt/private_key
  IdentitiesOnly yes
  LogLevel FATAL
  PubkeyAcceptedKeyTypes +ssh-rsa
  HostKeyAlgorithms +ssh-rsa

Host lab-2
  HostName 192.168.121.87
  User vagrant
  Port 2200
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile "/home/instructor/my labfleet/.vagrant/machines/lab-2/libvirt/private_key"
  IdentitiesOnly yes
  LogLevel FATAL

"""


def test_vagrant_ssh_config_gives_each_vm_with_vagrants_host_key_policy():
    hosts = parse_ssh_config(VAGRANT_SSH_CONFIG, check_keys=False)
    assert [(h.name, h.address, h.port, h.user) for h in hosts] == [
        ("lab-1", "192.168.121.23", 22, "vagrant"), ("lab-2", "192.168.121.87", 2200, "vagrant")]
    assert hosts[1].private_key == "/home/instructor/my labfleet/.vagrant/machines/lab-2/libvirt/private_key"
    assert hosts[0].ssh_args == "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    assert hosts[0].vars == {}


def test_vagrant_bad_output_is_named():
    with pytest.raises(InventoryError, match="no VM is running"):
        parse_ssh_config("\n", check_keys=False)
    with pytest.raises(InventoryError) as caught:
        parse_ssh_config("Host lab-1\n  HostName 10.0.0.1\n  User vagrant\n  Port twenty-two\n", check_keys=False)
    assert caught.value.line == 1 and caught.value.key == "lab-1.Port"
    with pytest.raises(InventoryError, match="'hostname' before the first Host line"):
        parse_ssh_config("HostName 10.0.0.1\n", check_keys=False)


def test_vagrant_driver_without_vagrant_says_what_to_do(tmp_path, monkeypatch):
    (tmp_path / "Vagrantfile").write_text("# empty\n")
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without vagrant, as on this machine
    with pytest.raises(InventoryError, match="vagrant command is not installed"):
        open_inventory("vagrant", {"directory": str(tmp_path)}).hosts()


def test_netns_driver_without_a_fleet_says_how_to_make_one(tmp_path):
    with pytest.raises(InventoryError, match="labfleet fleet up --count N"):
        open_inventory("netns", {"state_dir": str(tmp_path / "no-fleet")}).hosts()
