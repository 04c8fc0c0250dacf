"""The agent runs as root; the attendee's home is theirs. Every lab that reads or writes under home is
tried with what an attendee without sudo can plant there: a link to a root-only file (a shadow-like line
with a secret), a FIFO, a link to /dev/zero, a directory on the way linked to a root-only directory, and a
root-owned hard link (what fs.protected_hardlinks=0 would let them make).

Each check, solve and reset runs in a forked copy of the test process (the engine, as the agent runs it)
with its address space capped and a bounded wait: a regression that hangs on the FIFO or reads /dev/zero
until memory runs out fails the test instead of hanging the suite or eating the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from node_agent.attendee_socket import AttendeeServer
from node_agent.labs import render
from node_agent.labs.service import LabService
from tests import attendee_share
from tests.labs.conftest import LabEnv

BOUND = 60.0          # seconds a single check, solve or reset may take before the test calls it hung
MEMORY_HEADROOM = 768 * 1024 * 1024  # address space the forked engine may add to what it has


@dataclass(frozen=True)
class Target:
    """Where a lab reads or writes under home (relative), the directory that holds it, the step to solve."""

    path: str
    directory: str
    solve_step: str
    check_reads_it: bool = True


TARGETS = {
    "sc-profile": Target("seccomp/profile/profile.txt", "seccomp/profile", "trace"),
    "sc-strict": Target("seccomp/strict/strict", "seccomp/strict", "strict"),
    "sc-filter": Target("seccomp/filter/filter", "seccomp/filter", "allow"),
    # its check reads only the kernel; its custom step's solve writes the profile
    "sc-docker": Target("seccomp/docker/custom.json", "seccomp/docker", "custom", check_reads_it=False),
    "ns-mount-2": Target("rootfs", "rootfs", "enter-rootfs"),
}
PLANTS = ["link-to-secret", "fifo", "link-to-zero", "dir-link", "hardlink"]
# What a reason says about each plant, besides naming the path.
SAYS = {"link-to-secret": "symbolic link", "fifo": "FIFO", "link-to-zero": "symbolic link",
        "dir-link": "symbolic link", "hardlink": "not by you"}
PROBLEM_WORDS = ("symbolic link", "FIFO", "not by you", "not a directory", "not a regular file")


@dataclass
class Vault:
    """A root-only directory next to the homes (same file system, so a hard link works) with a secret."""

    root: Path
    secret: str

    @property
    def shadow(self) -> Path:
        return self.root / "shadow"

    @property
    def tree(self) -> Path:
        return self.root / "tree"

    def snapshot(self) -> dict[str, tuple[int, int, str]]:
        out = {}
        for dirpath, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = Path(dirpath, name)
                st = path.lstat()
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
                out[str(path.relative_to(self.root))] = (st.st_mode, st.st_uid, digest)
        return out


@pytest.fixture(autouse=True)
def _home_left_clean(lab_env):
    """The account lives for the session: what a test planted in its home goes with the test (rm -rf
    removes a link, not what it points to)."""
    yield
    home = lab_env.attendee.home
    subprocess.run(["rm", "-rf", "--one-file-system", str(home / "seccomp"), str(home / "rootfs")], check=True)


@pytest.fixture
def vault(attendee) -> Vault:
    root = attendee.home.parent / f".lf-vault-{secrets.token_hex(4)}"
    root.mkdir(mode=0o700)
    secret = f"root:$y$j9T${secrets.token_hex(16)}:19700:0:99999:7:::"
    v = Vault(root, secret)
    v.shadow.write_text(secret + "\n")
    v.shadow.chmod(0o600)
    v.tree.mkdir(mode=0o755)  # what a linked directory leads to: a file of each target's name, the secret
    for t in TARGETS.values():
        if t.path != t.directory:
            (v.tree / Path(t.path).name).write_text(secret + "\n")
            (v.tree / Path(t.path).name).chmod(0o755)
    yield v
    shutil.rmtree(root, ignore_errors=True)


def plant(env: LabEnv, lab: str, how: str, vault: Vault) -> Path:
    """Plant ``how`` for ``lab`` as the attendee would (the hard link as root); returns the planted path."""
    t = TARGETS[lab]
    home = env.attendee.home
    if t.directory != t.path:
        env.as_attendee(f"mkdir -p ~/{Path(t.directory).parent} && rm -rf ~/{t.directory}", lab)
    if how == "dir-link":
        env.as_attendee(f"ln -s {vault.tree} ~/{t.directory}", lab)
        return home / t.directory
    if t.directory != t.path:
        env.as_attendee(f"mkdir -p ~/{t.directory}", lab)
    if how == "link-to-secret":
        env.as_attendee(f"ln -s {vault.shadow} ~/{t.path}", lab)
    elif how == "fifo":
        env.as_attendee(f"mkfifo ~/{t.path}", lab)
    elif how == "link-to-zero":
        env.as_attendee(f"ln -s /dev/zero ~/{t.path}", lab)
    elif how == "hardlink":
        os.link(vault.shadow, home / t.path)
    return home / t.path


def bounded(fn: Callable[[], Any]) -> dict[str, Any]:
    """``fn()`` in a forked copy of this process with its memory capped; {"result": ...} or {"error": ...},
    or {"hung": True} when it is still running after BOUND seconds (then it is killed by its pid)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            soft = _address_space() + MEMORY_HEADROOM
            resource.setrlimit(resource.RLIMIT_AS, (soft, soft))
            try:
                out = {"result": fn()}
            except BaseException as exc:  # noqa: BLE001 - reported to the parent, which judges it
                out = {"error": f"{type(exc).__name__}: {exc}"}
            data = json.dumps(out, default=str).encode()
            with os.fdopen(write_end, "wb") as w:
                w.write(data)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    try:
        with os.fdopen(read_end, "rb", buffering=0) as r:
            while True:
                ready, _, _ = select.select([r], [], [], BOUND)
                if not ready:
                    os.kill(pid, signal.SIGKILL)
                    return {"hung": True}
                chunk = r.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b'{"error": "the forked engine died"}')


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def shown(outcome: dict[str, Any]) -> str:
    """Everything the caller gets back, as JSON and as the `lab` command prints it with evidence."""
    text = json.dumps(outcome)
    result = outcome.get("result")
    if isinstance(result, dict) and "steps" in result:
        text += render.check(result, evidence=True)
    return text


