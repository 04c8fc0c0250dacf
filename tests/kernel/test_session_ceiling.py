"""The agent's view of a session ceiling on a real pids cgroup: a hit is seen once, and a restarted agent
(a new watcher on the same state file) does not report an old hit as new."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from node_agent.kernel.cgroup_control import find_hierarchy
from node_agent.session_ceiling import SessionWatch
from tests.processes import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="making a cgroup needs root")


@pytest.fixture
def pids_group():
    hierarchy = find_hierarchy("pids")
    if hierarchy is None:
        pytest.skip("no pids controller")
    rel = f"labfleet-test-session-{os.getpid()}"
    group = hierarchy.mount / rel
    group.mkdir()
    (group / "pids.max").write_text("3")
    yield rel, group
    for _ in range(50):
        pids = (group / "cgroup.procs").read_text().split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not pids:
            break
        time.sleep(0.1)
    wait_until(lambda: _rmdir(group), timeout=10, what="the test cgroup removed")


def _rmdir(group) -> bool:
    try:
        group.rmdir()
        return True
    except OSError:
        return False


def test_a_hit_ceiling_is_reported_once_and_survives_a_restart_of_the_watcher(pids_group, tmp_path):
    rel, group = pids_group
    state = tmp_path / "session-ceiling.json"
    watch = SessionWatch(rel, state_file=state)
    quiet = watch.read()
    assert quiet["present"] and quiet["pids_max"] == 3 and quiet["pids_hits"] == 0 and quiet["last_hit_at"] is None

    # A process in the group forks more than its ceiling allows: the kernel refuses (pids.events max).
    bomb = subprocess.Popen(["sh", "-c", f"echo $$ > {group}/cgroup.procs; for i in 1 2 3 4 5 6; do sleep 30 & done;"
                                         " wait"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        hit = wait_until(lambda: (r := watch.read())["pids_hits"] > 0 and r, timeout=30, what="the ceiling hit")
        assert hit["last_hit_at"] and len((group / "cgroup.procs").read_text().split()) <= 3
        again = watch.read()
        assert again["last_hit_at"] == hit["last_hit_at"]  # no new refusal: the same hit
        restarted = SessionWatch(rel, state_file=state).read()
        assert restarted["last_hit_at"] == hit["last_hit_at"] and restarted["pids_hits"] == hit["pids_hits"]
    finally:
        bomb.kill()
        bomb.wait(timeout=10)
