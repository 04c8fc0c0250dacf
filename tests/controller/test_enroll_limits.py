"""Failed enrollments are limited per address and per token prefix, shared through Redis, in bounded memory.

The rule (controller/api/enroll_guard.py, docs/security.md "Resource limits"): an
address is refused after N failures in a minute unless the token it presents
starts like a live one; a token prefix is refused after M failures from
anywhere. A room behind one NAT keeps enrolling with its real token while
someone next to it guesses.
"""

from __future__ import annotations

import secrets
import time
import uuid

import pytest
import redis

from controller import enrollment, events
from controller.app import create_app
from controller.settings import settings_for_tests
from tests.conftest import TEST_REDIS_URL

PER_ADDRESS, PER_PREFIX = 10, 5
ROOM = "198.51.100.7"


def make_app(tmp_path, database_url, name="a", **overrides):
    settings = settings_for_tests(tmp_path / f"data-{name}", database_url=database_url,
                                  enroll_failures_per_minute=PER_ADDRESS, enroll_failures_per_prefix=PER_PREFIX,
                                  **overrides)
    return create_app(settings)


def close(app):
    app.extensions["labfleet"].heartbeats.close()
    app.extensions["labfleet"].db.dispose()


@pytest.fixture
def app(tmp_path, database_url):
    app = make_app(tmp_path, database_url)
    yield app
    close(app)


def new_token(app, uses=100):
    with app.extensions["labfleet"].db.session() as session:
        _, token = enrollment.create_token(session, event=events.get_or_create(session), created_by="t", ttl=600,
                                           uses=uses)
    return token


def enroll(client, token, address, name="vm"):
    body = {"enrollment_token": token, "machine_id": uuid.uuid4().hex, "machine_secret": "s", "name": name}
    return client.post("/api/agent/v1/enroll", json=body, environ_base={"REMOTE_ADDR": address})


def guess():
    return "lfe_" + secrets.token_urlsafe(32)


def test_a_room_behind_one_address_keeps_enrolling_while_someone_there_guesses(app):
    client = app.test_client()
    room_token = new_token(app)
    codes = [enroll(client, guess(), ROOM).status_code for _ in range(PER_ADDRESS + 5)]
    assert codes == [401] * PER_ADDRESS + [429] * 5  # the guesser is stopped at the address limit
    # Everyone else in the room, same address, real token: all enroll.
    assert [enroll(client, room_token, ROOM, f"vm-{i}").status_code for i in range(20)] == [200] * 20
    # A token nobody issued is still refused from that address, without a database lookup of its hash.
    response = enroll(client, guess(), ROOM)
    assert response.status_code == 429 and response.json["field"] is None


def test_one_token_prefix_gets_a_few_tries_from_all_addresses_together(app):
    client = app.test_client()
    room_token = new_token(app)
    near_miss = room_token[:10] + secrets.token_urlsafe(32)  # the live prefix, the rest guessed
    codes = [enroll(client, near_miss, f"203.0.113.{i}").status_code for i in range(PER_PREFIX + 1)]
    assert codes == [401] * PER_PREFIX + [429]
    refused = enroll(client, near_miss, "203.0.113.200")
    assert refused.status_code == 429 and refused.json["field"] == "enrollment_token"
    # Another room's token is untouched by that prefix's failures.
    assert enroll(client, new_token(app), "203.0.113.201").status_code == 200


def test_five_thousand_distinct_callers_leave_the_in_process_limiter_bounded(tmp_path, database_url):
    app = make_app(tmp_path, database_url, enroll_limiter_max_keys=1000)
    counter = app.extensions["labfleet"].enroll_guard.counter
    try:
        client = app.test_client()
        for i in range(5000):
            # Each caller: its own address and its own made-up token (two keys each).
            assert enroll(client, guess(), f"10.{i // 250}.{i % 250}.1").status_code == 401
        assert len(counter) <= 1000
    finally:
        close(app)


def test_expired_counts_are_dropped_and_the_key_may_fail_again():
    from controller.counters import LocalCounter

    counter = LocalCounter(window=0.3, max_keys=100)
    for i in range(50):
        counter.hit(f"addr:{i}")
    counter.hit("addr:0")
    assert counter.count("addr:0")[0] == 2 and len(counter) == 50
    deadline = time.monotonic() + 10
    while len(counter) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(counter) == 0
    assert counter.count("addr:0") == (0, 0.0)


def test_two_web_processes_share_the_counts_through_redis(tmp_path, database_url):
    """Two app objects on one database and one Redis, as two gunicorn workers are."""
    first = make_app(tmp_path, database_url, "a", redis_url=TEST_REDIS_URL)
    second = make_app(tmp_path, database_url, "b", redis_url=TEST_REDIS_URL)
    address = f"192.0.2.{secrets.randbelow(250) + 1}"
    try:
        one, two = first.test_client(), second.test_client()
        for i in range(PER_ADDRESS):
            client = one if i % 2 else two
            assert enroll(client, guess(), address).status_code == 401
        assert enroll(one, guess(), address).status_code == 429
        assert enroll(two, guess(), address).status_code == 429
        # Every key the limiter wrote expires with its window: Redis does not keep them.
        server = redis.Redis.from_url(TEST_REDIS_URL)
        keys = [k for k in server.scan_iter("labfleet:enroll-*:failures:*", count=1000)]
        assert keys
        assert all(0 < server.ttl(k) <= 60 for k in keys)
        # The room's real token still passes on both.
        token = new_token(first)
        assert enroll(one, token, address, "vm-1").status_code == 200
        assert enroll(two, token, address, "vm-2").status_code == 200
    finally:
        close(first)
        close(second)
