"""The attendee's session ceiling and the instructor's messages, on real local fleet hosts over real SSH.

Three fleet hosts; site.yml provisions host 1 (with a small pids ceiling so the
drill stays light on a shared machine); hosts 2 and 3 are the neighbours that
must not notice anything. One story, in file order:

- a message to host 1 reaches the attendee's prompt after an agent restart
  (kept on disk until read), then `lab messages` has nothing new and the
  controller lists it as read; a message to --all reaches `lab status`;
  every send is audited, and the instructor's control characters never reach
  the terminal;
- the fork-bomb drill: an unbounded fork bomb typed by the attendee over SSH,
  outside any lab cgroup, is held by the session ceiling; host 1's agent keeps
  reporting (its report says the ceiling was hit), the stuck rules flag it with
  the reason, hosts 2 and 3 are untouched; the test then kills the bomb through
  its cgroup.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.db import Database
from controller.fleet import cgroups as fleet_cgroups
from controller.stuck import store as stuck_store
from controller.stuck.rules import Rules
from tests.fleet.conftest import leftovers, new_fleet
from tests.playbooks.conftest import (
    BridgeController,
    Room,
    build_wheel,
    close_ssh_masters,
    make_catalog,
    password_hash,
    write_inventory,
)
from tests.processes import REPO, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ATTENDEE = "class"
SUPERVISOR = "/usr/local/sbin/labfleet-agent-supervisor"
PIDS_MAX = 48
BOMB_SECONDS = 6  # how long the bomb runs before the test kills it (the drill is bounded in time)


class Drill(Room):
    neighbours: list = []
    db_url: str = ""


@pytest.fixture(scope="module")
def drill(tmp_path_factory) -> Iterator[Drill]:
    work = tmp_path_factory.mktemp("ceiling")
    fleet = new_fleet(work / "fleet")
    controller = None
    try:
        hosts = fleet.up(3)
        db_url = f"sqlite:///{work / 'labfleet.sqlite'}"
        controller = BridgeController(work / "controller", db_url, "",
                                      extra_env={"LABFLEET_HOST": fleet.bridge_address})
        controller.bridge = fleet.bridge_address
        controller.data_dir.mkdir()
        controller.init(enroll_uses=5)
        controller.start_web()
        inventory = work / "inventory.yml"
        write_inventory(inventory, hosts[0])
        extra_vars = {
            "labfleet_controller_url": controller.url,
            "labfleet_ca_pem": controller.ca_file.read_text(),
            "labfleet_enroll_token": controller.enrollment_token,
            "labfleet_agent_wheel": str(build_wheel(work / "dist")),
            "labfleet_labs_src": str(make_catalog(work / "catalog")),
            "labfleet_stage_dir": str(work / "stage"),
            "labfleet_attendee_ssh_keys": [Path(hosts[0].private_key_path + ".pub").read_text().strip()],
            "labfleet_attendee_password_hash": password_hash("labfleet-test-password"),
            "labfleet_session_pids_max": PIDS_MAX,
            "labfleet_session_memory_max": "1G",
        }
        room = Drill(fleet, hosts[0], controller, inventory, extra_vars, work)
        room.neighbours = hosts[1:]
        room.db_url = db_url
        yield room
    finally:
        close_ssh_masters(work / "cp")
        if controller is not None:
            controller.stop()
        fleet.down()
    assert leftovers(fleet) == []


@pytest.fixture(scope="module")
def provisioned(drill: Drill):
    result = drill.play("site.yml")
    assert result.rc == 0 and result.stats["failures"] == 0, result.explain()
    wait_until(lambda: drill.controller.nodes().get(drill.host.name, {}).get("state") == "online", timeout=90,
               what="host 1's agent online")
    return result


def labfleet(room: Room, *args: str) -> subprocess.CompletedProcess:
    env = {**room.controller.env(), "LABFLEET_URL": room.controller.url, "LABFLEET_TOKEN": room.controller.api_token}
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def ssh_argv(room: Room, host, user: str, *extra: str) -> list[str]:
    return ["ssh", "-i", host.private_key_path, "-o", f"UserKnownHostsFile={host.known_hosts_path}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", "ControlMaster=no", "-o", "ControlPath=none", *extra, f"{user}@{host.address}"]


def attendee_prompt(room: Room) -> str:
    """The attendee's interactive login bash over SSH (profile and prompt hook included), two prompts."""
    shell = subprocess.run([*ssh_argv(room, room.host, ATTENDEE), "bash -li"], input=":\n:\nexit\n",
                           capture_output=True, text=True, timeout=60)
    assert shell.returncode == 0, shell.stderr
    return shell.stdout


def attendee_lab(room: Room, *args: str) -> subprocess.CompletedProcess:
    return room.ssh("lab " + " ".join(args), user=ATTENDEE, timeout=60)


def node_view(room: Room) -> dict:
    return room.controller.api("GET", f"/api/v1/nodes/{room.host.name}")


