"""Three hosts of a local fleet, seen as a user of SSH would see them."""

from __future__ import annotations

import json
import os
import pwd
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

from controller.fleet import Fleet
from tests.fleet.conftest import ssh_ok
from tests.processes import REPO


def test_three_hosts_are_listed_running_and_answering(fleet3: Fleet):
    result = subprocess.run([sys.executable, "-m", "controller.cli.main", "fleet", "list", "--json",
                             "--state-dir", str(fleet3.config.state_dir)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    prefix = fleet3.config.prefix
    assert [h["name"] for h in listed] == [f"{prefix}-1", f"{prefix}-2", f"{prefix}-3"]
    assert [h["address"] for h in listed] == [str(fleet3.config.subnet.network_address + n) for n in (10, 11, 12)]
    assert all(h["state"] == "running" and h["sshd_answers"] and h["ssh_port"] == 22 for h in listed)
    assert all(h["cgroup_parent"] == f"labfleet-fleet/{h['name']}" for h in listed)


def test_each_host_answers_ssh_with_its_own_hostname_and_pid_namespace(fleet3: Fleet):
    machine_pidns = os.readlink("/proc/self/ns/pid")
    seen = {}
    for host in fleet3.hosts():
        out = ssh_ok(host, "hostname; readlink /proc/self/ns/pid; cat /proc/1/comm")
        hostname, pidns, init = out.splitlines()
        assert hostname == host.name
        assert init == "labfleet-init", "PID 1 inside is the host's own init"
        seen[host.name] = pidns
    assert len(set(seen.values())) == 3 and machine_pidns not in seen.values()


def test_private_key_is_mode_0600_and_hosts_cannot_read_it(fleet3: Fleet):
    host = fleet3.hosts()[0]
    assert stat.S_IMODE(os.stat(host.private_key_path).st_mode) == 0o600
    assert host.private_key_path.startswith("/var/tmp/")  # a path the overlay would show
    out = ssh_ok(host, f"test -e {host.private_key_path} && echo visible || echo hidden; "
                       f"ls -A {os.path.dirname(host.private_key_path)} | wc -l")
    assert out.split() == ["hidden", "0"]


def test_hosts_reach_each_other_and_the_machine_on_the_bridge(fleet3: Fleet):
    first, second, _ = fleet3.hosts()
    banner = ssh_ok(first, f"timeout 5 bash -c 'exec 3<>/dev/tcp/{second.address}/22; head -c 4 <&3'")
    assert banner == "SSH-"

    with socket.create_server((fleet3.bridge_address, 0)) as server:
        server.settimeout(10)
        port = server.getsockname()[1]
        ssh_ok(first, f"timeout 5 bash -c 'echo from-$(hostname) > /dev/tcp/{fleet3.bridge_address}/{port}'")
        conn, (peer, _) = server.accept()
        with conn:
            conn.settimeout(5)
            assert conn.recv(100).decode().strip() == f"from-{first.name}"
    assert peer == first.address


def test_hosts_have_no_route_beyond_the_bridge(fleet3: Fleet):
    host = fleet3.hosts()[0]
    routes = [r.strip() for r in ssh_ok(host, "ip -4 route show").splitlines()]
    assert routes == [f"{fleet3.config.subnet} dev eth0 proto kernel scope link src {host.address}"]


def test_what_one_host_writes_stays_on_that_host(fleet3: Fleet):
    first, second, _ = fleet3.hosts()
    user = "lft" + uuid.uuid4().hex[:8]
    path = f"/etc/labfleet-test-{user}"
    ssh_ok(first, f"useradd --create-home {user} && echo written-on-{first.name} > {path} && "
                  f"mkdir -p /opt/{user} && echo venv > /opt/{user}/marker")

    assert ssh_ok(first, f"id -u {user} && cat {path}").splitlines()[1] == f"written-on-{first.name}"
    assert ssh_ok(second, f"id {user} >/dev/null 2>&1 && echo present || echo absent").strip() == "absent"
    assert ssh_ok(second, f"ls {path} /opt/{user} 2>/dev/null || echo absent").strip() == "absent"
    assert not os.path.exists(path) and not os.path.exists(f"/opt/{user}")
    try:
        pwd.getpwnam(user)
        raise AssertionError(f"user {user} leaked onto the machine")
    except KeyError:
        pass


def test_host_sees_its_cgroup_parent_and_can_use_ip_netns(fleet3: Fleet):
    host = fleet3.hosts()[1]
    own = ssh_ok(host, "cat /proc/self/cgroup")
    assert f"pids:/{host.cgroup_parent}/" in own
    assert ssh_ok(host, f"test -d /sys/fs/cgroup/pids/{host.cgroup_parent} && echo yes").strip() == "yes"
    out = ssh_ok(host, "ip netns add lftinner && ip netns list && ip netns del lftinner && ip netns list")
    assert out.splitlines()[0].startswith("lftinner")
    assert "lftinner" not in os.listdir("/run/netns"), "a host's netns names are its own"


def test_a_hosts_root_shell_is_a_fresh_vms_not_this_machines(fleet3: Fleet):
    """root's ~/.bashrc and ~/.profile on a host are Debian's defaults, never this machine's own (which
    here runs `pyenv init` and adds ~/.pyenv and ~/.cargo to PATH for every SSH command)."""
    expected = {name: Path(source).read_text() for name, source in
                ((".bashrc", "/usr/share/base-files/dot.bashrc"), (".profile", "/usr/share/base-files/dot.profile"))}
    for host in fleet3.hosts():
        for name, content in expected.items():
            assert ssh_ok(host, f"cat ~/{name}") == content, f"{host.name}: ~/{name} is not Debian's default"
        # An SSH command's bash reads ~/.bashrc: on a host it leaves root's PATH as sshd set it, nothing under /root.
        path = ssh_ok(host, 'echo "$PATH"; echo "${PYENV_ROOT:-no pyenv}"').split("\n")
        assert "/root" not in path[0] and path[1] == "no pyenv", f"{host.name}: {path}"
