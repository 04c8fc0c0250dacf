"""ns-net-1 and ns-net-2 on the real kernel: walkthroughs as the attendee, solves, resets, leaks, cheats.

The namespaces carry the test's unique lab prefix (``lab_env.prefix``), so concurrent tests never
meet; the only traffic is the agent's probe and the walkthrough's client, between the two
namespaces the lab created (10.11.12.0/24 and 10.11.13.0/24 exist nowhere else).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from node_agent.kernel import links, netns
from tests.labs.conftest import LabEnv
from tests.labs.helpers import kill_quietly, wait_for

NET1, NET2 = "ns-net-1", "ns-net-2"
STEPS = ("namespaces", "veth", "server")


@pytest.fixture
def env(lab_env: LabEnv):
    """The lab env, plus a guard: whatever the test left in its namespaces is killed and unmounted by name."""
    started: list[subprocess.Popen] = []
    lab_env.started = started
    yield lab_env
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    own = netns.ns_inode("self")
    others = {e.inode for e in netns.named_netns() if not e.name.startswith(lab_env.prefix)}
    for entry in netns.named_netns():
        # Never the host's own namespace (a test binds it under a lab name), never one named elsewhere.
        if entry.name.startswith(lab_env.prefix) and entry.inode and entry.inode != own and entry.inode not in others:
            held = netns.holders(entry.inode)
            for pid in held.pids + [h.pid for h in held.fds]:
                kill_quietly(pid)
            for mount in held.mounts:
                if mount.mount_point != str(entry.path):
                    subprocess.run(["nsenter", "-t", str(mount.pid), "-m", "umount", "-l", mount.mount_point],
                                   capture_output=True)


def as_attendee(env: LabEnv, script: str) -> subprocess.CompletedProcess:
    """A bash script as the attendee (sudo allowed, as on a lab VM), with the lab's LAB_* environment."""
    return env.as_attendee("set -euo pipefail\n" + textwrap.dedent(script), NET2)


def step_result(out: dict, step: str) -> dict:
    return next(s for s in out["steps"] if s["step"] == step)


def inodes(env: LabEnv) -> dict[str, int]:
    return {e.name: e.inode for e in netns.named_netns() if e.name.startswith(env.prefix)}


def assert_gone(env: LabEnv, lab: str, report: dict, old_inodes: dict[str, int] | None = None) -> None:
    """Reset reported clean, the residue scan finds nothing, and no holder keeps an old namespace alive."""
    assert report["clean"], report["leftovers"]
    assert env.residue(lab) == []
    assert inodes(env) == {}
    for name, inode in (old_inodes or {}).items():
        assert not netns.holders(inode), f"{name} ({inode}) is still held: {netns.holders(inode).describe()}"


# --- ns-net-1 -------------------------------------------------------------------------------------

def test_net1_walkthrough_passes_and_reset_leaves_nothing(env):
    engine = env.engine
    before = engine.check(NET1)
    assert before["status"] == "failed"
    assert "None of your processes is in a new network namespace" in before["steps"][0]["reason"]

    env.run_walkthrough(NET1, "isolated")
    after = engine.check(NET1)
    assert after["passed"], after
    evidence = after["steps"][0]["evidence"]
    assert evidence["devices"] == ["lo"]
    assert evidence["net_ns"] != netns.ns_inode("self") and evidence["user_ns"] != netns.ns_inode("self", "user")
    assert os.stat(f"/proc/{evidence['pid']}").st_uid == env.attendee.uid

    report = engine.reset(NET1)
    assert_gone(env, NET1, report)
    assert engine.check(NET1)["status"] == "failed"


def test_net1_solve_passes_and_reset_leaves_nothing(env):
    out = env.engine.solve(NET1)
    assert out["passed"], out
    assert_gone(env, NET1, env.engine.reset(NET1))
    assert env.engine.check(NET1)["status"] == "failed"


