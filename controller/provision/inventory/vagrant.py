"""The ``vagrant`` driver: the VMs of the repo's Vagrantfile, as ``vagrant ssh-config`` describes them.

``vagrant ssh-config`` prints one OpenSSH ``Host`` block per running VM::

    Host lab-1
      HostName 192.168.121.23
      User vagrant
      Port 22
      UserKnownHostsFile /dev/null
      StrictHostKeyChecking no
      IdentityFile /home/me/labfleet/.vagrant/machines/lab-1/libvirt/private_key

The parser keeps what Ansible needs (address, port, user, key) and the host-key
policy Vagrant asks for, since a VM recreated by Vagrant gets new host keys.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from controller.provision.inventory.base import (
    Inventory,
    InventoryError,
    InventoryHost,
    check_host,
    check_unique,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
SOURCE = "vagrant ssh-config"


class VagrantInventory(Inventory):
    """Runs ``vagrant ssh-config`` in ``directory`` (the repo root, where the Vagrantfile is).

    Vagrant executes that folder's Vagrantfile: the API takes ``directory`` from the operator's
    ``LABFLEET_VAGRANT_DIR``, never from a request.
    """

    driver = "vagrant"

    def __init__(self, directory: str | None = None, timeout: float = 120.0) -> None:
        self.directory = Path(directory).expanduser() if directory else REPO_ROOT
        self.timeout = timeout

    def hosts(self) -> list[InventoryHost]:
        return parse_ssh_config(self._ssh_config(), source=f"{SOURCE} in {self.directory}")

    def _ssh_config(self) -> str:
        vagrant = shutil.which("vagrant")
        if vagrant is None:
            raise InventoryError("the vagrant command is not installed on the controller machine; install "
                                 "Vagrant or use the static driver", key="driver")
        if not (self.directory / "Vagrantfile").is_file():
            raise InventoryError("no Vagrantfile here", path=self.directory)
        try:
            done = subprocess.run([vagrant, "ssh-config"], cwd=self.directory, capture_output=True, text=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise InventoryError(f"{SOURCE} did not answer within {self.timeout:.0f} s",
                                 path=self.directory) from None
        if done.returncode != 0:
            detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise InventoryError(f"{SOURCE} failed (are the VMs up? `vagrant up`): {detail}", path=self.directory)
        return done.stdout


def parse_ssh_config(text: str, *, source: str = SOURCE, check_keys: bool = True) -> list[InventoryHost]:
    """The hosts of an OpenSSH client config as ``vagrant ssh-config`` writes it."""
    blocks: list[tuple[str, int, dict[str, str]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.lower(), _unquote(value.strip(), source, number)
        if keyword == "host":
            blocks.append((value, number, {}))
        elif not blocks:
            raise InventoryError(f"{keyword!r} before the first Host line", path=source, line=number)
        else:
            # OpenSSH keeps the first value of an option; so do we.
            blocks[-1][2].setdefault(keyword, value)
    if not blocks:
        raise InventoryError("lists no hosts (no VM is running?)", path=source)
    hosts = [(_host(name, number, options, source, check_keys), number) for name, number, options in blocks]
    check_unique(hosts, path=source)
    return [host for host, _ in hosts]


def _host(name: str, number: int, options: dict[str, str], source: str, check_keys: bool) -> InventoryHost:
    try:
        port = int(options.get("port", "22"))
    except ValueError:
        raise InventoryError(f"{options['port']!r} is not a port", path=source, line=number,
                             key=f"{name}.Port") from None
    ssh_args = ""
    if options.get("stricthostkeychecking", "").lower() == "no":
        known_hosts = options.get("userknownhostsfile", "/dev/null")
        ssh_args = f"-o StrictHostKeyChecking=no -o UserKnownHostsFile={shlex.quote(known_hosts)}"
    host = InventoryHost(name=name, address=options.get("hostname", ""), port=port,
                         user=options.get("user", ""), private_key=options.get("identityfile", ""),
                         ssh_args=ssh_args)
    return check_host(host, path=source, line=number, prefix=f"{name}.", check_key=check_keys)


def _unquote(value: str, source: str, number: int) -> str:
    if value.startswith('"'):
        try:
            return shlex.split(value)[0]
        except (ValueError, IndexError):
            raise InventoryError(f"unbalanced quotes in {value!r}", path=source, line=number) from None
    return value
