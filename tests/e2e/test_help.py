"""`lab help` through the whole system: the attendee's `lab` on the real socket → the real agent → the
controller's help queue → the instructor's claim and reply → a help.notice command → `lab status`, the
root-written notice file and the attendee's prompt hook."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.e2e.test_labs import _lab_agent, attendee_lab, write_two_step_lab
from tests.processes import REPO, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent's labs act on the kernel as root")

HELP_HOOK = REPO / "playbooks" / "roles" / "node_agent" / "files" / "labfleet-help.sh"


@pytest.fixture
def help_agent(controller, attendee, tmp_path):
    yield from _lab_agent(controller, attendee, tmp_path, write_two_step_lab)


def as_attendee(attendee, *argv, env=None):
    return subprocess.run(["setpriv", f"--reuid={attendee.uid}", f"--regid={attendee.gid}", "--clear-groups", "--",
                           *argv], capture_output=True, text=True, timeout=60, env=env)


def prompt_once(attendee, home: Path, notice: Path) -> str:
    """The attendee's interactive bash with the prompt hook: what it prints over a few prompts."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LABFLEET_HELP_NOTICE": str(notice), "PS1": "$ "}
    # A copy the attendee can read: the clone may sit under a 0700 folder such as /root.
    hook = home / HELP_HOOK.name
    shutil.copyfile(HELP_HOOK, hook)
    hook.chmod(0o644)
    shell = subprocess.run(["setpriv", f"--reuid={attendee.uid}", f"--regid={attendee.gid}", "--clear-groups", "--",
                            "bash", "--noprofile", "--norc", "-i"], input=f". {hook}\n:\n:\nexit\n",
                           capture_output=True, text=True, timeout=60, env=env, cwd=home)
    assert shell.returncode == 0, shell.stderr
    return shell.stdout


def test_a_raised_hand_reaches_the_instructor_and_the_answer_comes_back_to_the_attendee(help_agent, attendee,
                                                                                       request):
    controller, _agent, marker, sock = help_agent
    assert attendee_lab(attendee, sock, "use", "two-step").returncode == 0
    failed = attendee_lab(attendee, sock, "check")
    assert failed.returncode != 0 and "is missing" in failed.stdout

    raised = attendee_lab(attendee, sock, "help", "which folder is the marker in?")
    assert raised.returncode == 0, raised.stdout + raised.stderr
    assert "Your hand is up about two-step/make" in raised.stdout

    # The instructor's queue: the node comes from the agent's token, where the attendee is from the agent.
    (hand,) = controller.api("GET", "/api/v1/help")["requests"]
    assert (hand["node"], hand["lab"], hand["step"], hand["state"]) == ("vm-lab", "two-step", "make", "open")
    assert hand["reason"] == f"{marker} is missing"  # the last check's reason, added by the agent
    assert hand["message"] == "which folder is the marker in?" and hand["source"] != "stuck"

    claimed = controller.api("POST", f"/api/v1/help/{hand['id']}/claim", {})
    instructor = claimed["claimed_by"]
    controller.api("POST", f"/api/v1/help/{hand['id']}/reply", {"text": "look in /tmp\x1b[2J (ls -l)"})

    def answered():
        out = attendee_lab(attendee, sock, "status").stdout
        return out if "look in /tmp" in out else None

    status = wait_until(answered, timeout=30, what="the instructor's reply in the attendee's lab status")
    assert "Help request: claimed" in status and f"{instructor} is coming to help you." in status
    assert f"{instructor}: look in /tmp\\x1b[2J (ls -l)" in status and "\x1b" not in status

    # The notice file: root's, beside the socket in root's folder, one escaped line the attendee may only read.
    notice = sock.parent / "help-notice"
    info, folder = os.lstat(notice), os.stat(sock.parent)
    assert stat.S_ISREG(info.st_mode) and info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o644
    assert folder.st_uid == 0 and not folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    serial, line = notice.read_text().rstrip("\n").split("\t")
    assert serial.startswith(hand["id"][:8]) and line == f"{instructor}: look in /tmp\\x1b[2J (ls -l)"
    assert as_attendee(attendee, "ln", "-sf", "/etc/shadow", str(notice)).returncode != 0
    assert as_attendee(attendee, "sh", "-c", f"echo planted > {notice}").returncode != 0

    # The attendee's next prompt shows the answer once; a second terminal does not repeat it.
    home = Path(tempfile.mkdtemp(prefix="lf-e2e-home-"))  # tmp_path is root's 0700: the attendee cannot enter it
    request.addfinalizer(lambda: shutil.rmtree(home, ignore_errors=True))
    os.chown(home, attendee.uid, attendee.gid)
    assert prompt_once(attendee, home, notice) == f"[lab help] {instructor}: look in /tmp\\x1b[2J (ls -l)\n"
    assert prompt_once(attendee, home, notice) == ""

    controller.api("POST", f"/api/v1/help/{hand['id']}/resolve", {})
    wait_until(lambda: "Help request: resolved" in attendee_lab(attendee, sock, "status").stdout, timeout=30,
               what="the resolution in lab status")
    assert prompt_once(attendee, home, notice) == f"[lab help] {instructor} marked your help request resolved.\n"
    assert controller.api("GET", "/api/v1/help")["requests"] == []
