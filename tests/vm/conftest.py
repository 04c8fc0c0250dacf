"""One Debian VM and one controller (TLS) for the VM tests: module-scoped, stopped by PID at the end."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import Controller
from tests.provision.conftest import module_database_url, provisioning_controller  # noqa: F401
from tests.vm.qemu import CONTROLLER_ADDRESS, CONTROLLER_GUEST_PORT, DebianVM, image_dir


@dataclass
class VMController(Controller):
    """A controller on loopback that the guest reaches as https://10.0.2.100:8300 (QEMU's guestfwd).

    That URL is its public one, so the run hands it to the VM and ``init``'s certificate covers it; the
    CLI here uses the loopback URL (LABFLEET_URL).
    """

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({"LABFLEET_PUBLIC_URL": f"https://{CONTROLLER_ADDRESS}:{CONTROLLER_GUEST_PORT}",
                    "LABFLEET_URL": self.url, "LABFLEET_LOG_LEVEL": "INFO"})
        return env


@pytest.fixture(scope="session")
def vm_image() -> Path:
    return image_dir()


@pytest.fixture(scope="module")
def vm_controller(tmp_path_factory, module_database_url) -> Iterator[VMController]:  # noqa: F811
    with provisioning_controller(tmp_path_factory, module_database_url, queue_prefix="lfvm",
                                 cls=VMController) as ctl:
        yield ctl


@pytest.fixture(scope="module")
def vm(tmp_path_factory, vm_image, vm_controller) -> Iterator[DebianVM]:
    machine = DebianVM(vm_image, tmp_path_factory.mktemp("vm"), controller_port=vm_controller.port)
    machine.start()
    try:
        yield machine
    finally:
        machine.stop()
