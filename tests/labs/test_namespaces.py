"""The namespace labs (all but the network ones) on the real kernel, done by a real non-root attendee.

Every step's fail / pass / reset cycle (walkthrough and solve) is test_catalog.py's;
here the root fs tarball staged elsewhere and missing, the evidence, then the cheats
and leaks docs/labs.md names for these labs.
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_agent.kernel import nsinspect, procfs, rootfs
from node_agent.labs.builtins import namespaces as ns
from node_agent.labs.loader import load_catalog
from tests.labs.conftest import LABS_DIR, LabEnv

LABS = ["ns-user", "ns-mount-1", "ns-mount-2", "ns-pid", "ns-ipc", "ns-uts", "ns-time", "ns-cgroup"]
CLONE_NEWUTS = 0x04000000


@pytest.fixture(scope="module")
def staged_tarball() -> Iterator[Path]:
    """The ns-mount-2 root fs as the playbook stages it, in a directory the attendee can read."""
    folder = Path(tempfile.mkdtemp(prefix="lfns-rootfs-"))
    folder.chmod(0o755)
    try:
        yield rootfs.build(folder / "rootfs.tar.gz")
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def env(lab_env: LabEnv, staged_tarball: Path, monkeypatch) -> LabEnv:
    plain = lab_env.env
    monkeypatch.setattr(lab_env, "env", lambda lab_id: {**plain(lab_id), "LAB_ROOTFS_TARBALL": str(staged_tarball)})
    return lab_env


def only_step(env: LabEnv, lab_id: str) -> str:
    (step,) = env.catalog.get(lab_id).steps
    return step.id


def check(env: LabEnv, lab_id: str) -> dict:
    (result,) = env.engine.check(lab_id)["steps"]
    return result


def assert_clean_after_reset(env: LabEnv, lab_id: str) -> None:
    out = env.engine.reset(lab_id)
    assert out["leftovers"] == [], out
    after = check(env, lab_id)
    assert after["status"] == "failed" and after["reason"], after
    assert env.residue(lab_id) == []


def as_attendee(env: LabEnv, script: str) -> subprocess.CompletedProcess:
    """A bash script as the attendee with a bare environment (no LAB_*); the caller judges its exit."""
    a = env.attendee
    return env.as_attendee(script, "ns-user", check=False,
                           env={"PATH": os.environ["PATH"], "HOME": str(a.home), "USER": a.user})


def test_every_namespace_lab_loads() -> None:
    catalog = load_catalog(LABS_DIR)
    assert set(LABS) <= set(catalog.labs), [str(e) for e in catalog.errors]
    for lab_id in LABS:
        lab = catalog.get(lab_id)
        assert lab.topic == "namespaces"
        for step in lab.steps:
            assert step.walkthrough is not None and len(step.hints) == 3


def test_the_walkthrough_uses_a_tarball_staged_where_lab_rootfs_tarball_says(env: LabEnv) -> None:
    env.run_walkthrough("ns-mount-2", only_step(env, "ns-mount-2"))
    result = check(env, "ns-mount-2")
    assert result["status"] == "passed", result
    assert result["evidence"], result
    assert_clean_after_reset(env, "ns-mount-2")


def test_without_a_staged_tarball_the_walkthrough_builds_the_tree_from_busybox(lab_env: LabEnv, monkeypatch) -> None:
    plain = lab_env.env
    monkeypatch.setattr(lab_env, "env", lambda lab_id: {**plain(lab_id), "LAB_ROOTFS_TARBALL": "/nonexistent.tgz"})
    lab_env.run_walkthrough("ns-mount-2", "enter-rootfs")
    assert (lab_env.attendee.home / "rootfs" / "bin" / "sh").is_symlink()
    result = check(lab_env, "ns-mount-2")
    assert result["status"] == "passed", result
    assert result["evidence"]["root"] == str(lab_env.attendee.home / "rootfs")
    assert_clean_after_reset(lab_env, "ns-mount-2")
    assert not (lab_env.attendee.home / "rootfs").exists()


def test_evidence_names_processes_and_inodes(env: LabEnv) -> None:
    env.engine.solve("ns-pid")
    levels = check(env, "ns-pid")["evidence"]["levels"]
    assert [len(level["nspid"]) for level in levels] == [2, 3, 4]
    assert len({level["ns"]["pid"] for level in levels}) == 3
    for level in levels:
        assert nsinspect.ns_id(level["pid"], "pid").ino == level["ns"]["pid"]
        assert level["starttime"] > 0

    env.engine.solve("ns-time")
    evidence = check(env, "ns-time")["evidence"]
    assert evidence["monotonic"] == [env.nonce * 86400, 0] == [evidence["wanted_seconds"], 0]


# --- cheats -----------------------------------------------------------------------------------------

def test_a_binary_named_unshare_without_a_namespace_fails(env: LabEnv) -> None:
    fake = Path(tempfile.mkdtemp(prefix="lfns-fake-"))
    try:
        fake.chmod(0o755)
        shutil.copy("/bin/sleep", fake / "unshare")
        as_attendee(env, f"setsid {fake}/unshare 60 </dev/null >/dev/null 2>&1 &")
        time.sleep(0.1)
        assert any(p.comm == "unshare" for p in env.context("ns-user").processes())
        for lab_id in ("ns-user", "ns-ipc", "ns-uts", "ns-time", "ns-mount-1"):
            result = check(env, lab_id)
            assert result["status"] == "failed", (lab_id, result)
            assert "None of your processes" in result["reason"]
    finally:
        env.engine.reset("ns-user")
        shutil.rmtree(fake)


def test_unshare_p_without_f_fails_with_the_hint(env: LabEnv) -> None:
    # The first child becomes the namespace's PID 1 and exits; every later fork then fails.
    done = as_attendee(env, "unshare -rp bash -c '/bin/true; /bin/true; /bin/true'")
    assert "Cannot allocate memory" in done.stderr
    as_attendee(env, "setsid unshare -rp sleep 60 </dev/null >/dev/null 2>&1 &")
    result = check(env, "ns-pid")
    assert result["status"] == "failed"
    assert "add -f" in result["reason"]
    assert_clean_after_reset(env, "ns-pid")


def test_a_forged_status_bind_mount_is_detected(env: LabEnv, tmp_path: Path) -> None:
    as_attendee(env, "setsid unshare -rfp --mount-proc sleep 60 </dev/null >/dev/null 2>&1 &")
    ctx = env.context("ns-pid")
    sleeper = next(p for p in _wait(lambda: [q for q in ctx.processes() if q.comm == "sleep" and q.nspid]))
    fake = tmp_path / "status"
    lines = Path(f"/proc/{sleeper.pid}/status").read_text().splitlines()
    fake.write_text("\n".join(f"NSpid:\t{sleeper.pid}\t7\t4\t2" if line.startswith("NSpid:") else line
                              for line in lines) + "\n")
    target = f"/proc/{sleeper.pid}/status"
    subprocess.run(["mount", "--bind", str(fake), target], check=True)
    try:
        result = check(env, "ns-pid")
        assert result["status"] == "forged", result
        assert "not the kernel's" in result["reason"] and result["evidence"]["pid"] == sleeper.pid
    finally:
        subprocess.run(["umount", target], check=True)
    assert check(env, "ns-pid")["status"] == "failed"
    assert_clean_after_reset(env, "ns-pid")


def test_renaming_the_host_instead_of_a_uts_namespace_fails_and_reset_restores(env: LabEnv) -> None:
    """Runs in a UTS namespace private to this test: the machine's real hostname is never changed."""
    real = socket.gethostname()
    golden = Path("/etc/hostname").read_text().strip()
    assert real == golden, "this machine's hostname differs from /etc/hostname; the test needs them equal"
    ctx = env.context("ns-uts")
    outcome = _in_private_uts(lambda: _rename_check_reset(env, ctx.hostname))
    assert outcome["check"]["status"] == "failed"
    assert "renamed" in outcome["check"]["reason"] and ctx.hostname in outcome["check"]["reason"]
    assert outcome["reset"]["leftovers"] == []
    assert any("restored" in r for r in outcome["reset"]["removed"])
    assert outcome["hostname_after_reset"] == golden
    assert socket.gethostname() == real  # the real UTS namespace never changed


