"""One Debian VM and one controller (TLS) for the VM tests: module-scoped, stopped by PID at the end."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from controller.provision.runner import control_path_dir
from controller.provision.wheel import agent_wheel
from tests.processes import Controller
from tests.provision.conftest import PROVISION_REDIS_URL, module_database_url, snapshot_project  # noqa: F401
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
    queue = f"lfvm-{uuid.uuid4().hex[:12]}"
    data_dir = tmp_path_factory.mktemp("controller")
    wheel = agent_wheel(tmp_path_factory.mktemp("wheels"))
    project = snapshot_project(tmp_path_factory.mktemp("project"))
    ctl = VMController(data_dir, module_database_url, PROVISION_REDIS_URL, heartbeat_interval=1.0,
                       sweep_interval=1.0,
                       extra_env={"LABFLEET_PROVISION_AGENT_WHEEL": str(wheel),
                                  "LABFLEET_PLAYBOOKS_DIR": str(project / "playbooks"),
                                  "LABFLEET_CELERY_QUEUE": queue})
    ctl.init(enroll_uses=1)
    try:
        ctl.start_web()
        ctl.start_worker(beat=True)
        yield ctl
    finally:
        ctl.stop()
        redis.Redis.from_url(PROVISION_REDIS_URL).delete(queue)
        shutil.rmtree(control_path_dir(data_dir.resolve()), ignore_errors=True)


@pytest.fixture(scope="module")
def vm(tmp_path_factory, vm_image, vm_controller) -> Iterator[DebianVM]:
    machine = DebianVM(vm_image, tmp_path_factory.mktemp("vm"), controller_port=vm_controller.port)
    machine.start()
    try:
        yield machine
    finally:
        machine.stop()
