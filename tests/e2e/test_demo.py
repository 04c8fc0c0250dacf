"""`labfleet demo`: three agents online in `labfleet status`; Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.processes import REPO, Proc, free_port, wait_until

pytestmark = pytest.mark.e2e


def children(pid: int) -> set[int]:
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            found |= {int(p) for p in fh.read().split()}
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_demo_shows_three_agents_online_and_cleans_up_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABFLEET_")}
    env.update(LABFLEET_DATA_DIR=str(tmp_path / "demo"), LABFLEET_PORT=str(free_port()))
    demo = Proc("demo", [sys.executable, "-m", "controller.cli.main", "demo", "--agents", "3", "--duration", "120"],
                env, tmp_path / "demo.log").start()
    try:
        wait_until(lambda: "labfleet demo is running" in demo.log() or not demo.alive(), timeout=90,
                   what="the demo banner")
        assert demo.alive(), demo.log()
        status = subprocess.run([sys.executable, "-m", "controller.cli.main", "status", "--json"], env=env,
                                cwd=REPO, capture_output=True, text=True, timeout=60)
        nodes = json.loads(status.stdout)
        assert sorted(n["name"] for n in nodes if n["state"] == "online") == ["demo-1", "demo-2", "demo-3"]
        started = children(demo.pid)
        assert len(started) == 5  # web, worker, three agents

        os.kill(demo.pid, signal.SIGINT)  # what Ctrl-C sends
        assert demo.popen.wait(timeout=30) == 0
        assert "every process it started has exited" in demo.log()
        assert [pid for pid in started if alive(pid)] == []
    finally:
        demo.stop()
