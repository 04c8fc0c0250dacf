"""site.yml and teardown.yml over real SSH against a local fleet host (see conftest.py for why a fleet host).

One story, in file order on one host: a bare host becomes a lab VM whose agent
enrolls with a real controller in a handful of tasks; a second run changes
nothing; check mode reports drift without touching it; a run repairs drift (a removed setting, tampered lab and
agent files); the supervisor restarts a killed agent; teardown leaves the host as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib

import pytest

from tests.playbooks.conftest import FLAGGED_LAB, MISSING_PROGRAM, Room
from tests.processes import REPO, wait_until

# The first test also pays for the module's fixtures (fleet host, wheel, controller, the first
# site.yml run): on a loaded 2-core machine that alone has taken over 300 s, the suite's default.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ATTENDEE = "class"
SUPERVISOR = "/usr/local/sbin/labfleet-agent-supervisor"
# Everything site.yml adds to a host; teardown.yml must leave none of it.
ADDED_PATHS = ["/opt/labfleet-agent", "/etc/labfleet-agent", "/var/lib/labfleet-agent", "/var/log/labfleet-agent",
               "/usr/share/labfleet", SUPERVISOR, "/usr/local/bin/lab", "/usr/local/sbin/labfleet-readiness",
               "/usr/local/sbin/labfleet-provisioned", "/etc/sudoers.d/labfleet-attendee", f"/home/{ATTENDEE}",
               "/etc/profile.d/labfleet-help.sh", "/etc/profile.d/labfleet-terminal.sh",
               "/usr/local/sbin/labfleet-session-join"]
# Run inside the host: pids of every process whose command line mentions the agent. The name is
# split so that this script's own command line does not match.
AGENT_PIDS = ("python3 -c \"import os; n = 'labfleet' + '-agent'; print(' '.join(p for p in os.listdir('/proc') "
              "if p.isdigit() and os.path.exists('/proc/'+p+'/cmdline') and "
              "n in open('/proc/'+p+'/cmdline').read()))\"")


def snapshot(room: Room) -> dict:
    present = room.sh("for p in " + " ".join(ADDED_PATHS) + "; do [ -e \"$p\" ] && echo \"$p\"; done; true")
    return {"paths": present.split(), "users": set(room.sh("cut -d: -f1 /etc/passwd").split()),
            "groups": set(room.sh("cut -d: -f1 /etc/group").split()), "agent_pids": room.sh(AGENT_PIDS).split()}


@pytest.fixture(scope="module")
def before(room: Room) -> dict:
    state = snapshot(room)
    assert state["paths"] == [] and ATTENDEE not in state["users"] and state["agent_pids"] == [], \
        f"the fleet host is not bare: {state}"
    return state


@pytest.fixture(scope="module")
def provisioned(room: Room, before: dict):
    return room.play("site.yml")


def supervised_agent_pids(room: Room) -> list[str]:
    status = room.sh(f"{SUPERVISOR} status").split()
    assert status[0] == "running", status
    return room.sh(f"cat /proc/{status[1]}/task/{status[1]}/children").split()


def test_site_yml_turns_a_bare_host_into_a_lab_vm(room: Room, provisioned):
    result = provisioned
    assert result.rc == 0 and result.stats["failures"] == 0 and result.stats["unreachable"] == 0, result.explain()

    # The agent's venv sees Debian's libseccomp bindings next to the agent installed from the wheel.
    room.sh("/opt/labfleet-agent/venv/bin/python -c 'import seccomp, node_agent.labs'")
    config = tomllib.loads(room.sh("cat /etc/labfleet-agent/agent.toml"))
    assert config["controller_url"] == room.controller.url and config["name"] == room.host.name
    assert config["lab_cgroup_parent"] == room.host.lab_cgroup_parent and config["attendee_user"] == ATTENDEE
    # TLS: the controller's CA is installed and pinned; plain HTTP was not allowed.
    assert config["controller_url"].startswith("https://") and "insecure_http" not in config
    assert config["ca_file"] == "/etc/labfleet-agent/ca.pem"
    assert room.sh("cat /etc/labfleet-agent/ca.pem") == room.extra_vars["labfleet_ca_pem"]
    assert room.sh("stat -c '%a %U' /etc/labfleet-agent/ca.pem").split() == ["644", "root"]
    assert room.sh("stat -c '%a %U' /etc/labfleet-agent/env").split() == ["600", "root"]
    # The agent enrolled before the play ended, and no token stayed on the VM.
    assert room.sh("test -s /var/lib/labfleet-agent/credentials.json && echo enrolled").strip() == "enrolled"
    assert "LABFLEET_AGENT_ENROLL_TOKEN" not in room.sh("cat /etc/labfleet-agent/env")
    assert room.controller.enrollment_token not in room.sh("cat /etc/labfleet-agent/agent.toml")
    assert room.controller.enrollment_token not in json.dumps(result.tasks), "the token leaked into Ansible's output"

    # Kept running by the supervisor (the fleet host has no systemd), enrolled and online.
    assert len(supervised_agent_pids(room)) == 1
    nodes = wait_until(lambda: room.controller.nodes().get(room.host.name, {}).get("state") == "online"
                       and room.controller.nodes(), timeout=60, what="the provisioned agent online")
    assert nodes[room.host.name]["address"] == room.host.address

    # The attendee logs in with their key and has sudo.
    assert room.sh("id -un", user=ATTENDEE).strip() == ATTENDEE
    assert room.sh("sudo -n id -u", user=ATTENDEE).strip() == "0"
    assert room.sh("stat -c %a /etc/sudoers.d/labfleet-attendee").strip() == "440"
    # The README's `lab` works in the attendee's login shell: on its PATH, not only in the agent's venv.
    lab = room.ssh("bash -lc 'command -v lab && lab list'", user=ATTENDEE)
    assert lab.returncode == 0 and lab.stdout.splitlines()[0] == "/usr/local/bin/lab", lab.stdout + lab.stderr
    assert "ns-uts" in lab.stdout
    # The prompt hook for `lab help` answers: root's, readable, and hooked into the attendee's interactive bash.
    assert room.sh("stat -c '%a %U' /etc/profile.d/labfleet-help.sh").split() == ["644", "root"]
    hooked = room.ssh("bash -lic 'echo \"$PROMPT_COMMAND\"'", user=ATTENDEE)
    assert "__labfleet_help_notice" in hooked.stdout, hooked.stdout + hooked.stderr
    password_hash = room.extra_vars["labfleet_attendee_password_hash"]
    assert room.sh(f"getent shadow {ATTENDEE}").split(":")[1] == password_hash
    assert password_hash not in json.dumps(result.tasks), "the password hash leaked into Ansible's output"

    # The catalog as given, and the staged root fs, byte for byte.
    catalog = sorted(p.name for p in (room.work / "catalog").iterdir() if not p.name.startswith("."))
    assert sorted(room.sh("ls /usr/share/labfleet/labs").split()) == catalog
    staged = next((room.work / "stage").glob("rootfs-*.tar.gz"))
    assert room.sh("sha256sum /usr/share/labfleet/rootfs.tar.gz").split()[0] == \
        hashlib.sha256(staged.read_bytes()).hexdigest()
    assert "bin/sh" in room.sh("tar -tzf /usr/share/labfleet/rootfs.tar.gz").split()

    # Readiness: kernel facts, and the lab this host cannot run is flagged without failing the host.
    report = json.loads(room.sh("cat /var/lib/labfleet-agent/readiness.json"))
    assert report["kernel"] == os.uname().release
    assert report["cgroup"]["layout"] in ("v1", "v2", "hybrid") and report["libseccomp"]["python_bindings"]
    assert {"mnt", "pid", "net", "user", "uts", "ipc", "cgroup"} <= set(report["namespaces"])
    assert report["labs"][FLAGGED_LAB] == {"ready": False,
                                          "missing": [f"the program {MISSING_PROGRAM} is not installed"]}
    assert report["labs"]["ns-uts"] == {"ready": True, "missing": []}
    assert FLAGGED_LAB in report["not_ready"] and report["ready"] is False
    messages = result.messages()
    assert any(m.startswith(f"NOT READY: {room.host.name}") for m in messages), messages
    assert any(FLAGGED_LAB in m and MISSING_PROGRAM in m for m in messages), messages


def host_processes(room: Room) -> dict[str, str]:
    """The host's own PID 1, its sshd and its agent: pid -> comm, as the host sees them."""
    sshd = room.sh("cat /proc/1/task/1/children").split()
    agent = supervised_agent_pids(room)
    return {pid: room.sh(f"cat /proc/{pid}/comm").strip() for pid in ["1", *sshd, *agent]}