def _rename_check_reset(env: LabEnv, name: str) -> dict:
    socket.sethostname(name)
    result = check(env, "ns-uts")
    report = ns.reset_uts_hostname(env.context("ns-uts"), ns.UtsParams())
    return {"check": result, "reset": report.to_dict(), "hostname_after_reset": socket.gethostname()}


def _in_private_uts(fn) -> dict:
    """Run ``fn`` in a forked child that has its own UTS namespace; return its JSON result."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.close(rfd)
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWUTS) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUTS)")
            data = json.dumps(fn()).encode()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            data, code = json.dumps({"error": repr(exc)}).encode(), 1
        os.write(wfd, data)
        os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data)
    assert "error" not in out, out["error"]
    return out


def test_forgot_m_tmpfs_on_the_host_is_reported_and_only_it_unmounted(env: LabEnv) -> None:
    base = Path(tempfile.mkdtemp(prefix="lfns-mnt-"))
    lab_point, other = base / "mnt", base / "other"
    lab_point.mkdir()
    other.mkdir()
    ctx = env.context("ns-mount-1")
    params = ns.MountParams(mount_point=str(lab_point))
    try:
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(other)], check=True)
        for _ in range(2):  # mounted twice by a confused attendee
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(lab_point)], check=True)
        result = ns.check_mount_private(ctx, params)
        assert result.status == "failed" and "escaped" in result.reason

        report = ns.reset_mount_private(ctx, params)

        assert report.leftovers == [] and len(report.removed) == 2
        points = [m.mount_point for m in procfs.mountinfo()]
        assert str(lab_point) not in points
        assert str(other) in points  # not the lab's: left alone
    finally:
        subprocess.run(["umount", "-l", str(other)], capture_output=True)
        while str(lab_point) in [m.mount_point for m in procfs.mountinfo()]:
            subprocess.run(["umount", "-l", str(lab_point)], check=True)
        shutil.rmtree(base)


def test_forgot_i_host_segment_is_reported_and_only_the_attendees_removed(env: LabEnv) -> None:
    mine = subprocess.run(["ipcmk", "-M", "4096"], capture_output=True, text=True, check=True)
    root_shmid = mine.stdout.split()[-1]
    try:
        as_attendee(env, "ipcmk -M 4096 >/dev/null")
        result = check(env, "ns-ipc")
        assert result["status"] == "failed" and "forgot -i" in result["reason"]
        assert len(result["evidence"]["host_segments_of_yours"]) == 1

        out = env.engine.reset("ns-ipc")

        assert out["leftovers"] == [] and any("host SysV shm" in r for r in out["removed"])
        assert env.residue("ns-ipc") == []
        assert int(root_shmid) in {s["shmid"] for s in nsinspect.sysvipc_shm()}
    finally:
        subprocess.run(["ipcrm", "-m", root_shmid], check=True)


@pytest.mark.parametrize(("lab_id", "script", "words"), [
    ("ns-user", "unshare -U sleep 60", "uid_map"),
    ("ns-uts", "unshare -Uru sh -c 'hostname not-the-one; exec sleep 60'", "not-the-one"),
    ("ns-time", "unshare -UrT --monotonic=86401 sleep 60", "this lab wants"),
    ("ns-ipc", "unshare -Uri sleep 60", "holds no shared memory segment"),
    ("ns-mount-2", "mkdir -p ~/rootfs/bin && cp /bin/busybox ~/rootfs/bin/ && unshare -Urm sleep 60", "as its root"),
])
def test_almost_right_gets_a_reason_that_says_what_is_missing(env: LabEnv, lab_id: str, script: str,
                                                               words: str) -> None:
    as_attendee(env, f"setsid bash -c {shlex.quote(script)} </dev/null >/dev/null 2>&1 &")
    result = _wait(lambda: (r := check(env, lab_id)) and words in r["reason"] and r, timeout=3)
    assert result["status"] == "failed"
    assert_clean_after_reset(env, lab_id)


def test_reset_never_touches_a_namespace_that_is_not_the_attendees(env: LabEnv) -> None:
    stranger = subprocess.Popen(["unshare", "-u", "sleep", "60"], start_new_session=True)
    try:
        _wait(lambda: nsinspect.ns_id(stranger.pid, "uts") != nsinspect.ns_id("self", "uts"))
        env.engine.solve("ns-uts")
        out = env.engine.reset("ns-uts")
        assert out["leftovers"] == []
        assert stranger.poll() is None
    finally:
        os.killpg(stranger.pid, signal.SIGKILL)
        stranger.wait()


def test_cgroup_namespace_made_before_the_move_is_not_rooted_there(env: LabEnv) -> None:
    ctx = env.context("ns-cgroup")
    cg_dir = ctx.cgroup_dir(*reversed(ctx.cgroup))
    as_attendee(env, f"sudo mkdir -p {cg_dir}; setsid unshare -UrC sleep 60 </dev/null >/dev/null 2>&1 &")
    (late,) = _wait(lambda: [p for p in ctx.processes() if p.comm == "sleep" and ctx.in_new_ns(p, "cgroup")])
    (cg_dir / "cgroup.procs").write_text(str(late.pid))  # moved after its cgroup namespace was made
    result = _wait(lambda: (r := check(env, "ns-cgroup")) and "before" in r["reason"] and r, timeout=3)
    assert result["evidence"]["members"][0]["seen_inside"] != "/"
    assert_clean_after_reset(env, "ns-cgroup")
    assert not cg_dir.exists()


def _wait(fn, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            assert value, f"not reached within {timeout} s"
            return value
        time.sleep(0.02)
