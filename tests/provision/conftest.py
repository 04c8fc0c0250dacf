"""A provisioned room for the end-to-end tests: a local fleet, a real controller on its bridge, a worker.

The fleet has a unique prefix and /24 (``tests.fleet.conftest.new_fleet``), so
parallel runs of other engineers never collide; the controller listens on the
fleet's bridge address (the only address a fleet host can reach) and its
worker, on a Redis database of its own, runs the real playbooks through
ansible-runner over real SSH. Everything is module-scoped: one fleet and one
controller per test module, stopped by PID and taken down at the end, and the
machine is scanned for leftovers of the fleet.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from controller.fleet import Fleet
from controller.provision.runner import control_path_dir
from controller.provision.wheel import agent_wheel
from tests.conftest import BACKEND
from tests.fleet.conftest import leftovers, new_fleet
from tests.processes import REPO, Controller

# Not the e2e tests' database 11 (they flush it) nor the benchmarks' 12; each module has its own queue.
PROVISION_REDIS_URL = "redis://127.0.0.1:6379/14"


@dataclass
class FleetController(Controller):
    """A controller listening on the fleet's bridge address instead of loopback."""

    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({"LABFLEET_HOST": self.host, "LABFLEET_PUBLIC_URL": self.url, "LABFLEET_LOG_LEVEL": "INFO"})
        return env


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory) -> str:
    """A real private key's text, as `labfleet provision` uploads it with an inventory."""
    path = tmp_path_factory.mktemp("key") / "room.key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labfleet-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path.read_text()


@pytest.fixture(scope="module")
def module_database_url(tmp_path_factory, postgres_databases) -> Iterator[str]:
    """An empty database for one module (``serve`` migrates it)."""
    if BACKEND != "postgresql":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'labfleet.sqlite'}"
        return
    url = postgres_databases.new()
    yield url
    postgres_databases.drop(url)


@pytest.fixture(scope="module")
def fleet3(tmp_path_factory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory, 3) as fleet:
        yield fleet


@contextmanager
def running_fleet(tmp_path_factory, count: int) -> Iterator[Fleet]:
    """``count`` fresh fleet hosts, taken down at the end; the machine is then checked for leftovers."""
    fleet = new_fleet(tmp_path_factory.mktemp("fleet"))
    try:
        fleet.up(count)
        yield fleet
    finally:
        fleet.down()
    assert leftovers(fleet) == []


@pytest.fixture(scope="module")
def room(tmp_path_factory, module_database_url, fleet3) -> Iterator[FleetController]:
    """Controller (gunicorn) on the fleet's bridge and a Celery worker on Redis, for the fleet3 hosts."""
    with provisioning_controller(tmp_path_factory, module_database_url, queue_prefix="lfprov", fleet=fleet3) as ctl:
        yield ctl


@contextmanager
def provisioning_controller(tmp_path_factory, database_url: str, *, queue_prefix: str,
                            cls: type[Controller] = FleetController, fleet: Fleet | None = None,
                            extra_env: dict[str, str] | None = None) -> Iterator[Controller]:
    """A controller and its Celery worker as a room runs them, stopped by PID at the end.

    With ``fleet`` it listens on the fleet's bridge (the only address a fleet host reaches) and
    provisions that fleet; ``cls`` may place it elsewhere (the VM test's controller).
    """
    # A queue of its own: another run of these tests (or anyone) on this Redis database never takes its tasks.
    queue = f"{queue_prefix}-{uuid.uuid4().hex[:12]}"
    data_dir = tmp_path_factory.mktemp("controller")
    # One wheel for the whole module, built as a run builds it: other engineers edit node_agent/ in
    # this working tree while the tests run, and a new wheel between two runs is a real change.
    # The playbooks and the lab catalog likewise: a snapshot taken now.
    wheel = agent_wheel(tmp_path_factory.mktemp("wheels"))
    project = snapshot_project(tmp_path_factory.mktemp("project"))
    env = {"LABFLEET_PROVISION_AGENT_WHEEL": str(wheel), "LABFLEET_PLAYBOOKS_DIR": str(project / "playbooks"),
           "LABFLEET_CELERY_QUEUE": queue}
    placement = {}
    if fleet is not None:
        env["LABFLEET_FLEET_DIR"] = fleet_dir(fleet)
        placement["host"] = fleet.bridge_address
    env.update(extra_env or {})
    ctl = cls(data_dir, database_url, PROVISION_REDIS_URL, heartbeat_interval=1.0, sweep_interval=1.0,
              extra_env=env, **placement)
    ctl.init(enroll_uses=1)
    try:
        ctl.start_web()
        ctl.start_worker(beat=True)
        yield ctl
    finally:
        ctl.stop()
        redis.Redis.from_url(PROVISION_REDIS_URL).delete(queue)
        shutil.rmtree(control_path_dir(data_dir.resolve()), ignore_errors=True)


def snapshot_project(into: Path) -> Path:
    """A copy of what the playbooks read from the project: themselves, labs/, node_agent/ (the root fs
    builder, the unit file) and pyproject.toml."""
    for part in ("playbooks", "labs", "node_agent"):
        shutil.copytree(REPO / part, into / part, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    shutil.copy(REPO / "pyproject.toml", into / "pyproject.toml")
    return into


def labfleet(controller: Controller, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real CLI, as an instructor runs it, against ``controller``."""
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *args], env=controller.env(), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def labfleet_json(controller: Controller, *args: str, ok: bool = True, timeout: float = 300) -> dict:
    done = labfleet(controller, *args, "--json", timeout=timeout)
    if ok:
        assert done.returncode == 0, f"labfleet {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def fleet_dir(fleet: Fleet) -> str:
    return str(Path(fleet.config.state_dir))
