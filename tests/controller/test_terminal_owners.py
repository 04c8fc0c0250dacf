"""A node's shared terminal is held by one web process, also when gunicorn forks its workers from one app."""

import os
import uuid

from controller.runtime.terminal_hub import Owners

REDIS_URL = os.environ.get("LABFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


def test_a_worker_forked_from_the_same_app_cannot_claim_a_session_its_sibling_holds():
    owners = Owners(REDIS_URL)  # built once, before the fork, as gunicorn does with the app
    node = f"test-owners-{uuid.uuid4().hex}"
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the first worker claims the node's session
        os.close(read)
        os.write(write, b"1" if owners.claim(node) else b"0")
        os._exit(0)
    os.close(write)
    claimed_in_child = os.read(read, 1)
    os.waitpid(child, 0)
    os.close(read)
    try:
        assert claimed_in_child == b"1"
        # The second worker (here: the parent) must send its browser elsewhere, not open a second session.
        assert owners.claim(node) is False
    finally:
        owners._redis.delete(f"labfleet:terminal:{node}")