def assert_no_secret(outcome: dict[str, Any], vault: Vault) -> None:
    text = shown(outcome)
    token = vault.secret.split("$")[-1].split(":")[0]
    assert vault.secret not in text and token not in text, f"the secret reached the caller: {text[:2000]}"


@pytest.mark.parametrize("how", PLANTS)
@pytest.mark.parametrize("lab", list(TARGETS))
def test_planted_files_never_leak_hang_or_redirect_a_root_write(lab_env, vault, lab, how):
    t = TARGETS[lab]
    planted = plant(lab_env, lab, how, vault)
    before = vault.snapshot()
    engine = lab_env.engine

    checked = bounded(lambda: engine.check(lab))
    assert "hung" not in checked, f"check of {lab} with a {how} hung"
    assert "error" not in checked, checked
    assert_no_secret(checked, vault)
    steps = checked["result"]["steps"]
    assert all(s["status"] == "failed" for s in steps), steps
    if t.check_reads_it:
        reason = steps[0]["reason"]
        says = "not a directory" if (lab, how) == ("ns-mount-2", "hardlink") else SAYS[how]
        assert str(planted) in reason and says in reason, reason

    solved = bounded(lambda: engine.solve(lab, t.solve_step))
    assert "hung" not in solved, f"solve of {lab} with a {how} hung"
    assert_no_secret(solved, vault)
    if "error" in solved:  # refused: it says which path and why
        assert str(planted) in solved["error"] and any(w in solved["error"] for w in PROBLEM_WORDS), solved
    else:
        assert solved["result"]["passed"], solved  # it replaced the planted file with its own, as the attendee
    assert vault.snapshot() == before, "a file outside the attendee's home was created or changed"

    reset = bounded(lambda: engine.reset(lab))
    assert "hung" not in reset, f"reset of {lab} with a {how} hung"
    assert "error" not in reset, reset
    assert_no_secret(reset, vault)
    assert vault.snapshot() == before, "a file outside the attendee's home was created, changed or removed"
    if os.path.lexists(planted):  # only what root planted stays, and the reset says so
        assert how == "hardlink" and any(str(planted) in x for x in reset["result"]["leftovers"]), reset
        planted.unlink()