def test_a_message_is_kept_across_an_agent_restart_and_shown_once_on_the_next_prompt(drill: Drill, provisioned):
    sent = labfleet(drill, "message", "--node", drill.host.name, "--json", "coffee is ready\x1b[31m in the hall")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    (row,) = json.loads(sent.stdout)["messages"]
    # The agent has it (its notice line is up) before it restarts.
    wait_until(lambda: "msg-" in drill.sh("cat /run/labfleet-agent/help-notice 2>/dev/null; true"), timeout=30,
               what="the message on host 1")
    before = drill.sh(f"{SUPERVISOR} status")
    drill.sh(f"{SUPERVISOR} restart")
    assert drill.sh(f"{SUPERVISOR} status") != before
    wait_until(lambda: drill.controller.nodes()[drill.host.name]["state"] == "online", timeout=60,
               what="the restarted agent online")

    shown = attendee_prompt(drill)
    assert "[lab message] message from " in shown and "coffee is ready[31m in the hall" in shown, shown
    assert "\x1b" not in shown
    assert "coffee is ready" not in attendee_prompt(drill)  # shown once: it is read now
    nothing = attendee_lab(drill, "messages")
    assert nothing.returncode == 0 and "No new messages." in nothing.stdout, nothing.stdout + nothing.stderr
    # The agent reports it read: the controller no longer lists it as unread.
    wait_until(lambda: labfleet(drill, "message", "--list", "--json").stdout.count('"read": true') == 1,
               timeout=30, what="the message reported read")
    listed = json.loads(labfleet(drill, "message", "--list", "--json").stdout)["messages"]
    assert [(m["id"], m["read"]) for m in listed] == [(row["id"], True)]


def test_a_message_to_the_room_reaches_lab_status_and_every_send_is_audited(drill: Drill, provisioned):
    sent = labfleet(drill, "message", "--all", "the lab closes at 17:00")
    assert sent.returncode == 0 and "sent message to 1 node(s)" in sent.stdout, sent.stdout + sent.stderr
    assert attendee_lab(drill, "use", "ns-uts").returncode == 0

    def in_status():
        out = attendee_lab(drill, "status").stdout
        return out if "the lab closes at 17:00" in out else None

    status = wait_until(in_status, timeout=30, what="the room's message in lab status")
    assert "Messages:" in status
    entries = drill.controller.api("GET", "/api/v1/audit?action=message.send")["entries"]
    assert len(entries) == 2 and {e["detail"]["node"] for e in entries} == {drill.host.name}
    assert all(e["actor"].startswith("instructor:") for e in entries)


def _host_procs(host) -> dict[int, str]:
    found = {}
    for root in fleet_cgroups.hierarchies():
        for pid in fleet_cgroups.pids(root / host.cgroup_parent):
            try:
                found[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                pass
    return found


def _cg(*parts: str) -> Path:
    return Path("/sys/fs/cgroup", *parts)


def test_a_fork_bomb_outside_the_labs_is_held_by_the_session_ceiling(drill: Drill, provisioned):
    sessions = drill.host.session_cgroup
    agent_toml = drill.sh("cat /etc/labfleet-agent/agent.toml")
    assert f'session_cgroup = "{sessions}"' in agent_toml
    neighbours_before = {h.name: _host_procs(h) for h in drill.neighbours}
    agent_pid = drill.sh(f"{SUPERVISOR} status").split()[1]

    bomb = subprocess.Popen([*ssh_argv(drill, drill.host, ATTENDEE), "bash -c ':(){ :|:& };:'"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        events = _cg("pids", sessions, "pids.events")
        wait_until(lambda: int(events.read_text().split()[1]) > 0, timeout=60,
                   what="the fork bomb at the session's pids ceiling")
        started = time.monotonic()
        # Held: never more than the ceiling, while the bomb keeps trying.
        while time.monotonic() - started < BOMB_SECONDS:
            assert int(_cg("pids", sessions, "pids.current").read_text()) <= PIDS_MAX
            time.sleep(0.5)
        # Host 1's agent keeps reporting during the bomb: its report says the ceiling was hit.
        def reported():
            session = (node_view(drill).get("state_snapshot") or {}).get("session") or {}
            return session if session.get("pids_hits", 0) > 0 else None

        session = wait_until(reported, timeout=60, what="host 1's agent reporting the ceiling hit")
        assert session["pids_max"] == PIDS_MAX and session["last_hit_at"] and session["cgroup"] == sessions
        assert drill.sh(f"{SUPERVISOR} status").split()[1] == agent_pid  # the same agent, never restarted
        # The stuck rules turn it into a flag with the reason.
        database = Database(drill.db_url)
        try:
            with database.session() as db_session:
                stuck_store.run_pass(db_session, Rules(), labs_dir=drill.work / "catalog")
        finally:
            database.dispose()
        (flag,) = [s for s in drill.controller.api("GET", "/api/v1/stuck")["stuck"] if s["node"] == drill.host.name]
        assert f"hit its pids ceiling of {PIDS_MAX} processes" in flag["reason"] and "fork bomb" in flag["reason"]
        listed = labfleet(drill, "help", "list")
        assert drill.host.name in listed.stdout and "pids ceiling" in listed.stdout, listed.stdout
    finally:
        # Killed through its cgroup: cgroup.kill of the session group (cgroup2), and the ssh client.
        kill = _cg("unified", sessions, "cgroup.kill")
        if not kill.exists():
            kill = _cg(sessions, "cgroup.kill")
        kill.write_text("1")
        bomb.kill()
        bomb.wait(timeout=30)
    wait_until(lambda: not _cg("pids", sessions, "cgroup.procs").read_text().split(), timeout=60,
               what="the bomb gone from the session group")
    # Host 1 is fine: ssh, its agent still the same process and online.
    assert drill.sh("echo up").strip() == "up"
    assert drill.sh(f"{SUPERVISOR} status").split()[1] == agent_pid
    assert drill.controller.nodes()[drill.host.name]["state"] == "online"
    # Hosts 2 and 3 were untouched: the same processes, and they answer.
    for host in drill.neighbours:
        assert _host_procs(host) == neighbours_before[host.name], host.name
        answer = subprocess.run([*ssh_argv(drill, host, host.ssh_user), "echo up"], capture_output=True, text=True,
                                timeout=30)
        assert answer.stdout.strip() == "up", answer.stderr
