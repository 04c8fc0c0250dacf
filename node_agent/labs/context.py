"""What a checker, solver or resetter may touch: the attendee, the lab's names, and tracked processes.

Confinement lives here, so built-ins cannot forget it: lab cgroups are only
ever under ``cgroup_parent``; ``kill`` refuses any process it cannot prove is
the lab's (the attendee's uid, a member of a lab cgroup, a holder the agent
started, or a process in a network namespace the lab owns); processes are
identified by (pid, starttime) and signalled through a pidfd, so a reused pid
is never hit.
See docs/labs.md.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node_agent.kernel import cgroup_layout, procfs, reaper
from node_agent.labs import system_cgroups
from node_agent.labs.model import ResetReport


@dataclass(frozen=True)
class Attendee:
    user: str
    uid: int
    gid: int
    home: Path

    @classmethod
    def lookup(cls, user: str) -> Attendee:
        try:
            pw = pwd.getpwnam(user)
        except KeyError as exc:
            raise LookupError(f"attendee account {user!r} does not exist on this VM") from exc
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, Path(pw.pw_dir))

    def groups(self) -> list[int]:
        return [g.gr_gid for g in grp.getgrall() if self.user in g.gr_mem]


@dataclass(frozen=True)
class Holder:
    pid: int
    starttime: int
    argv: tuple[str, ...]

    @property
    def key(self) -> tuple[int, int]:
        return self.pid, self.starttime


def nonce_for(machine_id: str, user: str) -> int:
    """A per-attendee number in 1..999, stable for this VM and account, so answers cannot be copied across."""
    digest = hashlib.sha256(f"{machine_id}:{user}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 999 + 1


def v1_mounts() -> dict[str, Path]:
    """``{controller: mount point}`` of the v1 hierarchies (``cpu`` and ``cpuacct`` may share one).

    Read once per context, so a check that asks for several controllers parses mountinfo once.
    """
    out: dict[str, Path] = {}
    for mount in procfs.mountinfo("self"):
        if mount.fstype == "cgroup":
            for option in mount.super_options:
                out.setdefault(option, Path(mount.mount_point))
    return out


class LabContext:
    def __init__(self, *, lab_id: str, lab_dir: Path, attendee: Attendee, nonce: int, prefix: str,
                 cgroup_parent: str, work_root: Path, cgroup: tuple[str, str] = ("cglab1", "pids")) -> None:
        self.lab_id, self.lab_dir, self.attendee, self.nonce = lab_id, lab_dir, attendee, nonce
        self.cgroup = cgroup  # the lab's own cgroup (name, controller): what {cgroup_dir} shows
        self.prefix, self.cgroup_parent = prefix, cgroup_parent.strip("/")
        if not self.cgroup_parent or ".." in self.cgroup_parent.split("/") or not prefix:
            # An empty parent would make every process on the VM a "lab cgroup member".
            raise ValueError(f"cgroup_parent {cgroup_parent!r} and prefix {prefix!r} must be non-empty paths "
                             "without '..'")
        self.work_dir = work_root / lab_id
        self.cgroup_layout = cgroup_layout.detect_layout()
        self._unified = cgroup_layout.unified_root(self.cgroup_layout)
        self._v1 = v1_mounts() if self.cgroup_layout != "v2" else {}
        self._v2_controllers = set(cgroup_layout.cgroup_controllers(self._unified)) if self._unified else set()
        self.own_ns = procfs.ns_inodes("self")
        self.owned_netns: set[int] = set()

    # -- names the lab text shows ------------------------------------------------------
    @property
    def hostname(self) -> str:
        return f"lab-{self.nonce}"

    @property
    def pids_max(self) -> int:
        return 5 + self.nonce % 16

    def placeholders(self, cgroup: str | None = None, controller: str | None = None) -> dict[str, str]:
        cgroup, controller = cgroup or self.cgroup[0], controller or self.cgroup[1]
        cg_dir = self.cgroup_dir(controller, cgroup)
        return {"nonce": str(self.nonce), "hostname": self.hostname, "pids_max": str(self.pids_max),
                "cgroup": f"{self.cgroup_parent}/{cgroup}", "cgroup_dir": str(cg_dir) if cg_dir else "",
                "cgroup_parent": self.cgroup_parent, "user": self.attendee.user, "home": str(self.attendee.home),
                "lab_dir": str(self.lab_dir), "prefix": self.prefix}

    # -- cgroups -------------------------------------------------------------------------
    def cgroup_backend(self, controller: str) -> str | None:
        """``"v1"`` when the controller has a v1 hierarchy, else ``"v2"`` when unified offers it, else None."""
        if controller in self._v1:
            return "v1"
        if controller in self._v2_controllers:
            return "v2"
        return None

    def cgroup_root(self, controller: str) -> Path | None:
        backend = self.cgroup_backend(controller)
        if backend == "v1":
            return self._v1[controller]
        if backend == "v2":
            return self._unified
        return None

    def cgroup_dir(self, controller: str, name: str) -> Path | None:
        """Where the lab cgroup ``name`` lives for ``controller``, always under the parent; None if unavailable."""
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"lab cgroup name {name!r}: expected one path component under the lab parent")
        root = self.cgroup_root(controller)
        return None if root is None else root / self.cgroup_parent / name

    def lab_cgroup_roots(self) -> list[Path]:
        """The parent directory in every hierarchy (v1 ones and unified), existing or not."""
        roots = {p / self.cgroup_parent for p in self._v1.values()}
        if self._unified:
            roots.add(self._unified / self.cgroup_parent)
        return sorted(roots)

    def lab_cgroup_dirs(self) -> list[Path]:
        """Every cgroup at or below the parent that is the lab's: never one holding the VM's own processes.

        A cgroup of PID 1, the agent or its ancestors, anything below it and anything above it is the
        system's (``system_cgroups``), whatever the parent: a misplaced parent cannot make the VM residue.
        """
        system = system_cgroups.system_dirs(self._v1, self._unified)
        out = []
        for root in self.lab_cgroup_roots():
            if not root.is_dir():
                continue
            # Only the VM's cgroups inside this subtree matter: PID 1 in a hierarchy's root is above every lab.
            inside = {s for s in system if s == root or root in s.parents}
            for dirpath, dirs, _files in os.walk(root):
                here = Path(dirpath)
                dirs[:] = [d for d in dirs if here / d not in inside]
                if not system_cgroups.is_system(here, inside):
                    out.append(here)
        return out

    def lab_cgroup_members(self) -> set[int]:
        pids: set[int] = set()
        for directory in self.lab_cgroup_dirs():
            try:
                with open(directory / "cgroup.procs") as f:
                    pids.update(int(p) for p in f.read().split())
            except OSError:
                pass
        return pids

    # -- processes -----------------------------------------------------------------------
    @property
    def _holders_file(self) -> Path:
        return self.work_dir / "holders.json"

    def holders(self) -> list[Holder]:
        try:
            data = json.loads(self._holders_file.read_text())
        except (OSError, ValueError):
            return []
        return [Holder(h["pid"], h["starttime"], tuple(h["argv"])) for h in data
                if procfs.alive(h["pid"], h["starttime"])]

    def _save_holders(self, holders: list[Holder]) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        data = [{"pid": h.pid, "starttime": h.starttime, "argv": list(h.argv)} for h in holders]
        tmp = self._holders_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._holders_file)

    def processes(self, *, all_uids: bool = False) -> list[procfs.ProcInfo]:
        """The lab's live processes: the attendee's, lab cgroup members and holders (everyone's if ``all_uids``)."""
        me = os.getpid()
        wanted = self.lab_cgroup_members() | {h.pid for h in self.holders()}
        out = []
        for pid in procfs.pids():
            if pid == me:
                continue
            # The /proc/<pid> owner comes from the kernel's inode, which no bind mount over
            # status can change: a forged status file does not hide a process from the checks.
            owner = procfs.uid_of(pid)
            if not all_uids and pid not in wanted and owner != self.attendee.uid:
                continue
            info = procfs.read(pid)
            if info is None or info.state in ("Z", "X") or pid == 2 or info.ppid == 2:
                continue
            if all_uids or owner == self.attendee.uid or info.uid == self.attendee.uid or pid in wanted:
                out.append(info)
        return out

    def in_new_ns(self, info: procfs.ProcInfo, ns_type: str) -> bool:
        return ns_type in info.ns and info.ns[ns_type] != self.own_ns.get(ns_type)

    def is_lab_process(self, info: procfs.ProcInfo, members: set[int] | None = None) -> bool:
        if info.pid in system_cgroups.protected_pids() or info.ppid == 2 or info.pid == 2:
            return False
        if info.uid == self.attendee.uid or procfs.uid_of(info.pid) == self.attendee.uid:
            return True
        members = self.lab_cgroup_members() if members is None else members
        if info.pid in members or info.key in {h.key for h in self.holders()}:
            return True
        # A network namespace proves membership only if it is not the agent's own: an attendee can
        # bind-mount the host's namespace under a lab name, and "everything in it" is the whole VM.
        net = info.ns.get("net")
        return net is not None and net != self.own_ns.get("net") and net in self.owned_netns

    def kill(self, procs: list[procfs.ProcInfo], *, timeout: float = 3.0) -> list[int]:
        """SIGKILL the lab's processes among ``procs`` (others are refused), reap, wait until gone."""
        members = self.lab_cgroup_members()
        refused = [p.pid for p in procs if not self.is_lab_process(p, members)]
        if refused:
            raise PermissionError(f"refusing to kill processes that are not the lab's: {refused}")
        killed = []
        for p in procs:
            try:
                fd = os.pidfd_open(p.pid)
            except ProcessLookupError:
                continue
            try:
                if procfs.alive(p.pid, p.starttime):  # the pidfd now pins this exact process
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                    killed.append(p.pid)
            except ProcessLookupError:
                pass
            finally:
                os.close(fd)
        self.wait_gone([p for p in procs if p.pid in killed], timeout=timeout)
        return killed

    def wait_gone(self, procs: list[procfs.ProcInfo], *, timeout: float = 3.0) -> list[int]:
        """Reap and wait until each process is gone (zombies included); returns the pids still there."""
        deadline = time.monotonic() + timeout
        pending = list(procs)
        while True:
            reaper.reap_orphans()
            pending = [p for p in pending if procfs.starttime(p.pid) == p.starttime]
            if not pending or time.monotonic() > deadline:
                return [p.pid for p in pending]
            time.sleep(0.001)

    def kill_holders(self) -> list[int]:
        live = [info for info in (procfs.read(h.pid) for h in self.holders()) if info is not None]
        killed = self.kill(live)
        self._save_holders([])
        return killed

    def _wrap(self, argv: list[str], *, as_attendee: bool, cgroup_dirs: list[Path], netns: str | None) -> list[str]:
        # A root stub joins the cgroups and the netns first, then drops to the attendee: the
        # process is in place before it can fork, and attendee code never runs as root.
        wrapped = list(argv)
        if as_attendee and os.geteuid() == 0:
            a = self.attendee
            wrapped = ["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--init-groups", "--", *wrapped]
        if netns:
            wrapped = ["ip", "netns", "exec", netns, *wrapped]
        if cgroup_dirs:
            joins = " && ".join(f'echo $$ > "{d}/cgroup.procs"' for d in cgroup_dirs)
            wrapped = ["sh", "-c", f'{joins} && exec "$@"', "lab-holder", *wrapped]
        return wrapped

    def spawn(self, argv: list[str], *, as_attendee: bool = True, cgroup: str | list[Path] | None = None,
              controllers: tuple[str, ...] = ("pids",), netns: str | None = None, stdin_open: bool = False,
              env: dict[str, str] | None = None) -> Holder:
        """Start a tracked holder in its own session; ``reset`` kills it (and the agent reaps it)."""
        dirs: list[Path] = []
        if isinstance(cgroup, str):
            dirs = [d for d in (self.cgroup_dir(c, cgroup) for c in controllers) if d is not None]
        elif cgroup:
            dirs = list(cgroup)
        full = self._wrap(argv, as_attendee=as_attendee, cgroup_dirs=dirs, netns=netns)
        proc = subprocess.Popen(full, stdin=subprocess.PIPE if stdin_open else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                cwd=str(self.attendee.home) if as_attendee else "/",
                                env=env or holder_env(self.attendee if as_attendee else None))
        _KEEP[proc.pid] = proc  # an open stdin pipe must outlive this call
        holder = Holder(proc.pid, procfs.starttime(proc.pid) or 0, tuple(argv))
        self._save_holders([*self.holders(), holder])
        return holder

    def run(self, argv: list[str], *, as_attendee: bool = False, timeout: float = 10, netns: str | None = None,
            input: str | None = None, stdin: int | None = None, cwd: str | None = None
            ) -> subprocess.CompletedProcess:
        """Run a short helper command to completion (never a shell string); its exit status is its own.

        ``stdin``: a descriptor the command reads (a file the agent opened), instead of ``input`` text.
        As the attendee, ``cwd`` is entered after the drop to their uid (``env -C``): a directory they
        link elsewhere then takes the command only where they could go themselves.
        """
        if as_attendee:
            argv = ["env", "-C", cwd or str(self.attendee.home), "--", *argv]
        full = self._wrap(argv, as_attendee=as_attendee, cgroup_dirs=[], netns=netns)
        with reaper.spawning():
            proc = subprocess.Popen(full, stdin=stdin if stdin is not None else
                                    subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    cwd="/" if as_attendee else cwd or "/",
                                    env=holder_env(self.attendee if as_attendee else None))
            reaper.own(proc.pid)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        finally:
            reaper.disown(proc.pid)
        return subprocess.CompletedProcess(full, proc.returncode, out, err)

    def remove_from_home(self, relpath: Path | str) -> ResetReport:
        """Remove ~/``relpath`` (a tree or a file) the safe way, the only way a lab deletes in a home.

        No link is followed and no mount crossed (every step opened O_NOFOLLOW from the home, the
        tree removed through directory descriptors); only the attendee's own entry goes. What could
        not be removed is in the report's leftovers. See ``attendee_files.remove``.
        """
        from node_agent.labs import attendee_files  # it builds on this module

        return attendee_files.remove(self, relpath)

    def describe(self) -> dict[str, Any]:
        return {"lab": self.lab_id, "attendee": self.attendee.user, "nonce": self.nonce, "prefix": self.prefix,
                "cgroup_parent": self.cgroup_parent, "cgroup_layout": self.cgroup_layout}


_KEEP: dict[int, subprocess.Popen] = {}


def holder_env(attendee: Attendee | None) -> dict[str, str]:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    if attendee is not None:
        env.update(HOME=str(attendee.home), USER=attendee.user, LOGNAME=attendee.user)
    return env