def labfleet(room: Room, *args: str) -> subprocess.CompletedProcess:
    env = {**room.controller.env(), "LABFLEET_URL": room.controller.url, "LABFLEET_TOKEN": room.controller.api_token}
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_resets_on_the_host_are_clean_and_spare_the_host(room: Room, provisioned):
    """The host's init, sshd, agent and the attendee's login shell are the host, not lab residue."""
    before = host_processes(room)
    assert before["1"] == "labfleet-init" and "sshd" in before.values(), before
    # The host's processes sit in its system group; its labs have a subtree of their own beside it.
    assert f"/{room.host.cgroup_parent}/system" in room.sh("cat /proc/1/cgroup")
    assert room.host.lab_cgroup_parent == f"{room.host.cgroup_parent}/labs"

    # The attendee, in a login shell over SSH, through the agent's socket.
    lab = "/opt/labfleet-agent/venv/bin/lab"
    own = room.ssh(f"bash -lc '{lab} use ns-uts && {lab} reset'", user=ATTENDEE, timeout=120)
    assert own.returncode == 0 and "INCOMPLETE" not in own.stdout, own.stdout + own.stderr
    assert "clean" in own.stdout, own.stdout

    # The instructor, through the controller.
    by_instructor = labfleet(room, "reset", "ns-uts", "--all", "--json")
    assert by_instructor.returncode == 0, by_instructor.stdout + by_instructor.stderr
    (command,) = json.loads(by_instructor.stdout)["commands"]
    output = command["result"]["output"]
    assert output["clean"] is True and output["leftovers"] == [], output

    # Nothing of the host was killed on the way.
    after = host_processes(room)
    assert {pid: comm for pid, comm in before.items() if pid in after} == before, (before, after)