def lab_cli(server: AttendeeServer, env: LabEnv, *args: str) -> subprocess.CompletedProcess:
    a = env.attendee
    share = attendee_share.get()
    argv = ["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--init-groups", "--", share.python, "-m",
            "node_agent.attendee_cli", "--socket", str(server.path), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=BOUND, cwd=share.root, env=share.env())


@pytest.fixture
def served_labs(lab_env):
    sock_dir = Path("/run") / f"labfleet-test-{lab_env.prefix}"
    server = AttendeeServer(sock_dir / "attendee.sock", LabService(lab_env.engine))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.mark.parametrize("how", ["link-to-secret", "fifo"])
def test_lab_check_over_the_socket_neither_leaks_nor_holds_the_lab_lock(lab_env, vault, served_labs, how):
    """The attendee's own `lab check -v`, twice: the second answers too, so the lab lock was let go."""
    planted = plant(lab_env, "sc-profile", how, vault)
    try:
        for _ in range(2):
            out = lab_cli(served_labs, lab_env, "--lab", "sc-profile", "check", "-v")
            assert out.returncode == 1 and "[FAIL] trace" in out.stdout, out
            assert str(planted) in out.stdout and SAYS[how] in out.stdout, out.stdout
            assert vault.secret not in out.stdout + out.stderr
    finally:
        if how == "fifo":  # a regression blocks the agent's thread opening it: let it go
            with contextlib.suppress(OSError):
                os.close(os.open(planted, os.O_WRONLY | os.O_NONBLOCK))


def test_a_mount_in_the_home_is_not_crossed(lab_env, tmp_path):
    """A file system mounted in the home (fusermount needs no sudo; a FUSE server can stall every read) is
    not read through: the check refuses it, naming the mount."""
    lab_env.run_walkthrough("sc-profile", "trace")
    profile = lab_env.attendee.home / "seccomp/profile"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "lfmount", str(profile)], check=True)
    try:
        answer = profile / "profile.txt"
        answer.write_text("write\nexit_group\n")
        os.chown(answer, lab_env.attendee.uid, lab_env.attendee.gid)
        checked = bounded(lambda: lab_env.engine.check("sc-profile"))
        step = checked["result"]["steps"][0]
        assert step["status"] == "failed" and f"{profile} is a mount point" in step["reason"], step
    finally:
        subprocess.run(["umount", str(profile)], check=True)


def test_a_reset_leaves_no_empty_folder_the_walkthrough_made_on_the_way(lab_env):
    """`mkdir -p ~/seccomp/strict` makes ~/seccomp too: once the lab's folder is gone the empty parent goes,
    but never one that still holds something of the attendee's."""
    home = lab_env.attendee.home
    lab_env.run_walkthrough("sc-strict", "strict")
    assert (home / "seccomp/strict").is_dir()
    report = lab_env.engine.reset("sc-strict")
    assert report["clean"], report
    assert not (home / "seccomp").exists(), sorted(str(p) for p in (home / "seccomp").rglob("*"))

    lab_env.run_walkthrough("sc-strict", "strict")
    lab_env.as_attendee("echo mine > ~/seccomp/notes.txt", "sc-strict")
    report = lab_env.engine.reset("sc-strict")
    assert report["clean"], report
    assert not (home / "seccomp/strict").exists()
    assert (home / "seccomp/notes.txt").read_text() == "mine\n"