def test_net1_a_namespace_with_more_than_lo_does_not_pass(env):
    env.started.append(subprocess.Popen(
        env.attendee_argv("unshare", "--user", "--map-root-user", "--net", "sh", "-c",
                          "ip link add lfbr0 type bridge && echo ready && exec sleep 60"),
        stdout=subprocess.PIPE, start_new_session=True))
    assert env.started[-1].stdout.readline().strip() == b"ready"

    result = env.engine.check(NET1)["steps"][0]

    assert result["status"] == "failed"
    assert "more than lo: lfbr0" in result["reason"]
    assert_gone(env, NET1, env.engine.reset(NET1))


def test_net1_a_process_named_unshare_without_a_namespace_does_not_pass(env):
    env.started.append(subprocess.Popen(
        env.attendee_argv("bash", "-c", "exec -a unshare sleep 60"), start_new_session=True))
    wait_for(lambda: Path(f"/proc/{env.started[-1].pid}/cmdline").read_bytes().startswith(b"unshare"), "exec")

    result = env.engine.check(NET1)["steps"][0]

    assert result["status"] == "failed"
    assert "None of your processes is in a new network namespace" in result["reason"]
    assert env.started[-1].pid in result["evidence"]["looked_at"]


# --- ns-net-2 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", STEPS)
def test_net2_each_step_fails_then_its_walkthrough_makes_it_pass_then_reset_cleans(env, target):
    engine = env.engine
    for step in STEPS[: STEPS.index(target)]:
        env.run_walkthrough(NET2, step)
    before = step_result(engine.check(NET2, target), target)
    assert before["status"] == "failed" and before["reason"]

    env.run_walkthrough(NET2, target)
    after = step_result(engine.check(NET2, target), target)
    assert after["passed"], after

    old = inodes(env)
    assert_gone(env, NET2, engine.reset(NET2), old)
    assert step_result(engine.check(NET2, target), target)["status"] == "failed"


def test_net2_reasons_follow_the_attendee_through_the_lab(env):
    p = env.prefix
    engine = env.engine
    assert f"Network namespace {p}vnet0 and {p}vnet10 does not exist yet" in engine.check(NET2, "namespaces")[
        "steps"][0]["reason"]
    env.run_walkthrough(NET2, "namespaces")
    assert f"{p}vnet0 has no interface {p}veth0 (it has: lo)" in engine.check(NET2, "veth")["steps"][0]["reason"]
    as_attendee(env, f"sudo ip -n {p}vnet0 link add {p}veth0 type veth peer name {p}veth10 netns {p}vnet10")
    assert f"{p}veth0 in {p}vnet0 is down" in engine.check(NET2, "veth")["steps"][0]["reason"]
    as_attendee(env, f"sudo ip -n {p}vnet0 link set {p}veth0 up; sudo ip -n {p}vnet10 link set {p}veth10 up")
    assert "does not have 10.11.12.1/24" in engine.check(NET2, "veth")["steps"][0]["reason"]
    as_attendee(env, f"sudo ip -n {p}vnet0 addr add 10.11.12.1/24 dev {p}veth0;"
                     f"sudo ip -n {p}vnet10 addr add 10.11.13.1/24 dev {p}veth10")
    assert f"{p}vnet0 has no route to 10.11.13.1" in engine.check(NET2, "veth")["steps"][0]["reason"]
    as_attendee(env, f"sudo ip -n {p}vnet0 route add 10.11.13.0/24 dev {p}veth0;"
                     f"sudo ip -n {p}vnet10 route add 10.11.12.0/24 dev {p}veth10")
    veth = engine.check(NET2, "veth")["steps"][0]
    assert veth["passed"], veth
    assert f"No process in {p}vnet0 listens on TCP port 1500" in engine.check(NET2, "server")["steps"][0]["reason"]
    assert_gone(env, NET2, engine.reset(NET2), inodes(env))


