"""End-to-end fixtures: a real controller (gunicorn), worker (Celery on Redis) and agent processes."""

from __future__ import annotations

import pytest
import redis

from tests.conftest import TEST_REDIS_URL
from tests.labs import conftest as labs_conftest
from tests.processes import Agent, Controller


@pytest.fixture
def controller(tmp_path, database_url):
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    ctl = Controller(tmp_path / "controller", database_url, TEST_REDIS_URL)
    ctl.data_dir.mkdir()
    ctl.init(enroll_uses=50)
    yield ctl
    ctl.stop()
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()


@pytest.fixture
def agents(tmp_path):
    """Start agents by name; every one is stopped by PID at the end of the test."""
    started: list[Agent] = []

    def start(name: str, controller: Controller) -> Agent:
        agent = Agent(name, tmp_path / "agents" / name).start(controller.url, controller.enrollment_token,
                                                              ca_file=controller.ca_file)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        if agent.proc is not None:
            agent.proc.stop()


# A real attendee account (created once per session, removed at the end), shared with the lab tests.
attendee = labs_conftest.attendee
