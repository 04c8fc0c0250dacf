"""The Celery worker on real Redis: JSON tasks run, pickle messages are refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from celery import Celery
from sqlalchemy import select

from controller.db import Database
from controller.models import Node, utcnow
from tests.conftest import TEST_REDIS_URL
from tests.processes import Controller, wait_until


@pytest.fixture
def worker(tmp_path, database_url):
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    controller = Controller(tmp_path / "data", database_url, TEST_REDIS_URL)
    controller.data_dir.mkdir()
    controller.start_worker(beat=False)
    wait_until(lambda: "ready" in controller.worker.log(), timeout=60, what="celery worker ready")
    yield controller
    controller.stop()
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()


def stale_online_node(database_url: str) -> str:
    db = Database(database_url)
    with db.session() as session:
        from controller import events

        event = events.get_or_create(session)
        node = Node(event_id=event.id, name="silent", machine_id="m", machine_secret_hash="x",
                    heartbeat_interval=1.0, last_seen_at=utcnow() - timedelta(minutes=5))
        session.add(node)
        session.flush()
        node_id = node.id
    db.dispose()
    return node_id


def node_state(database_url: str, node_id: str) -> str:
    db = Database(database_url)
    with db.session() as session:
        state = session.scalar(select(Node.state).where(Node.id == node_id))
    db.dispose()
    return state


def sender(serializer: str) -> Celery:
    """A client with broker access, as an attacker on the network would have it."""
    app = Celery("outsider", broker=TEST_REDIS_URL)
    app.conf.task_serializer = serializer
    app.conf.accept_content = ["json", "pickle"]
    return app


def test_pickle_message_is_rejected_and_json_message_runs(worker, database_url):
    node_id = stale_online_node(database_url)
    queue = redis.Redis.from_url(TEST_REDIS_URL)

    sender("pickle").send_task("labfleet.sweep", serializer="pickle")
    wait_until(lambda: "disallowed" in worker.worker.log().lower(), timeout=30,
               what="worker to refuse the pickle message")
    assert queue.llen("celery") == 0  # consumed and dropped, not left to poison the queue
    assert node_state(database_url, node_id) == "online"  # the task body never ran

    sender("json").send_task("labfleet.sweep")
    wait_until(lambda: node_state(database_url, node_id) == "offline", timeout=30,
               what="the JSON sweep to mark the silent node offline")
