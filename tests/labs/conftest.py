"""Fixtures for lab tests: a real non-root attendee, an engine over the repo's labs, cleanup by name.

Everything is real: the attendee is a Linux account (with passwordless sudo,
like ``class`` on a lab VM) created for this pytest session under a unique
name, so concurrent test runs on one machine never see each other's
processes, cgroups, network namespaces or IPC objects. Each test gets its own
lab prefix and cgroup parent; after the test, whatever the lab left is
removed by those names, and the leftovers found are reported.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node_agent.kernel import procfs, reaper
from node_agent.labs import residue as residue_scan
from node_agent.labs.context import Attendee, LabContext
from node_agent.labs.engine import Engine
from node_agent.labs.loader import load_catalog
from node_agent.labs.model import Lab
from node_agent.labs.progress import ProgressStore
from tests import attendee_share
from tests.labs.helpers import kill_quietly

REPO = Path(__file__).resolve().parents[2]
LABS_DIR = REPO / "labs"  # read as root; what the attendee reads is attendee_share.get().labs

if os.geteuid() != 0:
    pytest.skip("lab tests act on the real kernel as root (namespaces, cgroups, seccomp); run them as root",
                allow_module_level=True)


@pytest.fixture(scope="session", autouse=True)
def _subreaper():
    # The agent is a child subreaper; so is the test process, so killed lab processes are reaped here.
    reaper.become_subreaper()


@pytest.fixture(scope="session", autouse=True)
def _agent_code_the_attendee_can_read() -> Iterator[None]:
    # sc-docker's holder runs the agent's own node_agent as the attendee. On a VM that is the agent's
    # venv under /opt; here it is the clone, which may sit under a 0700 directory: point it at the copy.
    from node_agent.labs.builtins import seccomp

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(seccomp, "_agent_root", lambda: Path(attendee_share.get().pythonpath))
        yield


@pytest.fixture(scope="session", autouse=True)
def _staged_rootfs():
    # What the playbook stages on a lab VM for ns-mount-2 (a busybox root fs; never downloaded).
    from node_agent.kernel import rootfs

    if not rootfs.DEFAULT_TARBALL.exists():
        rootfs.build(rootfs.DEFAULT_TARBALL)


@pytest.fixture(scope="session")
def attendee() -> Attendee:
    name = "lf" + secrets.token_hex(3)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    sudoers = Path(f"/etc/sudoers.d/labfleet-test-{name}")
    sudoers.write_text(f"{name} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    account = Attendee.lookup(name)
    try:
        yield account
    finally:
        _kill_uid(account.uid)
        sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def _kill_uid(uid: int) -> None:
    # Fleet hosts' attendees can share this uid (each host has its own /etc/passwd); their
    # processes live under labfleet-fleet/ and belong to whichever suite started that fleet.
    for pid in procfs.pids():
        if procfs.uid_of(pid) == uid and not _in_fleet_host(pid):
            kill_quietly(pid)
    reaper.reap_orphans()


def _in_fleet_host(pid: int) -> bool:
    try:
        return "/labfleet-fleet/" in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


class LabEnv:
    """One test's lab names (prefix, cgroup parent, work dir) and the engine that uses them."""

    def __init__(self, attendee: Attendee, tmp: Path, labs_dir: Path | None = None, nonce: int = 0) -> None:
        self.attendee = attendee
        self.prefix = "t" + secrets.token_hex(2)
        self.cgroup_parent = f"labfleet-test/{self.prefix}"
        self.work_root = tmp / "labs-work"
        self.nonce = nonce or (int(secrets.token_hex(2), 16) % 999 + 1)
        # The walkthroughs read lab files ($LAB_LAB_DIR) as the attendee: the catalog's readable copy.
        self.labs_dir = labs_dir or attendee_share.get().labs
        self.catalog = load_catalog(self.labs_dir)
        self.engine = Engine(self.catalog, self.context, ProgressStore(self.work_root / "progress.json"))

    def context(self, lab: Lab | str) -> LabContext:
        if isinstance(lab, str):
            lab = self.catalog.labs.get(lab) or lab
        lab_id = lab if isinstance(lab, str) else lab.id
        lab_dir = lab.path if isinstance(lab, Lab) else self.labs_dir / lab_id
        cgroup = lab.cgroup if isinstance(lab, Lab) else ("cglab1", "pids")
        return LabContext(lab_id=lab_id, lab_dir=lab_dir, attendee=self.attendee, nonce=self.nonce,
                          prefix=self.prefix, cgroup_parent=self.cgroup_parent, work_root=self.work_root,
                          cgroup=cgroup)

    def env(self, lab_id: str) -> dict[str, str]:
        ctx = self.context(lab_id)
        values = {f"LAB_{k.upper()}": v for k, v in ctx.placeholders().items()}
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.attendee.home),
                "USER": self.attendee.user, "LOGNAME": self.attendee.user, "LANG": "C.UTF-8", **values}

    def run_walkthrough(self, lab_id: str, step_id: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """The step's walkthrough in a real bash as the attendee; fails the test with its output on error.

        The script is fed on stdin: the attendee may not be allowed into a test's private temp dir.
        """
        step = self.catalog.get(lab_id).step(step_id)
        assert step.walkthrough is not None, f"{lab_id}/{step_id} has no walkthrough"
        done = subprocess.run(self.attendee_argv("bash", "-s"), input=step.walkthrough.read_text(),
                              env=self.env(lab_id), cwd=self.attendee.home, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, (f"walkthrough {lab_id}/{step_id} exited {done.returncode}\n"
                                      f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        return done

    def attendee_argv(self, *argv: str) -> list[str]:
        """``argv`` run as the attendee (uid, gid and its groups; sudo allowed, as on a lab VM)."""
        a = self.attendee
        return ["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--init-groups", "--", *argv]

    def as_attendee(self, script: str, lab_id: str, *, env: dict[str, str] | None = None, check: bool = True,
                    background: bool = False, timeout: float = 30):
        """``script`` in bash as the attendee, in its home, with the lab's LAB_* environment (or ``env``).

        ``background``: a Popen in its own session (stdin and stdout piped, stderr into stdout). Otherwise
        the finished run; with ``check`` the test fails with the script and its output unless it exited 0.
        """
        argv = self.attendee_argv("bash", "-c", script)
        kw: dict[str, Any] = dict(env=self.env(lab_id) if env is None else env, cwd=self.attendee.home, text=True)
        if background:
            return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True, **kw)
        done = subprocess.run(argv, capture_output=True, timeout=timeout, **kw)
        if check:
            assert done.returncode == 0, (f"attendee script exited {done.returncode}:\n{script}\n"
                                          f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        return done

    def residue(self, lab_id: str, **kw) -> list[str]:
        return residue_scan.scan(self.context(lab_id), **kw)

    def cleanup(self) -> list[str]:
        """Remove by this test's names whatever is left; returns what had to be removed."""
        ctx = self.context("cleanup")
        found = residue_scan.scan(ctx)
        _kill_uid(self.attendee.uid)
        members = [p for p in (procfs.read(pid) for pid in ctx.lab_cgroup_members()) if p]
        for p in members:
            kill_quietly(p.pid)
        ctx.wait_gone(members)
        for root in ctx.lab_cgroup_roots():
            if root.is_dir():
                for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    _rmdir(d)
                _rmdir(root)
            # The shared labfleet-test parent goes too once no other test session holds a child in it.
            with contextlib.suppress(OSError):
                root.parent.rmdir()
        for name in _listdir("/run/netns"):
            if name.startswith(self.prefix):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
        for name in _listdir("/sys/class/net"):
            if name.startswith(self.prefix):
                subprocess.run(["ip", "link", "del", name], capture_output=True)
        for flag in ("-m", "-s", "-q"):
            out = subprocess.run(["ipcs", flag, "-c"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                cols = line.split()
                if cols and cols[0].isdigit() and cols[3] == self.attendee.user:
                    subprocess.run(["ipcrm", flag, cols[0]], capture_output=True)
        home = str(self.attendee.home)
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            point = line.split()[4]
            if point.startswith(home + "/") or point == home:
                subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.work_root, ignore_errors=True)
        return found


def _rmdir(path: Path) -> None:
    for _ in range(200):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            reaper.reap_orphans()
            import time

            time.sleep(0.01)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


@pytest.fixture
def lab_env(attendee, tmp_path) -> LabEnv:
    env = LabEnv(attendee, tmp_path)
    yield env
    env.cleanup()


@pytest.fixture
def engine(lab_env) -> Engine:
    return lab_env.engine


@pytest.fixture
def lab_ctx(lab_env) -> LabContext:
    return lab_env.context("test")


@pytest.fixture
def run_walkthrough(lab_env):
    return lab_env.run_walkthrough


@pytest.fixture
def residue(lab_env):
    def scan(ctx_or_lab="test", **kw):
        ctx = ctx_or_lab if isinstance(ctx_or_lab, LabContext) else lab_env.context(ctx_or_lab)
        return residue_scan.scan(ctx, **kw)

    return scan
