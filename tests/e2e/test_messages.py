"""`labfleet message` through the whole system: the instructor's CLI → the controller → a message.notice
command → the real agent (kept in its state folder) → the attendee's `lab status` / `lab messages` on the
real socket and the root-written notice line their prompt hook reads → the agent's report that it was read."""

from __future__ import annotations

import json
import os

import pytest

from tests.e2e.test_help import help_agent  # noqa: F401  (the fixture: a real agent with a two-step lab)
from tests.e2e.test_labs import attendee_lab, labfleet
from tests.processes import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent's labs act on the kernel as root")


def test_a_message_and_a_hint_reach_lab_status_stripped_of_control_characters_and_are_read_once(
        help_agent, attendee):  # noqa: F811
    controller, _agent, _marker, sock = help_agent
    assert attendee_lab(attendee, sock, "use", "two-step").returncode == 0
    sent = labfleet(controller, "message", "--node", "vm-lab", "--json", "look at\x1b[2J /tmp\nnow\x07")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    (row,) = json.loads(sent.stdout)["messages"]

    # The notice line the prompt hook reads: root's file beside the socket, no control character in it.
    notice = sock.parent / "help-notice"
    wait_until(lambda: notice.exists() and notice.read_text().startswith("msg-"), timeout=30,
               what="the message's notice line")
    serial, line = notice.read_text().rstrip("\n").split("\t")
    assert serial == f"msg-{row['id'][:12]}" and line.endswith("look at[2J /tmp now")
    assert not any(ord(c) < 32 for c in line)

    status = attendee_lab(attendee, sock, "status")
    assert status.returncode == 0, status.stderr
    assert "Messages:" in status.stdout and "look at[2J /tmp now" in status.stdout
    assert "\x1b" not in status.stdout and "\x07" not in status.stdout
    again = attendee_lab(attendee, sock, "messages")
    assert again.returncode == 0 and again.stdout.strip() == "No new messages."
    assert "look at[2J /tmp now" in attendee_lab(attendee, sock, "messages", "--all").stdout

    # The agent reports what its attendee has read; the controller's unread view follows.
    wait_until(lambda: json.loads(labfleet(controller, "message", "--list", "--json").stdout)["messages"][0]["read"],
               timeout=30, what="the message reported read")


def test_a_hint_from_the_catalog_reaches_lab_messages(help_agent, attendee):  # noqa: F811
    controller, _agent, _marker, sock = help_agent
    sent = labfleet(controller, "message", "--node", "vm-lab", "--hint", "ns-uts/rename", "--level", "1")
    assert sent.returncode == 0 and "sent hint to 1 node(s): vm-lab" in sent.stdout, sent.stdout + sent.stderr

    def shown():
        out = attendee_lab(attendee, sock, "messages").stdout
        return out if "hint from " in out else None

    out = wait_until(shown, timeout=30, what="the hint in lab messages")
    assert "for ns-uts/rename: " in out and "UTS namespace" in out
