"""Inventory drivers: where the hosts of a provisioning run come from.

Every driver gives the same thing, a list of :class:`InventoryHost`, and the
same Ansible inventory built from it; the rest of provisioning never asks
which driver it has. Drivers register in :data:`DRIVERS`::

    inventory = open_inventory("static", {"path": "room.yml"})
    inventory.hosts()                 # -> [InventoryHost(name="lab-1", address=..., ...)]
    inventory.to_ansible_inventory()  # -> {"all": {"hosts": {"lab-1": {"ansible_host": ...}}}}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from controller.provision.inventory.base import (
    HOSTS_GROUP,
    Inventory,
    InventoryError,
    InventoryHost,
    ansible_inventory,
)


def _static(options: dict[str, Any]) -> Inventory:
    from controller.provision.inventory.static import StaticInventory

    return StaticInventory(**options)


def _vagrant(options: dict[str, Any]) -> Inventory:
    from controller.provision.inventory.vagrant import VagrantInventory

    return VagrantInventory(**options)


def _netns(options: dict[str, Any]) -> Inventory:
    from controller.provision.inventory.netns import NetnsInventory

    return NetnsInventory(**options)


DRIVERS: dict[str, Callable[[dict[str, Any]], Inventory]] = {
    "static": _static, "vagrant": _vagrant, "netns": _netns,
}


def open_inventory(driver: str, options: dict[str, Any] | None = None) -> Inventory:
    """The inventory of ``driver`` with its options; unknown drivers or options name what is known."""
    if driver not in DRIVERS:
        raise InventoryError(f"unknown inventory driver {driver!r}; known: {', '.join(sorted(DRIVERS))}",
                             key="driver")
    try:
        return DRIVERS[driver](dict(options or {}))
    except TypeError as exc:  # an option the driver's constructor does not take
        raise InventoryError(f"{driver} driver: {exc}", key="inventory") from None


def hosts_from_dicts(rows: Iterable[dict[str, Any]]) -> list[InventoryHost]:
    return [InventoryHost.from_dict(row) for row in rows]


__all__ = ["DRIVERS", "HOSTS_GROUP", "Inventory", "InventoryError", "InventoryHost", "ansible_inventory",
           "hosts_from_dicts", "open_inventory"]
