"""Two controllers, two Celery workers, one database and one Redis: one room.

Controller A and controller B are two ``labfleet serve`` (two gunicorn workers each) on two
loopback ports, as two machines would be; a Celery worker with the beat runs beside A and one
without beside B. Half the agents poll A, half poll B. What the room must not notice:

- ``labfleet exec ping --all`` issued on A reaches the agents polling B (and the other way round);
- /metrics of A plus /metrics of B count every stored result exactly once, although four web
  processes stored them;
- Redis killed and restarted during the run loses no command, and none runs twice.

Redis here is the test's own redis-server (tests/own_redis.py), killed by PID.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from sqlalchemy import func, select

from controller.db import Database
from controller.models import Command, CommandResult
from tests.own_redis import OwnRedis
from tests.processes import REPO, Agent, Controller, wait_until

pytestmark = pytest.mark.e2e

RESULT_LINE = re.compile(r'^labfleet_command_results_total\{kind="ping",outcome="ok"\} (\S+)$', re.M)
SECONDS_COUNT = re.compile(r'^labfleet_command_seconds_count\{kind="ping"\} (\S+)$', re.M)


@pytest.fixture
def own_redis(tmp_path):
    redis_server = OwnRedis(tmp_path / "redis").start()
    yield redis_server
    redis_server.kill()


@pytest.fixture
def room(tmp_path, database_url, own_redis):
    a = Controller(tmp_path / "a", database_url, own_redis.url)
    a.data_dir.mkdir()
    a.init(enroll_uses=10)
    b = Controller(tmp_path / "b", database_url, own_redis.url)
    b.data_dir.mkdir()
    shutil.copytree(a.data_dir / "tls", b.data_dir / "tls")  # one room CA; the certificate names 127.0.0.1
    b.api_token, b.enrollment_token = a.api_token, a.enrollment_token
    started: list[Agent] = []
    try:
        a.start_web()
        b.start_web()
        a.start_worker(beat=True)
        b.start_worker(beat=False)
        yield a, b, started
    finally:
        for agent in started:
            if agent.proc is not None:
                agent.proc.stop()
        a.stop()
        b.stop()


def start_agent(tmp_path, name: str, controller: Controller) -> Agent:
    return Agent(name, tmp_path / "agents" / name).start(controller.url, controller.enrollment_token,
                                                         ca_file=controller.ca_file)


def cli_exec_all(controller: Controller) -> tuple[dict, float]:
    """``labfleet exec ping --all --json`` as the instructor types it, against ``controller``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABFLEET_")}
    env.update({"LABFLEET_DATA_DIR": str(controller.data_dir), "LABFLEET_URL": controller.url,
                "LABFLEET_TOKEN": controller.api_token})
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "controller.cli.main", "exec", "ping", "--all", "--json",
                          "--wait", "60"], env=env, cwd=REPO, capture_output=True, text=True, timeout=90)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout), took


def results_in_database(database_url: str) -> dict[str, int]:
    db = Database(database_url)
    try:
        with db.session() as session:
            return dict(session.execute(
                select(CommandResult.command_id, func.count()).group_by(CommandResult.command_id)).all())
    finally:
        db.dispose()


def done(database_url: str, ids: list[str]) -> bool:
    db = Database(database_url)
    try:
        with db.session() as session:
            states = session.scalars(select(Command.state).where(Command.id.in_(ids))).all()
    finally:
        db.dispose()
    return len(states) == len(ids) and all(s in ("succeeded", "failed") for s in states)


def scrape(controller: Controller, pattern: re.Pattern, scrapes: int = 6) -> float:
    """The counter as /metrics answers it; several scrapes land on different gunicorn workers of
    this serve and must all answer the same sum."""
    seen = set()
    for _ in range(scrapes):
        with urllib.request.urlopen(controller.url + "/metrics", timeout=10,
                                    context=controller.ssl_context()) as response:
            text = response.read().decode()
        match = pattern.search(text)
        seen.add(float(match.group(1)) if match else 0.0)
    assert len(seen) == 1, f"scrapes of one serve disagree (one worker's counts only): {seen}"
    return seen.pop()


def test_two_controllers_serve_one_room(room, tmp_path, database_url, own_redis):
    a, b, agents = room
    on_a, on_b = ["vm-a1", "vm-a2"], ["vm-b1", "vm-b2"]
    for name in on_a:
        agents.append(start_agent(tmp_path, name, a))
    for name in on_b:
        agents.append(start_agent(tmp_path, name, b))
    names = on_a + on_b
    wait_until(lambda: all(n.get("state") == "online" for n in a.nodes().values()) and len(a.nodes()) == 4,
               timeout=90, what="four agents online")

    # exec --all on A reaches the agents polling B, and on B those polling A.
    issued: list[str] = []
    for issuer in (a, b):
        batch, took = cli_exec_all(issuer)
        assert sorted(c["node"] for c in batch["commands"]) == names
        assert {c["state"] for c in batch["commands"]} == {"succeeded"}
        issued += [c["id"] for c in batch["commands"]]
        print(f"\nexec ping --all on {'A' if issuer is a else 'B'}: all 4 results in {took:.2f}s "
              "(CLI start-up included)")

    # Redis killed while commands are in flight, commands issued while it is down, then restarted.
    for round_ in range(3):
        issued += [c["id"] for c in a.api("POST", "/api/v1/commands",
                                          {"kind": "ping", "args": {"delay_ms": 100}, "all": True})["commands"]]
        issued += [c["id"] for c in b.api("POST", "/api/v1/commands",
                                          {"kind": "ping", "all": True})["commands"]]
        if round_ == 1:
            own_redis.kill()
            down_at = time.monotonic()
            during = [c["id"] for c in a.api("POST", "/api/v1/commands", {"kind": "ping", "all": True})["commands"]]
            issued += during
            wait_until(lambda during=during: done(database_url, during), timeout=60, what="commands issued while Redis is down")
            print(f"with Redis down: exec on A answered by all 4 (2 of them polling B, on the database "
                  f"re-check) in {time.monotonic() - down_at:.2f}s")
            own_redis.start()
            print(f"Redis was down {time.monotonic() - down_at:.2f}s")
    after = [c["id"] for c in a.api("POST", "/api/v1/commands", {"kind": "ping", "all": True})["commands"]]
    sent = time.monotonic()
    issued += after
    wait_until(lambda: done(database_url, after), timeout=60, what="the first command after the restart")
    print(f"after the restart: exec on A answered by all 4 in {time.monotonic() - sent:.2f}s")
    wait_until(lambda: done(database_url, issued), timeout=120, what="every command's result")

    per_command = results_in_database(database_url)
    assert set(per_command) == set(issued) and set(per_command.values()) == {1}
    for agent in agents:
        ran = agent.executed_ids()
        assert len(ran) == len(set(ran)), f"{agent.name} ran a command twice"
    assert sum(len(agent.executed_ids()) for agent in agents) == len(issued)

    # Four web processes stored these results; A's scrape plus B's counts each once.
    from_a, from_b = scrape(a, RESULT_LINE), scrape(b, RESULT_LINE)
    print(f"labfleet_command_results_total: A {from_a:.0f} + B {from_b:.0f} = {from_a + from_b:.0f}, "
          f"results stored {len(per_command)}")
    assert from_a > 0 and from_b > 0
    assert from_a + from_b == len(per_command)
    assert scrape(a, SECONDS_COUNT) + scrape(b, SECONDS_COUNT) == len(per_command)
