"""The shared terminal in headless Chromium, on a local-fleet host provisioned for real.

One fleet host is provisioned by `labfleet provision --driver netns` against a TLS controller
(gunicorn + a Celery worker), with the attendee's SSH key. Then, in Debian's chromium:
the attendee signs in with their access code and types in the page's terminal; an instructor
watching sees it; the instructor's keystrokes are refused until the attendee runs
`lab consent yes` on the VM, work after, stop after `lab consent no`; an SSH login of the attendee
lands in the same tmux session; the recording made while the instructor watched replays the same
text. Screenshots in $LABFLEET_WEB_SHOTS. Run under `flock /tmp/labfleet-kernel-tests.lock`.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fleet.conftest import ssh_ok
from tests.processes import REPO, wait_until
from tests.provision.conftest import labfleet
from tests.web.conftest import PASSWORD, shot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

if os.geteuid() != 0:
    pytest.skip("fleet hosts need root", allow_module_level=True)

ATTENDEE = "class"


@pytest.fixture(scope="module")
def fleet1(tmp_path_factory):
    from tests.provision.conftest import running_fleet

    with running_fleet(tmp_path_factory, 1) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def room(tmp_path_factory, fleet1):
    from tests.provision.conftest import provisioning_controller

    (fleet_host,) = fleet1.hosts()
    attendee_key = Path(fleet_host.private_key_path + ".pub").read_text().strip()
    operator_vars = json.dumps({"labfleet_attendee_ssh_keys": [attendee_key]})
    database = f"sqlite:///{tmp_path_factory.mktemp('db') / 'labfleet.sqlite'}"
    with provisioning_controller(tmp_path_factory, database, queue_prefix="lfterm", fleet=fleet1,
                                 extra_env={"LABFLEET_PROVISION_EXTRA_VARS": operator_vars}) as ctl:
        yield ctl


@pytest.fixture(scope="module")
def seated(room, fleet1):
    """The host provisioned, an instructor `ada` with a password, attendee Ada seated with an access code."""
    done = labfleet(room, "provision", "--driver", "netns")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    (host,) = fleet1.hosts()
    wait_until(lambda: room.nodes().get(host.name, {}).get("state") == "online", timeout=60,
               what="the provisioned agent online")
    added = subprocess.run([sys.executable, "-m", "controller.cli.main", "instructor", "add", "ada",
                            "--password-stdin"], input=PASSWORD + "\n", env=room.env(), cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    room.api("POST", "/api/v1/attendees/import", {"csv": "name,email\nAda Lovelace,ada@example.org\n"})
    room.api("POST", "/api/v1/attendees/assign", {"attendee": "ada@example.org", "node": host.name})
    (row,) = room.api("POST", "/api/v1/attendees/credentials", {})["credentials"]
    return host, row["access_code"]


def _page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 700}, ignore_https_errors=True)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    return page


def screen(page) -> str:
    return page.evaluate("window.labfleetTerminal ? window.labfleetTerminal.text() : ''")


def wait_screen(page, text: str, timeout: float = 15) -> None:
    page.wait_for_function("t => window.labfleetTerminal && window.labfleetTerminal.text().includes(t)",
                           arg=text, timeout=timeout * 1000)


def type_in(page, text: str) -> None:
    page.locator("#terminal .xterm-helper-textarea").focus()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def attendee_ssh(host, command: str) -> str:
    """`lab ...` as the attendee over SSH (not a login on a terminal: no tmux)."""
    done = subprocess.run(
        ["ssh", "-i", host.private_key_path, "-o", f"UserKnownHostsFile={host.known_hosts_path}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
         "-p", str(host.ssh_port), f"{ATTENDEE}@{host.address}", command],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_attendee_instructor_consent_ssh_and_replay(room, seated, browser, tmp_path):
    host, code = seated
    base = room.url

    attendee = _page(browser)
    attendee.goto(f"{base}/attendee/terminal")
    attendee.get_by_label("Email").fill("ada@example.org")
    attendee.get_by_label("Access code").fill(code)
    attendee.get_by_role("button", name="Open my machine").click()
    attendee.wait_for_selector("#terminal .xterm-screen")
    attendee.wait_for_function("() => document.getElementById('terminal-state').textContent === 'connected'",
                               timeout=30_000)
    time.sleep(1)  # the shell's first prompt
    type_in(attendee, "echo attendee-says-$((6*7))")
    wait_screen(attendee, "attendee-says-42")
    shot(attendee, "terminal-attendee")

    instructor = _page(browser)
    instructor.goto(f"{base}/login")
    instructor.get_by_label("Name").fill("ada")
    instructor.get_by_label("Password").fill(PASSWORD)
    instructor.get_by_role("button", name="Log in").click()
    instructor.wait_for_url(f"{base}/room*")
    instructor.goto(f"{base}/terminal/{host.name}")
    instructor.wait_for_function("() => document.getElementById('terminal-state').textContent === 'connected'",
                                 timeout=30_000)
    # The attendee sees that someone watches (the banner; tmux's message line shows in the terminal too).
    attendee.wait_for_function("() => document.getElementById('terminal-watchers').textContent.includes('ada')",
                               timeout=10_000)
    wait_screen(attendee, "instructor ada is watching")  # tmux's message line, in the terminal itself

    type_in(attendee, "echo watched-$((2+2))")
    wait_screen(instructor, "watched-4", timeout=5)
    shot(instructor, "terminal-instructor-watching")
    # The watcher's page never answers tmux's terminal queries as if they were typed.
    assert instructor.locator("#terminal-refused").is_hidden()

    # Without consent: refused, nothing reaches the shell.
    type_in(instructor, "echo from-instructor-$((3*3))")
    instructor.wait_for_selector("#terminal-refused:not([hidden])")
    instructor.wait_for_function("() => Number(document.getElementById('terminal').dataset.refused || 0) > 0")
    shot(instructor, "terminal-instructor-refused")
    assert "from-instructor-9" not in screen(attendee)

    assert "may now type" in attendee_ssh(host, "lab consent yes")
    instructor.wait_for_function("() => document.getElementById('terminal').dataset.consent === 'yes'", timeout=10_000)
    type_in(instructor, "echo from-instructor-$((3*3))")
    wait_screen(attendee, "from-instructor-9")
    shot(attendee, "terminal-attendee-after-consent")

    attendee_ssh(host, "lab consent no")
    instructor.wait_for_function("() => document.getElementById('terminal').dataset.consent === 'no'", timeout=10_000)
    type_in(instructor, "echo after-revoke-$((4*4))")
    time.sleep(1.5)
    assert "after-revoke-16" not in screen(attendee)

    # An SSH login of the attendee lands in the same session.
    work = tmp_path / "ssh-terminal"
    work.mkdir()
    sock = str(work / "tmux.sock")
    ssh_cmd = shlex.join(["ssh", "-tt", "-i", host.private_key_path, "-o",
                          f"UserKnownHostsFile={host.known_hosts_path}", "-o", "StrictHostKeyChecking=yes",
                          "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                          "-p", str(host.ssh_port), f"{ATTENDEE}@{host.address}"])
    subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", "new-session", "-d", "-s", "ssh", "-x", "120", "-y", "30",
                    ssh_cmd], check=True, timeout=30)
    try:
        def ssh_screen() -> str:
            return subprocess.run(["tmux", "-S", sock, "capture-pane", "-p", "-t", "ssh"], capture_output=True,
                                  text=True, timeout=30).stdout

        wait_until(lambda: "attendee-says-42" in ssh_screen(), timeout=30, what="the SSH login showing the session")
        subprocess.run(["tmux", "-S", sock, "send-keys", "-t", "ssh", "echo over-ssh-$((5*5))", "Enter"],
                       check=True, timeout=30)
        wait_screen(attendee, "over-ssh-25")
        assert ssh_ok(host, "runuser -u class -- tmux -L labfleet list-sessions -F '#S'").split() == ["lab"]
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True, timeout=30)
    shot(attendee, "terminal-attendee-ssh-same-session")

    # The instructor leaves: the recording of their watch replays the same text.
    instructor.goto(f"{base}/terminal/{host.name}/recordings")
    instructor.locator(".recordings a").first.click()
    instructor.wait_for_selector("#replay")
    instructor.wait_for_selector(".ap-wrapper, .ap-player", timeout=15_000)
    instructor.wait_for_function("() => document.getElementById('replay').innerText.includes('from-instructor-9')",
                                 timeout=30_000)
    shot(instructor, "terminal-replay")
    audit = room.api("GET", "/api/v1/audit?limit=200")
    actions = {e["action"] for e in audit["entries"]}
    assert {"terminal.watch", "terminal.consent", "terminal.type", "terminal.consent_revoked",
            "terminal.replay"} <= actions, actions
    assert not [e for e in attendee.console_errors if "WebSocket" not in e], attendee.console_errors
