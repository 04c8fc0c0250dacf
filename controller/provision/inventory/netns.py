"""The ``netns`` driver: the local namespace fleet (``labfleet fleet up``), reached over real SSH.

Each fleet host has its own sshd, a key pair the fleet generated, and a
known_hosts file with every host's key, so host keys are checked strictly
(``StrictHostKeyChecking=yes``) against the fleet's own file; a fleet made again
gets new keys and a new file, never a stale entry in a shared one.
"""

from __future__ import annotations

import shlex
from typing import Any

from controller.provision.inventory.base import Inventory, InventoryError, InventoryHost, check_host


class NetnsInventory(Inventory):
    """The hosts of the local fleet recorded in ``state_dir`` (the fleet's default folder if unset).

    ``subnet`` and ``prefix`` matter only when no fleet is recorded there (the error then names them).
    """

    driver = "netns"

    def __init__(self, state_dir: str | None = None, subnet: str | None = None, prefix: str | None = None) -> None:
        from controller.fleet import Fleet, FleetError

        options: dict[str, Any] = {k: v for k, v in (("state_dir", state_dir), ("subnet", subnet),
                                                     ("prefix", prefix)) if v}
        try:
            self.fleet = Fleet.from_state(**options)
        except (FleetError, ValueError) as exc:
            raise InventoryError(f"netns driver: {exc}", key="inventory") from None
        self.options = options

    def hosts(self) -> list[InventoryHost]:
        from controller.fleet import FleetError

        try:
            fleet_hosts = self.fleet.hosts()
        except FleetError as exc:
            raise InventoryError(f"netns driver: {exc}", key="inventory") from None
        if not fleet_hosts:
            where = ", ".join(f"{k}={v}" for k, v in self.options.items()) or "the default fleet"
            raise InventoryError(f"no local fleet host ({where}): run `labfleet fleet up --count N` first",
                                 key="inventory")
        hosts = []
        for fh in fleet_hosts:
            ssh_args = (f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={shlex.quote(fh.known_hosts_path)}")
            host = InventoryHost(name=fh.name, address=fh.address, port=fh.ssh_port, user=fh.ssh_user,
                                 private_key=fh.private_key_path, ssh_args=ssh_args,
                                 vars={"labfleet_cgroup_parent": fh.lab_cgroup_parent,
                                       "labfleet_session_cgroup": fh.session_cgroup})
            hosts.append(check_host(host, path="local fleet", prefix=f"{fh.name}."))
        return hosts

    def controller_url(self, default: str) -> str:
        """The fleet's hosts have no route beyond their bridge: they reach the controller at its address."""
        scheme = "https" if default.startswith("https://") else "http"
        port = default.rsplit(":", 1)[-1].split("/", 1)[0]
        port = port if port.isdigit() else ("443" if scheme == "https" else "80")
        return f"{scheme}://{self.fleet.bridge_address}:{port}"
