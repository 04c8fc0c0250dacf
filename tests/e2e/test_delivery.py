"""Exactly-once effect across controller crashes, and agents that converge by themselves."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from controller.db import Database
from controller.models import Command, CommandResult
from tests.processes import wait_until

pytestmark = pytest.mark.e2e


def online(controller, names):
    try:
        nodes = controller.nodes()
    except OSError:
        return False
    return all(nodes.get(n, {}).get("state") == "online" for n in names) and nodes


def all_done(database_url, command_ids):
    db = Database(database_url)
    try:
        with db.session() as session:
            states = session.execute(select(Command.id, Command.state).where(Command.id.in_(command_ids))).all()
    finally:
        db.dispose()
    return all(state in ("succeeded", "failed") for _, state in states) and len(states) == len(command_ids)


def test_controller_killed_mid_delivery_every_command_runs_once(controller, agents, database_url):
    controller.start_web()
    names = ["vm-1", "vm-2", "vm-3"]
    fleet = [agents(name, controller) for name in names]
    wait_until(lambda: online(controller, names), timeout=60, what="agents online")

    issued: list[str] = []
    for round_ in range(3):
        for _ in range(5):
            batch = controller.api("POST", "/api/v1/commands",
                                   {"kind": "ping", "args": {"delay_ms": 200}, "all": True})
            issued += [c["id"] for c in batch["commands"]]
        time.sleep(0.15 * (round_ + 1))  # commands in flight: delivered, running, results being posted
        controller.web.kill()
        time.sleep(0.5)
        controller.start_web()

    wait_until(lambda: all_done(database_url, issued), timeout=120, what="every command to get its result")
    db = Database(database_url)
    with db.session() as session:
        per_command = dict(session.execute(
            select(CommandResult.command_id, func.count()).group_by(CommandResult.command_id)).all())
        failed = session.scalars(select(Command.id).where(Command.state != "succeeded")).all()
    db.dispose()
    assert set(per_command) == set(issued)
    assert set(per_command.values()) == {1}
    assert failed == []
    for agent in fleet:
        ran = agent.executed_ids()
        mine = [cid for cid in issued if cid in set(ran)]
        assert len(ran) == len(set(ran)), f"{agent.name} ran a command twice"
        assert len(mine) == len(issued) // len(names)


def test_agent_started_before_the_controller_converges(controller, agents):
    agent = agents("early", controller)
    time.sleep(2)  # the agent retries with backoff while nothing listens
    assert agent.proc.alive()
    controller.start_web()
    wait_until(lambda: online(controller, ["early"]), timeout=30, what="early agent online")

    controller.web.kill()
    time.sleep(1)
    controller.start_web()
    batch = controller.api("POST", "/api/v1/commands", {"kind": "ping", "nodes": ["early"]})
    done = wait_until(
        lambda: (b := controller.api("GET", f"/api/v1/batches/{batch['batch_id']}"))["done"] == 1 and b,
        timeout=30, what="ping answered after the controller restart")
    assert done["commands"][0]["state"] == "succeeded"
    assert len(controller.nodes()) == 1
