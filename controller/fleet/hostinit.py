"""PID 1 of one fleet host: enter its namespaces, build its root, run its sshd, reap.

Run by path with the standard library only (``python -I hostinit.py``) so it
starts fast and does not depend on the venv once the root has moved. The
machine side (``launch.py``) writes a JSON config to stdin *after* placing
this process in the host's cgroups, so everything forked below inherits them.

Stage 0 (this process, in the machine's namespaces): ``setns`` into the
host's named network namespace, ``unshare`` mount, UTS, IPC and PID
namespaces, fork, print the child's PID and exit. Stage 1 (the child, PID 1 of
the new PID namespace): hostname, an overlay of ``/`` with the host's upper
layer, fresh /proc, /sys, /run, /tmp, /dev/shm, /sys/fs/cgroup bound in, the
fleet's state directory hidden, ``pivot_root`` into it, then sshd in the
foreground. Signals: SIGUSR1 stops sshd (and every process under it, like
``systemctl stop ssh``), SIGUSR2 starts it again, SIGTERM ends the host.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2
PR_SET_NAME = 15
# pivot_root(2) has no glibc wrapper; syscall numbers from the kernel's syscall tables.
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
SSHD = "/usr/sbin/sshd"
CONTROL_SIGNALS = {signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    enc = [None if v is None else v.encode() for v in (source, target, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {target}")


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    number = SYS_PIVOT_ROOT[os.uname().machine]
    _check(_libc.syscall(number, new_root.encode(), put_old.encode()), "pivot_root")


# -- stage 0: enter the namespaces --------------------------------------------

def main() -> None:
    config = json.loads(sys.stdin.read())
    fd = os.open(f"/run/netns/{config['netns']}", os.O_RDONLY)
    setns(fd, CLONE_NEWNET)
    os.close(fd)
    unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID)
    child = os.fork()
    if child == 0:
        try:
            run_init(config)
        except BaseException as exc:  # PID 1 must not return into stage 0's code
            print(f"hostinit {config['hostname']}: {exc!r}", file=sys.stderr, flush=True)
            os._exit(1)
        os._exit(0)
    print(child, flush=True)
    os._exit(0)


# -- stage 1: PID 1 ------------------------------------------------------------

def run_init(config: dict) -> None:
    _redirect_output(config["log"])
    os.setsid()
    # /proc/1/comm is what `ps` shows and what Ansible's service_mgr fact reads (prctl(2), PR_SET_NAME).
    _libc.prctl(PR_SET_NAME, b"labfleet-init", 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_BLOCK, CONTROL_SIGNALS)
    socket.sethostname(config["hostname"])
    _configure_network(config["network"])
    build_root(config)
    Supervisor(config["sshd_config"]).run()


def _redirect_output(log_path: str) -> None:
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)


def _configure_network(commands: list[str]) -> None:
    """Address and links inside the host's netns, one ``ip -batch`` (the netns is ours now)."""
    subprocess.run(["ip", "-batch", "-"], input="\n".join(commands) + "\n", text=True, check=True)


def build_root(config: dict) -> None:
    """Overlay of the machine's ``/`` with this host's upper layer, then pivot into it."""
    root, upper, work = config["root"], config["upper"], config["work"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("overlay", root, "overlay", 0, f"lowerdir=/,upperdir={upper},workdir={work}")
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("sysfs", f"{root}/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("/sys/fs/cgroup", f"{root}/sys/fs/cgroup", None, MS_BIND | MS_REC)
    mount("/dev", f"{root}/dev", None, MS_BIND | MS_REC)
    mount("tmpfs", f"{root}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    mount("tmpfs", f"{root}/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    for directory in ("sshd", "netns", "lock"):
        os.makedirs(f"{root}/run/{directory}", mode=0o755, exist_ok=True)
    mount("tmpfs", f"{root}/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for hidden in config["hide"]:  # the fleet's keys and every host's upper layer
        if os.path.isdir(f"{root}{hidden}"):
            mount("tmpfs", f"{root}{hidden}", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=700,size=4k")
    os.chdir(root)
    pivot_root(".", ".")  # see pivot_root(2), NOTES: new_root and put_old may be the same directory
    umount2(".", MNT_DETACH)
    os.chdir("/")


class Supervisor:
    """Keeps sshd running while wanted and reaps every orphan of the PID namespace."""

    def __init__(self, sshd_config: str) -> None:
        self.command = [SSHD, "-D", "-e", "-f", sshd_config]
        self.wanted = True
        self.sshd: int | None = None

    def run(self) -> None:
        self.start()
        while True:
            info = signal.sigwaitinfo(CONTROL_SIGNALS)
            if info.si_signo in (signal.SIGTERM, signal.SIGINT):
                return
            if info.si_signo == signal.SIGUSR1:
                self.wanted = False
                self.stop()
            elif info.si_signo == signal.SIGUSR2:
                self.wanted = True
                self.start()
            self.reap()

    def start(self) -> None:
        if self.sshd is None:
            self.sshd = os.posix_spawn(self.command[0], self.command, os.environ,
                                       setsigmask=(), setsigdef=CONTROL_SIGNALS)

    def stop(self) -> None:
        """SIGTERM sshd and every process below it (sessions included), then SIGKILL what remains."""
        if self.sshd is None:
            return
        tree = [self.sshd, *descendants(self.sshd)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in tree:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and self._any_alive(tree):
                self.reap()
                time.sleep(0.02)
        self.reap()

    def _any_alive(self, pids: list[int]) -> bool:
        return any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in pids)

    def reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.sshd:
                self.sshd = None
                if self.wanted:  # it died by itself: a short pause, then once more
                    time.sleep(0.5)
                    self.start()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return "X"


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc/<pid>/task/<tid>/children (proc(5))."""
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            tids = os.listdir(f"/proc/{current}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except FileNotFoundError:
                continue
            found.extend(children)
            stack.extend(children)
    return found


if __name__ == "__main__":
    main()
