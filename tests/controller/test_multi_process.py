"""Several web processes on one database and one Redis behave as one controller.

Two apps built here stand for two web processes (or machines): each has its own notifier, caches
and limiter, and they meet only in PostgreSQL/SQLite and Redis, as two gunicorn workers do. The
Redis-restart and half-open tests use a redis-server of their own (tests/own_redis.py).
"""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from controller.app import create_app
from controller.cli.main import cli
from controller.runtime.notifier import NodeNotifier
from controller.settings import settings_for_tests
from tests.conftest import TEST_REDIS_URL
from tests.own_redis import HalfOpenProxy, OwnRedis
from tests.processes import wait_until


@pytest.fixture
def settings(tmp_path, database_url):
    return settings_for_tests(tmp_path / "data", database_url=database_url, heartbeat_interval=1.0,
                              redis_url=TEST_REDIS_URL)


@pytest.fixture
def other_app(tmp_path, database_url):
    """A second web process: same database, same Redis, nothing else shared."""
    app = create_app(settings_for_tests(tmp_path / "data-b", database_url=database_url, heartbeat_interval=1.0,
                                        redis_url=TEST_REDIS_URL))
    yield app
    state = app.extensions["labfleet"]
    state.notifier.close()
    state.heartbeats.close()
    state.db.dispose()


def poll(client, node, *, wait=0, resync=False):
    return client.get(f"/api/agent/v1/nodes/{node.id}/commands?wait={wait}&resync={int(resync)}",
                      headers=node.auth)


def listening(app):
    notifier = app.extensions["labfleet"].notifier
    notifier.version("warm-up")  # starts the listener
    wait_until(lambda: notifier.listening, timeout=10, interval=0.02, what="the notifier to subscribe")


def test_a_command_issued_on_one_process_wakes_a_poll_held_by_another(client, seed, enroll, app, other_app):
    node = enroll("vm")
    listening(app)
    listening(other_app)
    got: list = []
    held = threading.Thread(target=lambda: got.append(poll(other_app.test_client(), node, wait=20)))
    held.start()
    notifier_b = other_app.extensions["labfleet"].notifier
    wait_until(lambda: notifier_b.waiter_count(node.id) == 1, timeout=10, interval=0.01, what="the poll on B")
    issued_at = time.monotonic()
    issued = client.post("/api/v1/commands", json={"kind": "ping", "nodes": ["vm"]}, headers=seed.auth).json
    held.join(timeout=30)
    print(f"\nissued on A -> delivered on B: {1000 * (time.monotonic() - issued_at):.1f} ms")
    assert [c["id"] for c in got[0].json["commands"]] == [issued["commands"][0]["id"]]


def test_a_reconnecting_agent_on_another_process_supersedes_its_orphaned_poll(client, seed, enroll, app,
                                                                               other_app):
    """The old poll (process A, its socket dead) ends empty; the command goes to the new one (process B)."""
    node = enroll("vm")
    listening(app)
    listening(other_app)
    orphan: list = []
    old = threading.Thread(target=lambda: orphan.append(poll(app.test_client(), node, wait=20)))
    old.start()
    wait_until(lambda: app.extensions["labfleet"].notifier.waiter_count(node.id) == 1, timeout=10, interval=0.01,
               what="the old poll to wait on A")
    fresh: list = []
    new = threading.Thread(target=lambda: fresh.append(poll(other_app.test_client(), node, wait=20, resync=True)))
    new.start()
    old.join(timeout=15)
    assert not old.is_alive(), "the orphaned poll on A was not superseded by the new poll on B"
    assert orphan[0].status_code == 200 and orphan[0].json["commands"] == []
    wait_until(lambda: other_app.extensions["labfleet"].notifier.waiter_count(node.id) == 1, timeout=10,
               interval=0.01, what="the new poll to wait on B")
    command_id = client.post("/api/v1/commands", json={"kind": "ping", "nodes": ["vm"]},
                             headers=seed.auth).json["commands"][0]["id"]
    new.join(timeout=30)
    assert [c["id"] for c in fresh[0].json["commands"]] == [command_id]


def test_the_long_poll_limit_per_node_holds_across_processes(client, seed, enroll, app, other_app):
    node = enroll("vm")
    held = [threading.Thread(target=lambda a=a: poll(a.test_client(), node, wait=3)) for a in (app, other_app)]
    for thread in held:
        thread.start()
    wait_until(lambda: sum(a.extensions["labfleet"].notifier.waiter_count(node.id) for a in (app, other_app)) == 2,
               timeout=10, interval=0.01, what="one poll held on each process")
    third = poll(other_app.test_client(), node, wait=1)
    assert third.status_code == 429 and "long-polls per node" in third.json["detail"]
    for thread in held:
        thread.join(timeout=10)
    assert poll(app.test_client(), node).status_code == 200  # the slots came back when the polls ended


