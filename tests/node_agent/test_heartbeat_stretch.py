"""An overloaded controller asks agents to beat less often; a real agent process obeys, and says so."""

from __future__ import annotations

import threading

import pytest

from tests.node_agent.conftest import WAIT
from tests.node_agent.test_daemon import start_enrolled
from tests.processes import wait_until


@pytest.mark.controller_settings(heartbeat_budget=0.5)  # the agent beats every 0.2 s: 10x this budget
def test_agent_beats_at_the_stretched_interval_the_controller_answers(start_agent, state_dir, controller) -> None:
    pacer = controller.app.extensions["labfleet"].heartbeat_pacer
    seen: list[tuple[float, float | None, float]] = []  # (node's own interval, it says it beats at, answered)
    lock = threading.Lock()
    answer = pacer.next_interval

    def watched(base: float, beating_at: float | None) -> float:
        told = answer(base, beating_at)
        with lock:
            seen.append((base, beating_at, told))
        return told

    pacer.next_interval = watched
    agent = start_enrolled(start_agent, state_dir, controller)

    (change,) = agent.wait_event("heartbeat.interval")[:1]
    stretched = change["seconds"]
    assert change["was"] == 0.2 and 0.2 < stretched <= 0.2 * 12
    # The agent's next beats say it beats at the stretched interval: the one it sleeps between beats.
    wait_until(lambda: any(at == stretched for _, at, _ in list(seen)), timeout=WAIT,
               what="a heartbeat sent at the stretched interval")
    # The node's record (and its page) show the interval it was told, which is what the liveness sweep uses.
    node = wait_until(lambda: (n := controller.node())["beats_every"] > 0.2 and n, timeout=WAIT,
                      what="the node's stretched interval")
    assert node["heartbeat_interval"] == 0.2 and node["state"] == "online"
    assert agent.terminate() == 0