CONVERGE = "Converge the lab VM (packages, account, catalog, agent, readiness)"


def test_a_second_run_changes_nothing(room: Room, provisioned):
    # A first run is a handful of tasks per host (each costs the controller, whatever it does).
    assert len([name for name, result in provisioned.tasks if not result.get("skipped")]) <= 8, provisioned.tasks
    supervisor_before = room.sh(f"{SUPERVISOR} status")
    again = room.play("site.yml")
    assert again.rc == 0 and again.stats["changed"] == 0, again.explain()
    # The host was checked, not skipped: the same step ran and found nothing to change.
    assert again.ran(CONVERGE) and "nothing to change" in again.messages(), again.explain()
    assert any(m.startswith(f"NOT READY: {room.host.name}") for m in again.messages())
    # "Start unless it runs" found it running: the same supervisor, still one agent.
    assert room.sh(f"{SUPERVISOR} status") == supervisor_before and len(supervised_agent_pids(room)) == 1


def test_check_mode_reports_drift_and_changes_nothing(room: Room, provisioned):
    room.sh("rm /etc/labfleet-agent/agent.toml")
    checked = room.play("site.yml", "--check", "--diff")
    assert checked.rc == 0 and CONVERGE in checked.changed_tasks, checked.explain()
    assert any("/etc/labfleet-agent/agent.toml: written" in m for m in checked.messages()), checked.messages()
    assert room.sh("test -e /etc/labfleet-agent/agent.toml || echo absent").strip() == "absent"
    room.play("site.yml")


def test_a_run_repairs_drift(room: Room, provisioned):
    room.sh("rm /etc/labfleet-agent/agent.toml")
    before_pids = supervised_agent_pids(room)

    repaired = room.play("site.yml")
    assert repaired.rc == 0, repaired.explain()
    assert CONVERGE in repaired.changed_tasks
    changes = [m for m in repaired.messages() if m.startswith("changed: ")]
    assert changes and "/etc/labfleet-agent/agent.toml: written" in changes[0], repaired.messages()
    assert "agent restarted (supervisor)" in changes[0], changes
    assert tomllib.loads(room.sh("cat /etc/labfleet-agent/agent.toml"))["name"] == room.host.name
    assert supervised_agent_pids(room) != before_pids