def test_a_resync_poll_clears_the_slots_of_polls_it_supersedes(client, seed, enroll, app, other_app):
    """A process killed mid-poll must not lock its node out until the entries expire: the agent's
    reconnecting poll (resync) takes over."""
    node = enroll("vm")
    limiter = app.extensions["labfleet"].polls
    stale = [limiter.slot(node.id, "long-polls per node", hold_seconds=25) for _ in range(2)]
    for slot in stale:
        slot.__enter__()  # two polls whose process died without releasing them
    assert poll(other_app.test_client(), node).status_code == 429
    assert poll(other_app.test_client(), node, resync=True).status_code == 200


def _notifier(url: str, **kwargs) -> NodeNotifier:
    notifier = NodeNotifier(url, health_check_interval=0.5, reconnect_delay=0.2, **kwargs)
    notifier.version("warm-up")
    wait_until(lambda: notifier.listening, timeout=10, interval=0.02, what="the notifier to subscribe")
    return notifier


def _wait_in_thread(notifier: NodeNotifier, node_id: str, timeout: float) -> tuple[threading.Thread, list]:
    seen = notifier.version(node_id)
    woke: list = []
    thread = threading.Thread(target=lambda: woke.append((notifier.wait(node_id, seen, timeout), time.monotonic())))
    thread.start()
    wait_until(lambda: notifier.waiter_count(node_id) == 1, timeout=5, interval=0.01, what="a waiting poll")
    return thread, woke


def test_the_notifier_comes_back_after_a_redis_restart_and_wakes_the_polls_it_may_have_missed(tmp_path):
    own = OwnRedis(tmp_path / "redis").start()
    resubscribed: list = []
    publisher = _notifier(own.url)
    listener = _notifier(own.url, on_resubscribed=lambda: resubscribed.append(time.monotonic()))
    try:
        killed_at = time.monotonic()
        own.kill()
        wait_until(lambda: not listener.listening, timeout=10, interval=0.01, what="the listener to notice")
        assert not listener.reliable  # the API's polls now re-check the database every second
        thread, woke = _wait_in_thread(listener, "n1", timeout=30)
        publisher.notify(["n1"])  # lost: Redis is down (the poll's database re-check covers it)
        own.start()
        restarted_at = time.monotonic()
        thread.join(timeout=20)
        assert woke and woke[0][0] is True, "the waiting poll was not woken after the resubscription"
        assert resubscribed, "the node-token cache was not told to forget"
        print(f"\nRedis down {restarted_at - killed_at:.2f}s; back -> listener resubscribed and polls woken "
              f"{woke[0][1] - restarted_at:.2f}s after the restart")
        assert listener.reliable
        thread, woke = _wait_in_thread(listener, "n2", timeout=30)
        sent = time.monotonic()
        publisher.notify(["n2"])  # the publisher's client reconnects by itself
        thread.join(timeout=20)
        assert woke and woke[0][0] is True
        print(f"first notification after the restart delivered in {1000 * (woke[0][1] - sent):.1f} ms")
    finally:
        publisher.close()
        listener.close()
        own.kill()


def test_the_notifier_drops_a_half_open_connection_and_resubscribes(tmp_path):
    own = OwnRedis(tmp_path / "redis").start()
    proxy = HalfOpenProxy(own.port)
    publisher = _notifier(own.url)
    listener = _notifier(proxy.url)
    try:
        proxy.freeze()  # the listener's socket stays open and silent
        frozen_at = time.monotonic()
        thread, woke = _wait_in_thread(listener, "n1", timeout=30)
        publisher.notify(["n1"])  # never reaches the frozen connection
        thread.join(timeout=20)
        assert woke and woke[0][0] is True, "a half-open subscription was never noticed"
        wait_until(lambda: [name for name, _ in listener.history][-2:] == ["lost", "subscribed"], timeout=10,
                   interval=0.02, what="the listener to resubscribe")
        back = listener.history[-1][1]
        print(f"\nhalf-open: detected, its missed poll woken {woke[0][1] - frozen_at:.2f}s after the connection "
              f"went silent (health check every 0.5 s); resubscribed {back - frozen_at:.2f}s after")
        thread, woke = _wait_in_thread(listener, "n2", timeout=30)
        publisher.notify(["n2"])  # through the new connection
        thread.join(timeout=20)
        assert woke and woke[0][0] is True
    finally:
        publisher.close()
        listener.close()
        proxy.close()
        own.kill()


def test_serve_and_worker_refuse_an_old_schema_until_db_upgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    env = {"LABFLEET_DATABASE_URL": url, "LABFLEET_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    for command in (["serve"], ["worker"]):
        refused = runner.invoke(cli, command, env=env)
        assert refused.exit_code != 0
        assert "labfleet db upgrade" in refused.output and "empty" in refused.output
    upgraded = runner.invoke(cli, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 0, upgraded.output
    assert "schema empty ->" in upgraded.output
    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    again = runner.invoke(cli, ["db", "upgrade"], env=env)
    assert again.exit_code == 0 and "already current" in again.output
