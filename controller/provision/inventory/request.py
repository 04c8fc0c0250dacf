"""The inventory a provisioning request asks for: a driver and a file's text, never a place on the controller.

A request chooses the driver and, for the static driver, sends the file's
text and its keys. Where the local fleet is recorded (``LABFLEET_FLEET_DIR``),
which Vagrantfile runs (``LABFLEET_VAGRANT_DIR``) and which folder keys may be
named from (``LABFLEET_PROVISION_KEYS_DIR``) are the operator's settings; a
request naming any of them, or asking for a check to be skipped, is refused
with the option named (``inventory.state_dir``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.provision.inventory import DRIVERS
from controller.provision.inventory.base import Inventory, InventoryError
from controller.provision.inventory.keys import KeyRefused, KeyResolver, check_uploads
from controller.settings import Settings

OPTIONS: dict[str, tuple[str, ...]] = {"static": ("path", "content", "keys"), "vagrant": (), "netns": ()}
_SETTING_NOT_REQUEST = {
    "state_dir": "the local fleet's folder is the controller's setting LABFLEET_FLEET_DIR, not a request's",
    "subnet": "the local fleet is the one recorded in the controller's LABFLEET_FLEET_DIR",
    "prefix": "the local fleet is the one recorded in the controller's LABFLEET_FLEET_DIR",
    "directory": "the Vagrantfile's folder (Vagrant executes that file) is the controller's setting "
                 "LABFLEET_VAGRANT_DIR, not a request's",
    "check_keys": "a request cannot switch a check off",
}
MAX_PATH = 4096


@dataclass(frozen=True)
class InventorySettings:
    """The operator's settings the drivers read."""

    data_dir: Path
    keys_dir: str = ""
    fleet_dir: str = ""
    vagrant_dir: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> InventorySettings:
        return cls(data_dir=settings.data_dir, keys_dir=settings.provision_keys_dir,
                   fleet_dir=settings.fleet_dir, vagrant_dir=settings.vagrant_dir)

    @property
    def key_store(self) -> Path:
        return self.data_dir / "provision" / "keys"


def open_requested(driver: str, options: dict[str, Any], config: InventorySettings) -> Inventory:
    """The driver's inventory for a request's ``inventory`` options; refusals name the option."""
    if driver not in DRIVERS:
        raise InventoryError(f"unknown inventory driver {driver!r}; known: {', '.join(sorted(DRIVERS))}",
                             key="driver")
    for name in options:
        if name not in OPTIONS[driver]:
            known = ", ".join(OPTIONS[driver]) or "none"
            reason = _SETTING_NOT_REQUEST.get(name, f"unknown option of the {driver} driver (known: {known})")
            raise InventoryError(reason, key=f"inventory.{name}")
    if driver == "netns":
        from controller.provision.inventory.netns import NetnsInventory

        return NetnsInventory(state_dir=config.fleet_dir or None)
    if driver == "vagrant":
        from controller.provision.inventory.vagrant import VagrantInventory

        return VagrantInventory(directory=config.vagrant_dir or None)
    return _static(options, config)


def _static(options: dict[str, Any], config: InventorySettings) -> Inventory:
    from controller.provision.inventory.static import StaticInventory

    content, path = options.get("content"), options.get("path", "inventory.yml")
    if not isinstance(content, str):
        # The file's text comes with the request: the controller never reads a path a caller names.
        raise InventoryError("the static driver needs the inventory file's text", key="inventory.content")
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise InventoryError("the inventory file's name (it says which format the text is in)",
                             key="inventory.path")
    try:
        uploaded = check_uploads(options.get("keys", {}))
    except KeyRefused as exc:
        raise InventoryError(exc.message, key=exc.key) from None
    resolver = KeyResolver(uploaded, keys_dir=config.keys_dir or None, store_dir=config.key_store)
    return StaticInventory(path, content, keys=resolver)