def test_net2_solve_passes_with_evidence_and_reset_cleans(env):
    out = env.engine.solve(NET2)
    assert out["passed"], out
    server = step_result(out, "server")["evidence"]
    assert server["probe"]["connected"] and server["probe"]["from"] == f"{env.prefix}vnet10"
    assert server["probe"]["to"] == "10.11.12.1:1500"
    listener = server["listener"]
    assert listener["pid"] in netns.pids_in_netns(server["netns"][f"{env.prefix}vnet0"])
    assert set(server["netns"]) == {f"{env.prefix}vnet0", f"{env.prefix}vnet10"}
    assert {lnk["ifname"] for lnk in server["links"][f"{env.prefix}vnet0"]} == {"lo", f"{env.prefix}veth0"}

    old = inodes(env)
    report = env.engine.reset(NET2)
    assert_gone(env, NET2, report, old)
    assert any(f"network namespace {env.prefix}vnet0" == r for r in report["removed"])
    for step in STEPS:
        assert step_result(env.engine.check(NET2, step), step)["status"] == "failed"


def test_net2_solve_of_a_later_step_solves_the_earlier_ones_and_reset_to_step_resolves_them(env):
    out = env.engine.solve(NET2, "veth")
    assert [s["step"] for s in out["solved"]] == ["namespaces", "veth"] and out["passed"]
    report = env.engine.reset(NET2, to_step="server", solve_earlier=True)
    assert report["clean"], report["leftovers"]
    assert step_result(env.engine.check(NET2, "veth"), "veth")["passed"]
    assert step_result(env.engine.check(NET2, "server"), "server")["status"] == "failed"
    assert_gone(env, NET2, env.engine.reset(NET2), inodes(env))


# --- leaks ----------------------------------------------------------------------------------------

def test_net2_reset_removes_a_namespace_kept_alive_by_an_fd_in_a_background_attendee_process(env):
    env.engine.solve(NET2)
    p = env.prefix
    as_attendee(env, f"""
        setsid python3 -c "import os,time; fd=os.open('/run/netns/{p}vnet0', os.O_RDONLY); time.sleep(600)" \\
          </dev/null >/dev/null 2>&1 &
        echo $! > holder.pid
    """)
    holder = int((env.attendee.home / "holder.pid").read_text())
    old = inodes(env)
    wait_for(lambda: netns.fd_holders(old[f"{p}vnet0"]), "the attendee's fd on the namespace")

    report = env.engine.reset(NET2)

    assert any(f"process {holder} held an fd" in r for r in report["removed"]), report
    assert_gone(env, NET2, report, old)


def test_net2_reset_removes_nsfs_bind_mounts_on_the_host_and_in_another_mount_namespace(env, tmp_path):
    env.engine.solve(NET2)
    p = env.prefix
    keep, hidden = tmp_path / "keep", tmp_path / "hidden"
    keep.touch()
    hidden.touch()
    as_attendee(env, f"sudo mount --bind /run/netns/{p}vnet0 {keep}")
    # A root process in a private mount namespace keeps its own bind mount of vnet10: not a lab process,
    # but its mount can be removed from inside that mount namespace.
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             f"mount --bind /run/netns/{p}vnet10 {hidden} && echo ready && exec sleep 60"],
                            stdout=subprocess.PIPE, start_new_session=True)
    env.started.append(proc)
    assert proc.stdout.readline().strip() == b"ready"
    old = inodes(env)

    report = env.engine.reset(NET2)

    assert any(f"at {keep}" in r for r in report["removed"]), report
    assert any(f"at {hidden}" in r for r in report["removed"]), report
    assert proc.poll() is None  # not the lab's process: only its mount was removed
    assert_gone(env, NET2, report, old)


