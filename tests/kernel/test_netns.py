"""Network namespace and link helpers against the real kernel, as root.

Every namespace here is named with a per-test prefix and removed by that name; the only traffic
is one TCP connect between two namespaces the test created (addresses that exist nowhere else).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from node_agent.kernel import links, netns
from tests.labs.helpers import wait_for

if os.geteuid() != 0:
    pytest.skip("network namespace helpers need root (ip netns add, setns, mount)", allow_module_level=True)


class Names:
    """One test's namespaces, processes and mounts; all removed by name/PID afterwards."""

    def __init__(self, tmp: Path) -> None:
        self.prefix = "lk" + secrets.token_hex(2)
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.mounts: list[str] = []

    def netns(self, suffix: str) -> str:
        name = self.prefix + suffix
        netns.add_named(name)
        return name

    def start(self, argv: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def bind(self, source: str, target: Path) -> str:
        target.touch()
        subprocess.run(["mount", "--bind", source, str(target)], check=True)
        self.mounts.append(str(target))
        return str(target)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for point in reversed(self.mounts):
            subprocess.run(["umount", "-l", point], capture_output=True)
        for entry in netns.named_netns():
            if entry.name.startswith(self.prefix):
                netns.delete_named(entry.name)


@pytest.fixture
def names(tmp_path):
    n = Names(tmp_path)
    yield n
    n.cleanup()


def two_namespaces_with_veth(names: Names) -> tuple[str, str]:
    """``<prefix>s`` (10.11.12.1/24) and ``<prefix>c`` (10.11.13.1/24) joined by a veth, routed both ways."""
    server, client = names.netns("s"), names.netns("c")
    links.run_batch([f"link add v0 type veth peer name v1 netns {client}", "addr add 10.11.12.1/24 dev v0",
                     "link set v0 up", "route add 10.11.13.0/24 dev v0"], server)
    links.run_batch(["addr add 10.11.13.1/24 dev v1", "link set v1 up", "route add 10.11.12.0/24 dev v1"], client)
    return server, client


def listener_in(names: Names, ns: str, address: str, port: int) -> subprocess.Popen:
    code = ("import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
            f"s.bind(({address!r},{port})); s.listen(); print('ready', flush=True); time.sleep(60)")
    proc = names.start(["ip", "netns", "exec", ns, sys.executable, "-c", code])
    assert proc.stdout.readline().strip() == b"ready"
    return proc


# --- names (entering one: tests/kernel/test_nsenter.py) --------------------------------------------------------------------------

def test_named_netns_lists_the_inode_behind_each_name_and_delete_removes_it(names):
    name = names.netns("a")
    entry = next(e for e in netns.named_netns() if e.name == name)
    assert entry.inode == os.stat(f"/run/netns/{name}").st_ino
    assert entry.inode != netns.ns_inode("self")

    assert netns.delete_named(name) is True
    assert name not in [e.name for e in netns.named_netns()]
    assert netns.delete_named(name) is False


def test_bad_names_are_refused_before_touching_anything():
    with pytest.raises(netns.NetnsError, match="bad network namespace name '../x'"):
        netns.delete_named("../x")


# --- holders -------------------------------------------------------------------------------------

def test_every_kind_of_holder_keeps_a_deleted_namespace_alive_and_is_found(names):
    name = names.netns("h")
    inode = netns.netns_inode_of(Path(f"/run/netns/{name}"))
    member = names.start(["ip", "netns", "exec", name, "sleep", "60"])
    fd_code = (f"import os,time; fd=os.open('/run/netns/{name}', os.O_RDONLY); print(fd, flush=True); time.sleep(60)")
    fd_proc = names.start([sys.executable, "-c", fd_code])
    held_fd = int(fd_proc.stdout.readline())
    keep = names.bind(f"/run/netns/{name}", names.tmp / "keep")
    wait_for(lambda: member.pid in netns.pids_in_netns(inode), "the sleep to enter the namespace")

    assert netns.delete_named(name)
    found = netns.holders(inode)

    assert found.pids == [member.pid]
    assert netns.FdHolder(fd_proc.pid, held_fd) in found.fds
    assert keep in [m.mount_point for m in found.mounts]
    assert any(f"holds fd {held_fd}" in line for line in found.describe())

    member.kill()
    member.wait()
    fd_proc.kill()
    fd_proc.wait()
    netns.umount_in_mount_ns(os.getpid(), keep)
    assert not netns.holders(inode)


def test_a_bind_mount_in_another_mount_namespace_is_found_and_unmounted_there(names):
    name = names.netns("m")
    inode = netns.netns_inode_of(Path(f"/run/netns/{name}"))
    hidden = names.tmp / "hidden"
    hidden.touch()
    script = f"mount --bind /run/netns/{name} {hidden} && echo ready && exec sleep 60"
    proc = names.start(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
    assert proc.stdout.readline().strip() == b"ready"

    mine = netns.ns_inode("self", "mnt")
    assert str(hidden) not in [m.mount_point for m in netns.mount_holders(inode) if m.mnt_ns == mine]
    theirs = [m for m in netns.mount_holders(inode) if m.mount_point == str(hidden)]
    assert len(theirs) == 1 and theirs[0].mnt_ns == netns.ns_inode(proc.pid, "mnt")

    netns.umount_in_mount_ns(theirs[0].pid, str(hidden))
    assert [m for m in netns.mount_holders(inode) if m.mount_point == str(hidden)] == []


def test_unlinking_the_name_detaches_copies_that_unshare_m_made(names):
    # mount namespaces copied after `ip netns add` carry their own /run/netns/<name> mount; the
    # unlink in delete_named detaches them (kernel >= 3.18), so they do not pin the namespace.
    name = names.netns("u")
    inode = netns.netns_inode_of(Path(f"/run/netns/{name}"))
    proc = names.start(["unshare", "--mount", "--propagation", "private", "sh", "-c", "echo ready; exec sleep 60"])
    assert proc.stdout.readline().strip() == b"ready"
    copy_ns = netns.ns_inode(proc.pid, "mnt")
    assert any(m.mnt_ns == copy_ns for m in netns.mount_holders(inode))

    netns.delete_named(name)

    assert not netns.holders(inode)


def test_delete_named_removes_every_stacked_mount_of_a_self_bind_mounted_name(names):
    name = names.netns("b")
    inode = netns.netns_inode_of(Path(f"/run/netns/{name}"))
    path = f"/run/netns/{name}"
    subprocess.run(["mount", "--bind", path, path], check=True)
    mine = netns.ns_inode("self", "mnt")
    assert [m.mount_point for m in netns.mount_holders(inode) if m.mnt_ns == mine] == [path, path]

    assert netns.delete_named(name)

    assert not os.path.lexists(path)
    assert not netns.holders(inode)


def test_a_thread_in_another_namespace_makes_its_process_a_holder(names):
    name = names.netns("t")
    inode = netns.netns_inode_of(Path(f"/run/netns/{name}"))
    code = ("import ctypes,os,threading,time\n"
            "libc=ctypes.CDLL(None, use_errno=True)\n"
            "def run():\n"
            f"    fd=os.open('/run/netns/{name}', os.O_RDONLY)\n"
            "    assert libc.setns(fd, 0x40000000) == 0\n"
            "    os.close(fd)\n"
            "    print('ready', flush=True)\n"
            "    time.sleep(60)\n"
            "threading.Thread(target=run, daemon=True).start()\n"
            "time.sleep(60)\n")
    proc = names.start([sys.executable, "-c", code])
    assert proc.stdout.readline().strip() == b"ready"

    assert proc.pid in netns.pids_in_netns(inode)
    assert proc.pid not in netns.pids_in_netns(inode, threads=False)


# --- links, sockets, probe -----------------------------------------------------------------------

def test_view_shows_the_veth_its_peer_namespace_addresses_and_routes(names):
    server, client = two_namespaces_with_veth(names)

    s, c = links.view(server), links.view(client)

    v0, v1 = s.link("v0"), c.link("v1")
    assert (v0.kind, v1.kind) == ("veth", "veth")
    assert v0.peer_ifindex == v1.ifindex and v1.peer_ifindex == v0.ifindex
    assert s.nsids[v0.peer_nsid] == client and c.nsids[v1.peer_nsid] == server
    assert v0.addresses == ("10.11.12.1/24",) and v1.addresses == ("10.11.13.1/24",)
    assert v0.up and s.link("lo").kind is None
    assert s.route_to("10.11.13.1").dev == "v0"
    assert s.route_to("10.11.14.1") is None


def test_view_of_a_missing_namespace_names_it(names):
    with pytest.raises(links.LinkError, match=f"{names.prefix}nope"):
        links.view(names.prefix + "nope")


def test_listeners_and_their_owner_are_read_from_the_namespace_of_a_member(names):
    server, _ = two_namespaces_with_veth(names)
    proc = listener_in(names, server, "10.11.12.1", 1500)
    pid = wait_for(lambda: netns.pids_in_netns(netns.netns_inode_of(Path(f"/run/netns/{server}"))), "listener")[0]

    found = links.listeners(pid, 1500)

    assert [(s.local_address, s.local_port, s.state) for s in found] == [("10.11.12.1", 1500, links.TCP_LISTEN)]
    assert links.socket_owners({found[0].inode}, [pid]) == {found[0].inode: [proc.pid]}
    assert all(s.local_address != "10.11.12.1" for s in links.listeners(os.getpid(), 1500))


def test_tcp_and_tcp6_rows_decode_to_addresses_and_ports():
    import socket

    with socket.socket() as v4, socket.socket(socket.AF_INET6) as v6:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        v6.bind(("::1", 0))
        v6.listen()
        rows = {(s.local_address, s.local_port) for s in links.listeners("self")}
        assert ("127.0.0.1", v4.getsockname()[1]) in rows
        assert ("::1", v6.getsockname()[1]) in rows


def test_a_new_network_namespace_has_only_lo_in_net_dev(names):
    proc = names.start(["unshare", "--net", "sh", "-c", "echo ready; exec sleep 60"])
    assert proc.stdout.readline().strip() == b"ready"
    assert links.dev_names(proc.pid) == ["lo"]


def test_the_probe_connects_is_refused_or_is_unreachable_as_the_kernel_says(names):
    server, client = two_namespaces_with_veth(names)
    listener_in(names, server, "0.0.0.0", 1500)
    ns_file = Path(f"/run/netns/{client}")

    ok = links.probe_tcp(ns_file, "10.11.12.1", 1500)
    refused = links.probe_tcp(ns_file, "10.11.12.1", 1501)
    unreachable = links.probe_tcp(ns_file, "10.11.14.1", 1500)

    assert ok.connected and ok.error is None
    assert not refused.connected and refused.error == "Connection refused"
    assert not unreachable.connected and unreachable.error == "Network is unreachable"


def test_the_probe_gives_up_after_its_timeout_on_a_silent_address(names):
    server, client = two_namespaces_with_veth(names)
    # 10.11.12.99 is on the link but nobody answers ARP for it: the connect can only time out.
    result = links.probe_tcp(Path(f"/run/netns/{client}"), "10.11.12.99", 1500, timeout=0.5)
    assert not result.connected and result.error in ("timed out", "No route to host")


def test_delete_link_removes_a_veth_and_its_peer(names):
    server, client = two_namespaces_with_veth(names)
    assert links.delete_link("v0", server) is True
    assert links.view(client).link("v1") is None
    assert links.delete_link("v0", server) is False


def test_probe_child_is_reaped(names):
    _, client = two_namespaces_with_veth(names)
    before = _zombies()
    links.probe_tcp(Path(f"/run/netns/{client}"), "10.11.12.1", 1500)
    assert _zombies() <= before


def _zombies() -> set[int]:
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] == "Z" and int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                out.add(int(pid))
    return out