def test_a_run_puts_back_tampered_lab_and_agent_files(room: Room, provisioned):
    # A second run stats what it installed (the catalog, the agent's venv) instead of reading it all;
    # a file whose bytes changed is still found and put back, and the agent restarts on its own code.
    lab_file = "/usr/share/labfleet/labs/README.md"
    agent_file = room.sh("ls -d /opt/labfleet-agent/venv/lib/python3*/site-packages").strip() + "/node_agent/__init__.py"
    original = room.sh(f"sha256sum {lab_file} {agent_file}")
    room.sh(f"echo 'tampered' >> {lab_file}; echo '# tampered' >> {agent_file}; "
            "echo 'x = 1' > /usr/share/labfleet/labs/ns-pid/dropped_in.py")
    before_pids = supervised_agent_pids(room)

    repaired = room.play("site.yml")
    assert repaired.rc == 0 and CONVERGE in repaired.changed_tasks, repaired.explain()
    changes = [m for m in repaired.messages() if m.startswith("changed: ")]
    assert changes and "/usr/share/labfleet/labs: unpacked again" in changes[0], repaired.messages()
    assert "agent reinstalled from labfleet-" in changes[0] and "agent restarted (supervisor)" in changes[0], changes
    assert room.sh(f"sha256sum {lab_file} {agent_file}") == original
    assert room.sh("test -e /usr/share/labfleet/labs/ns-pid/dropped_in.py || echo absent").strip() == "absent"
    assert supervised_agent_pids(room) != before_pids

    clean = room.play("site.yml")
    assert clean.rc == 0 and clean.stats["changed"] == 0 and "nothing to change" in clean.messages(), clean.explain()


def test_a_run_puts_back_a_removed_lab_command(room: Room, provisioned):
    room.sh("rm /usr/local/bin/lab")
    repaired = room.play("site.yml")
    assert repaired.rc == 0, repaired.explain()
    assert any("/usr/local/bin/lab: linked" in m for m in repaired.messages()), repaired.messages()
    assert room.sh("readlink /usr/local/bin/lab").strip() == "/opt/labfleet-agent/venv/bin/lab"


def test_the_supervisor_restarts_a_killed_agent(room: Room, provisioned):
    (victim,) = supervised_agent_pids(room)
    room.sh(f"kill -KILL {victim}")
    pids = wait_until(lambda: (p := supervised_agent_pids(room)) and p != [victim] and p, timeout=30,
                      what="a new agent process under the supervisor")
    assert len(pids) == 1
    node_id = room.controller.nodes()[room.host.name]["id"]
    wait_until(lambda: room.controller.nodes()[room.host.name]["state"] == "online", timeout=60,
               what="the restarted agent online")
    # Restarted from an env file without a token: it kept its credentials and its node.
    assert room.controller.nodes()[room.host.name]["id"] == node_id


@pytest.mark.parametrize("bad, named", [
    ({"labfleet_attendee_password_hash": "hunter2-in-clear"}, "labfleet_attendee_password_hash"),
    ({"labfleet_controller_url": "controller:8300"}, "labfleet_controller_url"),
    ({"labfleet_controller_url": "http://controller:8300"}, "is plain HTTP"),
    ({"labfleet_labs_src": "/nonexistent/labs"}, "labfleet_labs_src"),
])
def test_bad_variables_are_refused_by_name_before_anything_changes(room: Room, provisioned, bad, named):
    config_before = room.sh("cat /etc/labfleet-agent/agent.toml")
    result = room.play("site.yml", **bad)
    assert result.rc != 0 and result.stats.get("changed", 0) == 0, result.explain()
    assert any(named in message for message in result.failed_tasks), result.failed_tasks
    assert "hunter2-in-clear" not in json.dumps(result.tasks)
    assert room.sh("cat /etc/labfleet-agent/agent.toml") == config_before


def test_teardown_leaves_the_host_as_before(room: Room, provisioned, before: dict):
    result = room.play("teardown.yml")
    assert result.rc == 0 and result.stats["failures"] == 0 and result.stats["changed"] > 0, result.explain()

    after = snapshot(room)
    assert after["paths"] == [] and after["agent_pids"] == []
    assert ATTENDEE not in after["users"] and ATTENDEE not in after["groups"]
    # Nothing else was removed. (The host's lower layer is this machine's root: a user another
    # engineer's test removed from the machine meanwhile is not teardown's doing.)
    with open("/etc/passwd") as f:
        machine_users = {line.split(":", 1)[0] for line in f}
    assert (before["users"] & machine_users) - after["users"] == set()
    assert room.ssh(f"id {ATTENDEE}").returncode != 0

    again = room.play("teardown.yml")
    assert again.rc == 0 and again.stats["changed"] == 0, again.explain()
