"""Logs: one JSON object per line, and never a token or secret."""

from __future__ import annotations

import io
import json
import logging

import pytest

from node_agent.logs import configure, get_logger

TOKEN = "lfn_0123456789abcdefSECRET"


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    configure("json", stream=out)
    yield out
    logging.getLogger("node_agent").handlers.clear()


def test_json_lines_carry_event_and_fields(stream: io.StringIO) -> None:
    get_logger("node_agent.test").info("enrolled", node_id="n1", name="lab-1")

    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["event"] == "enrolled" and entry["level"] == "info" and entry["node_id"] == "n1"
    assert entry["ts"].endswith("Z")


def test_tokens_and_secrets_are_redacted_at_any_depth(stream: io.StringIO) -> None:
    log = get_logger("node_agent.test")
    log.info("enroll.request", enroll_token=TOKEN, node_token=TOKEN, machine_secret=TOKEN,
             request={"enrollment_token": TOKEN, "headers": {"Authorization": f"Bearer {TOKEN}"}},
             items=[{"token": TOKEN}])

    output = stream.getvalue()
    assert TOKEN not in output
    entry = json.loads(output)
    assert entry["enroll_token"] == "[redacted]" and entry["request"]["headers"]["Authorization"] == "[redacted]"


def test_text_format_redacts_too() -> None:
    out = io.StringIO()
    configure("text", stream=out)
    try:
        get_logger("node_agent.test").warning("auth.refused", node_token=TOKEN, node_id="n1")
    finally:
        logging.getLogger("node_agent").handlers.clear()
    assert TOKEN not in out.getvalue() and 'node_id="n1"' in out.getvalue()