def test_net2_reset_unmounts_a_bind_mount_the_attendee_made_in_a_user_namespace(env):
    env.engine.solve(NET2, "namespaces")
    p = env.prefix
    as_attendee(env, f"""
        touch keep
        setsid unshare --user --map-root-user --mount sh -c \
          'mount --bind /run/netns/{p}vnet0 "$HOME/keep" && exec sleep 600' </dev/null >/dev/null 2>&1 &
        echo $! > holder.pid
    """)
    holder = int((env.attendee.home / "holder.pid").read_text())
    old = inodes(env)
    keep = str(env.attendee.home / "keep")
    wait_for(lambda: [m for m in netns.mount_holders(old[f"{p}vnet0"]) if m.mount_point == keep], "the bind mount")

    report = env.engine.reset(NET2)

    assert any(f"at {keep}" in r for r in report["removed"]), report
    assert not netns.holders(old[f"{p}vnet0"]) and inodes(env) == {}
    kill_quietly(holder)


def test_net2_reset_removes_a_name_bind_mounted_on_itself(env):
    env.engine.solve(NET2, "namespaces")
    p = env.prefix
    as_attendee(env, f"sudo mount --bind /run/netns/{p}vnet0 /run/netns/{p}vnet0")
    old = inodes(env)
    assert_gone(env, NET2, env.engine.reset(NET2), old)


def test_net2_reset_finds_a_namespace_whose_name_the_attendee_deleted_while_a_process_keeps_it(env):
    env.engine.solve(NET2, "veth")
    p = env.prefix
    old = inodes(env)
    as_attendee(env, f"sudo setsid -f ip netns exec {p}vnet0 sleep 600 </dev/null >/dev/null 2>&1")
    sleeper = wait_for(lambda: netns.pids_in_netns(old[f"{p}vnet0"]), "the sleep in vnet0")[0]
    as_attendee(env, f"sudo ip netns del {p}vnet0")
    assert f"{p}vnet0" not in inodes(env) and netns.holders(old[f"{p}vnet0"]).pids == [sleeper]

    report = env.engine.reset(NET2)

    assert any(f"process {sleeper} in network namespace an unnamed network namespace with {p}veth0" == r
               for r in report["removed"]), report
    assert_gone(env, NET2, report, old)


