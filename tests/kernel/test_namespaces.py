"""Namespace inspection against real processes in real namespaces on this kernel (run as root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_agent.kernel import namespaces
from tests.labs.helpers import wait_for


@pytest.fixture
def spawn() -> Iterator:
    """Start a command in its own process group; every process of the group is killed afterwards."""
    started: list[subprocess.Popen] = []

    def start(argv: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def leaf(pid: int) -> int:
    """The deepest first descendant of ``pid`` (the sleep at the end of an unshare -f chain)."""
    def child_of(p: int) -> int | None:
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except FileNotFoundError:
            return None
        return int(kids[0]) if kids else None

    def settled() -> int | None:
        p = pid
        while (c := child_of(p)) is not None:
            p = c
        return p if Path(f"/proc/{p}/comm").read_text().strip() == "sleep" else None

    return wait_for(settled)


def sleeper(spawn, *unshare_args: str) -> int:
    proc = spawn(["unshare", *unshare_args, "sleep", "60"])
    return leaf(proc.pid)


def test_the_test_process_is_in_the_initial_namespaces() -> None:
    own = namespaces.ns_ids("self")
    assert own["user"].ino == namespaces.PROC_USER_INIT_INO == 0xEFFFFFFD
    assert own["ipc"].ino == namespaces.PROC_IPC_INIT_INO
    assert namespaces.assert_initial(own) == []
    # Before 6.18 net and mnt have no fixed inode: reported as unproven, not as wrong.
    assert namespaces.assert_initial({"mnt": 4026531840, "uts": namespaces.PROC_UTS_INIT_INO},
                                    release="6.1.0-18-amd64") == ["mnt"]


def test_assert_initial_names_the_namespace_that_is_not(spawn) -> None:
    pid = sleeper(spawn, "-u")
    with pytest.raises(namespaces.NotInitialNamespace, match=r"uts is \d+, the initial one is 4026531838"):
        namespaces.assert_initial(namespaces.ns_ids(pid))


def test_same_namespace_means_same_dev_and_inode(spawn) -> None:
    pid = sleeper(spawn, "-i")
    own, other = namespaces.ns_ids("self"), namespaces.ns_ids(pid)
    assert other["ipc"] != own["ipc"]
    assert other["net"] == own["net"]
    assert other["ipc"].dev == own["ipc"].dev  # all nsfs inodes live on one device


def test_nspid_lists_the_pid_at_every_level(spawn) -> None:
    pid = sleeper(spawn, "-pf", "--mount-proc", "unshare", "-pf", "--mount-proc")
    ids = namespaces.nspid(pid)
    # The first unshare's child is PID 1 of level 2; the pid it forks is 2 there and PID 1 of level 3.
    assert ids == [pid, 2, 1]
    assert namespaces.nspid("self") == [os.getpid()]


def test_ns_ancestry_walks_nested_pid_namespaces_up_to_the_initial_one(spawn) -> None:
    pid = sleeper(spawn, "-pf", "--mount-proc", "unshare", "-pf", "--mount-proc")
    chain = namespaces.ns_ancestry(pid)
    assert len(chain) == 3
    assert chain[-1] == namespaces.ns_id("self", "pid")
    assert chain[0] == namespaces.ns_id(pid, "pid")
    assert len(set(chain)) == 3
    assert namespaces.ns_ancestry("self") == [namespaces.ns_id("self", "pid")]


def test_uid_map_and_setgroups_of_an_unprivileged_user_namespace(spawn) -> None:
    pid = sleeper(spawn, "--setuid", "65534", "--setgid", "65534", "unshare", "-Ur")
    assert namespaces.id_map(pid, "uid") == [(0, 65534, 1)]
    assert namespaces.id_map(pid, "gid") == [(0, 65534, 1)]
    assert namespaces.setgroups(pid) == "deny"
    assert namespaces.setgroups("self") == "allow"


def test_timens_offsets_of_a_time_namespace(spawn) -> None:
    pid = sleeper(spawn, "-T", "--monotonic=432000", "--boottime=7")
    assert namespaces.timens_offsets(pid) == {"monotonic": (432000, 0), "boottime": (7, 0)}
    assert namespaces.timens_offsets("self") == {"monotonic": (0, 0), "boottime": (0, 0)}


def test_root_link_follows_unshare_root(spawn, tmp_path: Path) -> None:
    root = tmp_path / "root"
    for d in ("bin", "proc"):
        (root / d).mkdir(parents=True)
    busybox = Path("/bin/busybox")
    (root / "bin" / "busybox").write_bytes(busybox.read_bytes())
    (root / "bin" / "busybox").chmod(0o755)
    proc = spawn(["unshare", "-mpf", "--mount-proc", f"--root={root}", "/bin/busybox", "sleep", "60"])
    pid = wait_for(lambda: next(iter(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()), None))
    wait_for(lambda: Path(f"/proc/{pid}/comm").read_text().strip() == "busybox")  # exec'd, so chrooted
    assert namespaces.root_link(int(pid)) == str(root)
    assert namespaces.nspid(int(pid))[-1] == 1
    assert any(m.mount_point == "/proc" for m in namespaces.mountinfo(int(pid)))
    assert namespaces.root_link("self") == "/"


def test_hostname_read_inside_a_uts_namespace_and_host_unchanged(spawn) -> None:
    name = f"lfns-{uuid.uuid4().hex[:8]}"
    proc = spawn(["unshare", "-u", "sh", "-c", f"hostname {name} && exec sleep 60"])
    wait_for(lambda: Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep")
    assert namespaces.uts_nodename(proc.pid) == name
    assert os.uname().nodename != name


def test_shm_segment_visible_only_inside_its_ipc_namespace(spawn) -> None:
    proc = spawn(["unshare", "-i", "sh", "-c", "ipcmk -M 4096 >/dev/null && exec sleep 60"])
    wait_for(lambda: Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep")
    inside = namespaces.sysvipc_shm(proc.pid, expect=namespaces.ns_id(proc.pid, "ipc"))
    assert [s["size"] for s in inside] == [4096]
    host_keys = {(s["key"], s["shmid"], s["cpid"]) for s in namespaces.sysvipc_shm()}
    assert (inside[0]["key"], inside[0]["shmid"], inside[0]["cpid"]) not in host_keys


def test_cgroup_paths_are_relative_to_the_readers_cgroup_namespace(spawn) -> None:
    cg = Path("/sys/fs/cgroup/pids") / f"lfns-test-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    try:
        proc = spawn(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec unshare -C sleep 60"])
        wait_for(lambda: Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep")
        assert namespaces.proc_cgroup(proc.pid)["pids"] == f"/{cg.name}"
        inside = namespaces.cgroup_seen_from_ns(proc.pid)
        assert inside["pids"] == "/"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        wait_for(lambda: not (cg / "cgroup.procs").read_text().strip())
        cg.rmdir()


def test_reading_a_namespace_that_changed_under_the_pid_is_refused(spawn) -> None:
    pid = sleeper(spawn, "-u")
    stale = namespaces.NsId(namespaces.ns_id(pid, "uts").dev, 1)
    with pytest.raises(namespaces.NamespaceReadError, match="no longer in uts namespace 1"):
        namespaces.uts_nodename(pid, expect=stale)


def test_the_resident_reader_returns_to_its_own_namespace_after_each_read(spawn) -> None:
    name = f"lfns-{uuid.uuid4().hex[:8]}"
    proc = spawn(["unshare", "-u", "sh", "-c", f"hostname {name} && exec sleep 60"])
    wait_for(lambda: Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep")
    assert namespaces.uts_nodename(proc.pid) == name
    resident = namespaces.RESIDENT.pid
    assert resident and resident != os.getpid()
    assert namespaces.ns_id(resident, "uts") == namespaces.ns_id("self", "uts")
    assert namespaces.uts_nodename(proc.pid) == name
    assert namespaces.RESIDENT.pid == resident  # one process serves every read


def test_a_killed_resident_reader_is_replaced(spawn) -> None:
    pid = sleeper(spawn, "-i")
    assert namespaces.sysvipc_shm(pid) == []
    first = namespaces.RESIDENT.pid
    os.kill(first, signal.SIGKILL)
    assert namespaces.sysvipc_shm(pid) == []
    assert namespaces.RESIDENT.pid not in (0, first)
    assert not Path(f"/proc/{first}").exists()  # reaped, not a zombie


def test_the_resident_reader_runs_only_named_readers() -> None:
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="serves nodename"):
            namespaces.RESIDENT.read(fd, "uts", "os.system")
        with pytest.raises(ValueError, match="not 'nodename' in 'mnt'"):
            namespaces.RESIDENT.read(fd, "mnt", "nodename")
    finally:
        os.close(fd)


def test_a_bind_mount_over_status_is_detected(spawn, tmp_path: Path) -> None:
    pid = sleeper(spawn, "-u")
    assert namespaces.forged_proc_files(pid) == []
    fake = tmp_path / "status"
    fake.write_text(Path(f"/proc/{pid}/status").read_text().replace("NSpid:", "NSpid:\t1\t2\t3\t#"))
    target = f"/proc/{pid}/status"
    subprocess.run(["mount", "--bind", str(fake), target], check=True)
    try:
        reasons = namespaces.forged_proc_files(pid)
        assert any("not on procfs" in r for r in reasons)
        assert any(f"{target} has a" in r for r in reasons)
    finally:
        subprocess.run(["umount", target], check=True)
    assert namespaces.forged_proc_files(pid) == []


def test_a_bind_mount_over_a_proc_file_outside_pid_dirs_is_detected(tmp_path: Path) -> None:
    """The forgery happens in a mount namespace private to the test: the host's /proc is never covered."""
    shm = Path("/proc/sysvipc/shm")
    assert namespaces.forged_paths((shm,)) == []
    fake = tmp_path / "shm"
    fake.write_text(shm.read_text().splitlines()[0] + "\n")
    script = (f"import json, subprocess; from pathlib import Path; from node_agent.kernel import namespaces; "
              f"subprocess.run(['mount', '--bind', '{fake}', '{shm}'], check=True); "
              f"print(json.dumps(namespaces.forged_paths((Path('{shm}'),))))")
    done = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", script],
                          capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2], timeout=30)
    reasons = json.loads(done.stdout)
    assert any("not on procfs" in r for r in reasons) and any(f"{shm} has a" in r for r in reasons)
    assert namespaces.forged_paths((shm,)) == []


def test_parse_sysvipc_shm_keys_rows_by_header() -> None:
    text = ("       key      shmid perms                  size  cpid  lpid nattch   uid   gid\n"
            "         0         32   644                  4096  1234     0      0  1000  1000\n")
    assert namespaces.parse_sysvipc_shm(text) == [
        {"key": 0, "shmid": 32, "perms": 644, "size": 4096, "cpid": 1234, "lpid": 0, "nattch": 0,
         "uid": 1000, "gid": 1000}]
