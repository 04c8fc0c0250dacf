"""The one fork → setns → pipe runner, against namespaces this test creates on the real kernel (as root).

Every network namespace is named with a per-test prefix and removed by that name; every process
started here is killed by its pid.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from node_agent.kernel import links, netns, nsenter
from tests.labs.helpers import wait_for

if os.geteuid() != 0:
    pytest.skip("entering namespaces needs root (ip netns add, setns)", allow_module_level=True)


class Made:
    """The namespaces and processes one test made; removed by name and pid afterwards."""

    def __init__(self) -> None:
        self.prefix = "le" + secrets.token_hex(2)
        self.procs: list[subprocess.Popen] = []

    def netns(self, suffix: str) -> Path:
        name = self.prefix + suffix
        netns.add_named(name)
        return netns.NETNS_RUN_DIR / name

    def uts_and_net(self, hostname: str) -> int:
        """A sleep in a new UTS and network namespace whose hostname is ``hostname``; its pid."""
        proc = subprocess.Popen(["unshare", "-u", "-n", "sh", "-c", f"hostname {hostname} && exec sleep 60"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        wait_for(lambda: Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep", "the sleep")
        return proc.pid

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for entry in netns.named_netns():
            if entry.name.startswith(self.prefix):
                netns.delete_named(entry.name)


@pytest.fixture
def made():
    m = Made()
    yield m
    m.cleanup()
    assert not [e for e in netns.named_netns() if e.name.startswith(m.prefix)]


def test_a_function_runs_inside_a_new_network_namespace_and_its_json_answer_comes_back(made):
    path = made.netns("a")
    mine = netns.ns_inode("self")

    answer = nsenter.call([(path, "net")], lambda: {"devices": links.dev_names(), "inode": netns.ns_inode("self")})

    assert answer == {"devices": ["lo"], "inode": netns.netns_inode_of(path)}
    assert netns.ns_inode("self") == mine  # the caller never moved
    assert len(links.dev_names()) >= 1


def test_several_namespaces_are_entered_in_order(made):
    hostname = made.prefix + "-host"
    pid = made.uts_and_net(hostname)

    answer = nsenter.call([nsenter.proc_ns(pid, "uts"), nsenter.proc_ns(pid, "net")],
                          lambda: [os.uname().nodename, links.dev_names()])

    assert answer == [hostname, ["lo"]]
    assert os.uname().nodename != hostname


def test_an_exception_in_the_child_comes_back_as_a_clear_error(made):
    path = made.netns("a")

    def boom() -> None:
        raise ValueError("nothing here")

    with pytest.raises(nsenter.ChildError, match="^ValueError: nothing here$") as caught:
        nsenter.call([(path, "net")], boom)
    assert caught.value.kind == "ValueError"
    with pytest.raises(FileNotFoundError, match="No such file"):
        nsenter.call([(path, "net")], os.stat, "/nonexistent/lf")
    with pytest.raises(nsenter.ChildError, match="TypeError: .*not JSON serializable"):
        nsenter.call([(path, "net")], object)  # an answer JSON cannot carry is refused, never pickled


def test_a_missing_or_swapped_namespace_file_is_named(made):
    with pytest.raises(nsenter.NsEnterError, match=f"cannot open namespace file /run/netns/{made.prefix}nope"):
        nsenter.call([(netns.NETNS_RUN_DIR / f"{made.prefix}nope", "net")], links.dev_names)
    path = made.netns("a")
    st = os.stat(path)
    with pytest.raises(nsenter.NsEnterError, match="is no longer namespace 1 "):
        nsenter.call([(path, "net")], links.dev_names, expect=[(st.st_dev, 1)])
    assert nsenter.call([(path, "net")], links.dev_names, expect=[(st.st_dev, st.st_ino)]) == ["lo"]


def test_a_child_that_does_not_answer_is_killed_and_reaped(made):
    path = made.netns("a")
    children_before = set(Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split())

    with pytest.raises(TimeoutError, match="did not answer within 0.3 s"):
        nsenter.call([(path, "net")], time.sleep, 30, timeout=0.3)

    children = set(Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split())
    assert children <= children_before  # no child left behind, not even a zombie