def test_net2_reset_reports_a_holder_it_may_not_remove(env):
    env.engine.solve(NET2, "namespaces")
    p = env.prefix
    # A root process that is not the lab's (not the attendee's, not a holder, not in the lab's namespaces).
    proc = subprocess.Popen(["python3", "-c", f"import os,time; fd=os.open('/run/netns/{p}vnet10', os.O_RDONLY);"
                             "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE,
                            start_new_session=True)
    env.started.append(proc)
    assert proc.stdout.readline().strip() == b"ready"

    report = env.engine.reset(NET2)

    assert not report["clean"]
    assert any(f"process {proc.pid}" in line and "not the lab's" in line for line in report["leftovers"]), report
    assert any(f"process {proc.pid} holds fd" in line for line in report["leftovers"]), report
    assert proc.poll() is None


def test_net2_reset_removes_veths_the_classic_recipe_left_on_the_host(env):
    env.engine.solve(NET2, "namespaces")
    p = env.prefix
    as_attendee(env, f"""
        sudo ip link add {p}veth0 type veth peer name {p}veth10
        sudo ip link set {p}veth10 netns {p}vnet10
    """)
    assert Path(f"/sys/class/net/{p}veth0").exists()
    old = inodes(env)
    report = env.engine.reset(NET2)
    assert any(f"veth {p}veth0 on the host" == r for r in report["removed"]), report
    assert not Path(f"/sys/class/net/{p}veth0").exists()
    assert_gone(env, NET2, report, old)


# --- cheats and mistakes --------------------------------------------------------------------------

def test_net2_a_server_on_the_host_instead_of_vnet0_fails_with_a_clear_reason(env):
    env.engine.solve(NET2, "veth")
    server = subprocess.Popen(env.attendee_argv("nc", "-lk", "127.0.0.1", "1500"),
                              stdin=subprocess.DEVNULL, start_new_session=True)
    env.started.append(server)
    wait_for(lambda: any(s.local_port == 1500 for s in links.listeners("self")), "the host listener")

    result = env.engine.check(NET2, "server")["steps"][0]

    assert result["status"] == "failed"
    assert f"No process in {env.prefix}vnet0 listens on TCP port 1500" in result["reason"]
    assert "in the host's network namespace" in result["reason"]
    assert result["evidence"]["listener"]["pid"] is None


def test_net2_a_server_bound_to_loopback_in_vnet0_fails_the_probe(env):
    env.engine.solve(NET2, "veth")
    p = env.prefix
    as_attendee(env, f"sudo ip -n {p}vnet0 link set lo up; "
                     f"sudo setsid -f ip netns exec {p}vnet0 nc -lk 127.0.0.1 1500 </dev/null >/dev/null 2>&1")
    server_ns = inodes(env)[f"{p}vnet0"]
    wait_for(lambda: any(links.listeners(pid, 1500) for pid in netns.pids_in_netns(server_ns)), "the listener")

    result = env.engine.check(NET2, "server")["steps"][0]

    assert result["status"] == "failed"
    assert "Connection refused" in result["reason"] and "listens on 127.0.0.1 only" in result["reason"]
    assert result["evidence"]["probe"]["connected"] is False
    assert_gone(env, NET2, env.engine.reset(NET2), inodes(env))


def test_net2_a_bridge_instead_of_a_veth_and_the_hosts_own_namespace_do_not_pass(env):
    p = env.prefix
    env.engine.solve(NET2, "namespaces")
    as_attendee(env, f"sudo ip -n {p}vnet0 link add {p}veth0 type bridge")
    assert "is a bridge device, not a veth" in env.engine.check(NET2, "veth")["steps"][0]["reason"]

    env.engine.reset(NET2)
    # The host's own namespace bound under a lab name: the check says so, and the reset removes the
    # name but touches no process in the host's namespace (a bystander root process survives).
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    env.started.append(bystander)
    as_attendee(env, f"sudo ip netns add {p}vnet0; sudo touch /run/netns/{p}vnet10; "
                     f"sudo mount --bind /proc/self/ns/net /run/netns/{p}vnet10")
    result = env.engine.check(NET2, "namespaces")["steps"][0]
    assert f"{p}vnet10 is the host's own network namespace" in result["reason"]

    report = env.engine.reset(NET2)

    assert bystander.poll() is None and os.getpid() in netns.pids_in_netns(netns.ns_inode("self"))
    assert any(f"{p}vnet10 was the agent's own network namespace" in line for line in report["leftovers"]), report
    assert inodes(env) == {} and env.residue(NET2) == []


def test_net2_a_bad_name_in_the_lab_file_is_reported_by_key(env, tmp_path):
    labs = tmp_path / "labs"
    folder = labs / NET2
    folder.mkdir(parents=True)
    source = Path(env.labs_dir) / NET2
    for f in source.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    text = (folder / "lab.toml").read_text()
    (folder / "lab.toml").write_text(text.replace('check = { kind = "net.veth_pair" }',
                                                  'check = { kind = "net.veth_pair", server_veth = "{prefix}a-name-too-long" }'))
    bad = LabEnv(env.attendee, tmp_path / "bad", labs_dir=labs)
    result = bad.engine.check(NET2, "veth")["steps"][0]
    assert result["status"] == "failed"
    assert result["reason"].startswith("The lab file is wrong")
    assert "server_veth" in result["reason"] and "at most 15 characters" in result["reason"]

    (folder / "lab.toml").write_text(text.replace('check = { kind = "net.veth_pair" }',
                                                  'check = { kind = "net.veth_pair", port_number = 1500 }'))
    errors = [str(e) for e in LabEnv(env.attendee, tmp_path / "bad2", labs_dir=labs).catalog.errors]
    assert any("steps[1].check.port_number" in e and "unknown key" in e for e in errors), errors
