"""The inventory interface every driver implements, and the host it yields."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from controller.provision.inventory.host_vars import check_vars

# Every host is also in this group, so a playbook can target lab VMs by name.
HOSTS_GROUP = "lab_vms"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9:.%_-]{1,255}$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")
# Ansible's implicit localhost: a host of that name would take over `delegate_to: localhost` (the
# controller-side staging task) and run it wherever its address points.
_LOCALHOST_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class InventoryError(ValueError):
    """An inventory cannot be used; the message names the file, line and key at fault."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.message = message
        self.path = str(path) if path else None
        self.line = line
        self.key = key
        where = ":".join(str(part) for part in (self.path, line) if part)
        text = f"{key}: {message}" if key else message
        super().__init__(f"{where}: {text}" if where else text)


@dataclass(frozen=True)
class InventoryHost:
    """One machine to provision: how to reach it over SSH, and its extra Ansible variables.

    ``ssh_args`` is the driver's own host-key policy (the local fleet's known_hosts, Vagrant's
    ssh-config); an inventory file cannot set it, and without it the controller's policy applies.
    """

    name: str
    address: str
    port: int = 22
    user: str = "root"
    private_key: str = ""
    vars: dict[str, Any] = field(default_factory=dict)
    ssh_args: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> InventoryHost:
        return cls(**{k: row[k] for k in ("name", "address", "port", "user", "private_key", "vars", "ssh_args")
                      if k in row})

    def ansible_vars(self) -> dict[str, Any]:
        values: dict[str, Any] = {"ansible_host": self.address, "ansible_port": self.port,
                                  "ansible_user": self.user}
        if self.private_key:
            values["ansible_ssh_private_key_file"] = self.private_key
        if self.ssh_args:
            values["ansible_ssh_common_args"] = self.ssh_args
        values.update(self.vars)
        return values


def check_host(host: InventoryHost, *, path: str | Path | None = None, line: int | None = None,
               prefix: str = "", check_key: bool = True) -> InventoryHost:
    """Refuse a host that cannot be reached as written; the error names the field."""
    def fail(key: str, message: str) -> InventoryError:
        return InventoryError(message, path=path, line=line, key=f"{prefix}{key}")

    if not _NAME.match(host.name):
        raise fail("name", f"{host.name!r} is not a host name (letters, digits, '.', '_', '-'; at most 64)")
    if host.name.lower() in _LOCALHOST_NAMES:
        raise fail("name", f"{host.name!r} is Ansible's name for the controller itself: name the host otherwise")
    if not host.address:
        raise fail("address", "missing")
    if not _ADDRESS.match(host.address):
        raise fail("address", f"{host.address!r} is not a host name or IP address")
    if not isinstance(host.port, int) or isinstance(host.port, bool) or not 1 <= host.port <= 65535:
        raise fail("port", f"{host.port!r} is not a port (1-65535)")
    if not host.user:
        raise fail("user", "missing")
    if not _USER.match(host.user):
        raise fail("user", f"{host.user!r} is not a user name")
    if host.private_key and check_key and not Path(host.private_key).is_file():
        raise fail("private_key", f"no key file at {host.private_key}")
    if not isinstance(host.vars, dict):
        raise fail("vars", "must be a mapping of variable names to values")
    check_vars(host.vars, fail)
    return host


def check_unique(hosts: list[tuple[InventoryHost, int | None]], *, path: str | Path | None = None) -> None:
    seen: dict[str, int | None] = {}
    for host, line in hosts:
        if host.name in seen:
            first = f" (first on line {seen[host.name]})" if seen[host.name] else ""
            raise InventoryError(f"host {host.name!r} is listed twice{first}", path=path, line=line, key="name")
        seen[host.name] = line


class Inventory(ABC):
    """A source of hosts. ``hosts()`` may read a file or run a program; it raises InventoryError."""

    driver: str = ""

    @abstractmethod
    def hosts(self) -> list[InventoryHost]:
        """Every host of this inventory, checked (names unique, addresses and users present)."""

    def to_ansible_inventory(self, *, ssh_common_args: str = "") -> dict[str, Any]:
        return ansible_inventory(self.hosts(), ssh_common_args=ssh_common_args)

    def controller_url(self, default: str) -> str:
        """The controller URL as the hosts reach it (the local fleet reaches it over its bridge)."""
        return default


def ansible_inventory(hosts: list[InventoryHost], *, ssh_common_args: str = "") -> dict[str, Any]:
    """An Ansible YAML/JSON inventory: every host under ``all`` and in the ``lab_vms`` group.

    ``ssh_common_args`` (the controller's host-key policy) applies to hosts whose driver brings
    none of its own (ssh keeps the first value of an option, so a driver's settings must not
    follow ours).
    """
    entries: dict[str, Any] = {}
    for host in hosts:
        values = host.ansible_vars()
        if ssh_common_args and "ansible_ssh_common_args" not in values:
            values["ansible_ssh_common_args"] = ssh_common_args
        entries[host.name] = values
    return {"all": {"hosts": entries, "children": {HOSTS_GROUP: {"hosts": {name: {} for name in entries}}}}}
