"""Namespaces: which types this kernel has, and per-process namespace state, read the way the kernel
defines it (namespaces(7), proc(5)).

Two processes share a namespace exactly when ``(st_dev, st_ino)`` of their
``/proc/<pid>/ns/<type>`` are equal. Some state is only visible from inside a
namespace (the hostname of a UTS namespace, the SysV segments of an IPC
namespace, cgroup paths relative to a cgroup namespace's root): a forked child
setns(2)es and reports back, so the agent's own threads never change namespace
(``nsenter.call``: a fork per call, any function; ``ResidentReader`` here: one
child forked once, named readers only, fast enough for every check).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from node_agent.kernel import nsenter, procfs, reaper
from node_agent.kernel.procfs import NAMESPACE_TYPES

PROC = procfs.PROC

# include/linux/proc_ns.h: the initial namespaces have fixed inode numbers.
PROC_IPC_INIT_INO = 0xEFFFFFFF
PROC_UTS_INIT_INO = 0xEFFFFFFE
PROC_USER_INIT_INO = 0xEFFFFFFD
PROC_PID_INIT_INO = 0xEFFFFFFC
PROC_CGROUP_INIT_INO = 0xEFFFFFFB
PROC_TIME_INIT_INO = 0xEFFFFFFA
# Since Linux 6.18 (include/uapi/linux/nsfs.h, enum init_ns_ino) net and mnt are fixed too;
# before that they were allocated at boot like any other namespace.
NET_NS_INIT_INO = 0xEFFFFFF9
MNT_NS_INIT_INO = 0xEFFFFFF8

INITIAL_INODES = {
    "ipc": PROC_IPC_INIT_INO, "uts": PROC_UTS_INIT_INO, "user": PROC_USER_INIT_INO,
    "pid": PROC_PID_INIT_INO, "cgroup": PROC_CGROUP_INIT_INO, "time": PROC_TIME_INIT_INO,
}
INITIAL_INODES_SINCE_6_18 = {"net": NET_NS_INIT_INO, "mnt": MNT_NS_INIT_INO}

# linux/nsfs.h: _IO(0xb7, 0x2), the parent of a pid or user namespace as a new fd.
NS_GET_PARENT = 0xB702


class NotInitialNamespace(RuntimeError):
    """The agent itself runs in a non-initial namespace, so its comparisons would prove nothing."""


class NamespaceReadError(nsenter.NsEnterError):
    """A reader inside another process's namespace failed (setns refused, the process left, a timeout)."""


def ns_types(ns_dir: Path = Path("/proc/self/ns")) -> list[str]:
    """The namespace types present in ``/proc/self/ns``, sorted."""
    present = {entry.name for entry in ns_dir.iterdir()}
    return [t for t in NAMESPACE_TYPES if t in present]


@dataclass(frozen=True)
class NsId:
    """The identity of a namespace: device and inode of its nsfs file."""

    dev: int
    ino: int


def ns_id(pid: int | str, nstype: str, proc: Path = PROC) -> NsId:
    """``(st_dev, st_ino)`` of ``/proc/<pid>/ns/<nstype>``; raises OSError if the process is gone."""
    st = os.stat(proc / str(pid) / "ns" / nstype)
    return NsId(st.st_dev, st.st_ino)


def ns_ids(pid: int | str, types: tuple[str, ...] = NAMESPACE_TYPES, proc: Path = PROC) -> dict[str, NsId]:
    """Every readable namespace of ``pid``; types the kernel lacks or hides are left out."""
    out = {}
    for nstype in types:
        try:
            out[nstype] = ns_id(pid, nstype, proc)
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return out


def ns_ancestry(pid: int | str, nstype: str = "pid", proc: Path = PROC) -> list[NsId]:
    """``pid``'s pid (or user) namespace, then its parent, and so on up to the agent's own scope.

    Uses the NS_GET_PARENT ioctl (ioctl_ns(2)); the walk stops where the kernel
    answers EPERM (the parent is outside the agent's namespace, i.e. the top).
    """
    chain = []
    fd = os.open(proc / str(pid) / "ns" / nstype, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            st = os.fstat(fd)
            chain.append(NsId(st.st_dev, st.st_ino))
            try:
                parent = fcntl.ioctl(fd, NS_GET_PARENT)
            except OSError as exc:
                if exc.errno == errno.EPERM:
                    return chain
                raise
            os.close(fd)
            fd = parent
    finally:
        os.close(fd)


def _kernel_at_least(release: str, major: int, minor: int) -> bool:
    parts = release.split("-")[0].split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def assert_initial(own_ns: Mapping[str, int | NsId], release: str | None = None) -> list[str]:
    """Raise NotInitialNamespace unless ``own_ns`` are the initial namespaces.

    Returns the types that could not be proven either way (net and mnt before
    Linux 6.18, whose initial inodes are not fixed), so the caller can log them.
    """
    release = release or procfs.kernel_release()
    fixed = dict(INITIAL_INODES)
    if _kernel_at_least(release, 6, 18):
        fixed.update(INITIAL_INODES_SINCE_6_18)
    wrong, unproven = [], []
    for nstype, ident in sorted(own_ns.items()):
        ino = ident.ino if isinstance(ident, NsId) else int(ident)
        if nstype not in fixed:
            unproven.append(nstype)
        elif ino != fixed[nstype]:
            wrong.append(f"{nstype} is {ino}, the initial one is {fixed[nstype]}")
    if wrong:
        raise NotInitialNamespace("the agent is not in the initial namespaces: " + "; ".join(wrong))
    return unproven


def nspid(pid: int | str, proc: Path = PROC) -> list[int]:
    """``NSpid`` of /proc/<pid>/status: the pid in each pid namespace, outermost first."""
    value = procfs.status(pid, proc).get("NSpid", "")
    return [int(p) for p in value.split()]


def forged_proc_files(pid: int | str, names: tuple[str, ...] = ("status",), proc: Path = PROC,
                      mounts: list[procfs.Mount] | None = None) -> list[str]:
    """Reasons why files of /proc/<pid> are not procfs's own (a bind mount over them); [] when genuine.

    A bind mount shows as a different st_dev and as a mount point under /proc/<pid>
    in the agent's mountinfo; either is enough. ``mounts`` (the agent's mountinfo)
    can be passed in when checking many processes.
    """
    base = proc / str(pid)
    return forged_paths((base, *(base / n for n in names)), proc, mounts)


def forged_paths(paths: tuple[Path, ...], proc: Path = PROC, mounts: list[procfs.Mount] | None = None) -> list[str]:
    """Like ``forged_proc_files`` for any paths under /proc (e.g. /proc/sysvipc/shm); [] when all genuine."""
    procfs_dev = os.stat(proc).st_dev
    reasons = []
    for path in paths:
        dev = os.stat(path).st_dev
        if dev != procfs_dev:
            reasons.append(f"{path} is on device {dev}, not on procfs (device {procfs_dev})")
    points = [str(p) for p in paths]
    for mount in procfs.mountinfo("self", proc) if mounts is None else mounts:
        if any(mount.mount_point == p or mount.mount_point.startswith(p + "/") for p in points):
            reasons.append(f"{mount.mount_point} has a {mount.fstype} mount over it")
    return reasons


def id_map(pid: int | str, which: str = "uid", proc: Path = PROC) -> list[tuple[int, int, int]]:
    """``uid_map`` or ``gid_map``: (id inside, id outside, count) per line (user_namespaces(7))."""
    text = (proc / str(pid) / f"{which}_map").read_text()
    return [tuple(int(f) for f in line.split()) for line in text.splitlines() if line.strip()]  # type: ignore[misc]


def setgroups(pid: int | str, proc: Path = PROC) -> str:
    """``allow`` or ``deny`` from /proc/<pid>/setgroups."""
    return (proc / str(pid) / "setgroups").read_text().strip()


def timens_offsets(pid: int | str, proc: Path = PROC) -> dict[str, tuple[int, int]]:
    """/proc/<pid>/timens_offsets: ``{"monotonic": (seconds, nanoseconds), "boottime": (...)}``."""
    out = {}
    for line in (proc / str(pid) / "timens_offsets").read_text().splitlines():
        fields = line.split()
        if len(fields) == 3:
            out[fields[0]] = (int(fields[1]), int(fields[2]))
    return out


def root_link(pid: int | str, proc: Path = PROC) -> str:
    """Where /proc/<pid>/root points: the process's root directory as the agent sees it."""
    return os.readlink(proc / str(pid) / "root")


def mountinfo(pid: int | str, proc: Path = PROC) -> list[procfs.Mount]:
    """The mounts of ``pid``'s mount namespace, from /proc/<pid>/mountinfo."""
    return procfs.mountinfo(pid, proc)


def proc_cgroup(pid: int | str, proc: Path = PROC) -> dict[str, str]:
    """/proc/<pid>/cgroup as the agent sees it: ``{controller: path}``; ``""`` is v2, named v1 ones ``name=x``."""
    return procfs.parse_cgroup((proc / str(pid) / "cgroup").read_text())


# --- reading from inside another process's namespace -------------------------------------------

def _reap(child: int) -> None:
    try:
        os.waitpid(child, 0)
    except ChildProcessError:
        pass  # already reaped; the pipe has answered anyway
    finally:
        reaper.disown(child)


def _read_shm(_arg: object = None) -> list[dict[str, int]]:
    return parse_sysvipc_shm(Path("/proc/sysvipc/shm").read_text())


def _nodename(_arg: object = None) -> str:
    return os.uname().nodename


def _cgroup_of(pid: object) -> dict[str, str]:
    return procfs.parse_cgroup(Path(f"/proc/{int(pid)}/cgroup").read_text())  # type: ignore[call-overload]


# The readers the resident reader process runs, by name: nothing else can be asked of it.
NAMED_READERS: dict[str, Callable[[object], object]] = {
    "nodename": _nodename, "sysvipc_shm": _read_shm, "proc_cgroup": _cgroup_of}
RESIDENT_TYPES = ("uts", "ipc", "cgroup", "net")  # setns to these is cheap and undone by setns back


class ResidentReader:
    """One long-lived forked child that serves named reads inside other namespaces.

    A fork per read costs 2-6 ms in a busy agent (copy-on-write of the parent's
    heap, scheduling); this child is forked once and, per request, setns(2)es
    into the namespace whose fd it receives over a Unix socket (SCM_RIGHTS: the
    agent opened that fd, so it is exactly the namespace the agent checked),
    runs one of ``NAMED_READERS``, and setns(2)es back into its own namespace:
    about 0.1 ms. It is single-threaded and a separate process, so no agent
    thread ever changes namespace. It ends when the agent closes its socket (or
    dies), and exits if it cannot return to its own namespace; a reader found
    dead is replaced once per request.
    """

    def __init__(self, timeout: float = 2.0) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._pid = 0
        self._owner = 0

    def read(self, fd: int, nstype: str, reader: str, arg: object = None) -> object:
        """Run ``NAMED_READERS[reader](arg)`` inside the namespace open as ``fd``; JSON result."""
        if nstype not in RESIDENT_TYPES or reader not in NAMED_READERS:
            raise ValueError(f"the resident reader serves {', '.join(NAMED_READERS)} in "
                             f"{', '.join(RESIDENT_TYPES)} namespaces, not {reader!r} in {nstype!r}")
        request = json.dumps({"type": nstype, "reader": reader, "arg": arg}).encode()
        with self._lock:
            reply = self._ask(request, fd, retry=True)
        message = json.loads(reply)
        if "error" in message:
            raise NamespaceReadError(message["error"])
        return message["value"]

    def _ask(self, request: bytes, fd: int, *, retry: bool) -> bytes:
        sock = self._ensure()
        try:
            socket.send_fds(sock, [request], [fd])
            reply = sock.recv(1 << 22)
        except TimeoutError:
            self._stop()
            raise NamespaceReadError(f"the namespace reader process did not answer within {self.timeout} s") from None
        except OSError:
            reply = b""
        if reply:
            return reply
        self._stop()  # it died (killed, or exited after an error): one fresh one gets one more try
        if retry:
            return self._ask(request, fd, retry=False)
        raise NamespaceReadError("the namespace reader process exited")

    @property
    def pid(self) -> int:
        return self._pid

    def _ensure(self) -> socket.socket:
        if self._sock is not None and self._owner == os.getpid():
            return self._sock
        if self._owner == os.getpid():
            self._stop()
        else:  # we are a fork of the process that started it: never share its socket
            self._sock, self._pid = None, 0
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        nsenter.prepare()  # libc's setns resolved before the fork, not in the child
        with reaper.spawning():  # the agent's subreaper loop leaves this child to us
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the resident child
                ours.close()
                _serve(theirs)
            reaper.own(pid)
        theirs.close()
        ours.settimeout(self.timeout)
        self._sock, self._pid, self._owner = ours, pid, os.getpid()
        return ours

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._pid:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(self._pid)
        self._sock, self._pid = None, 0

    def close(self) -> None:
        with self._lock:
            if self._owner == os.getpid():
                self._stop()


def _serve(sock: socket.socket) -> None:  # pragma: no cover - runs in the resident child
    """The resident child's loop: one request, one reply, until the agent closes the socket."""
    code = 0
    try:
        _setup_resident(sock)
        own = {t: os.open(f"/proc/self/ns/{t}", os.O_RDONLY | os.O_CLOEXEC) for t in RESIDENT_TYPES}
        while True:
            data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 1)
            if not data:
                break
            reply, ok = _serve_one(data, fds, own)
            sock.send(reply)
            if not ok:
                code = 1
                break
    except BaseException:  # noqa: BLE001 - the agent sees EOF and starts another
        code = 1
    os._exit(code)


def _setup_resident(sock: socket.socket) -> None:  # pragma: no cover
    # No PR_SET_PDEATHSIG: it fires when the forking *thread* ends. When the agent
    # dies, its end of the socket closes and recv returns b"": that ends the loop.
    os.closerange(3, sock.fileno())  # the agent's sockets and files are not the reader's business
    os.closerange(sock.fileno() + 1, 1 << 16)


def _serve_one(data: bytes, fds: list[int], own: dict[str, int]) -> tuple[bytes, bool]:  # pragma: no cover
    """Answer one request; ok is False when the child could not return to its own namespace."""
    request = json.loads(data)
    nstype = request["type"]
    try:
        if len(fds) != 1:
            raise NamespaceReadError("a request carries exactly one namespace fd")
        nsenter.setns(fds[0], nstype)
        try:
            value = NAMED_READERS[request["reader"]](request["arg"])
        finally:
            try:
                nsenter.setns(own[nstype], nstype)
            except OSError as exc:
                return json.dumps({"error": f"could not return to its own namespace: {exc}"}).encode(), False
        return json.dumps({"value": value}).encode(), True
    except Exception as exc:  # noqa: BLE001 - reported to the agent
        return json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode(), True
    finally:
        for fd in fds:
            os.close(fd)


RESIDENT = ResidentReader()


def read_in_namespace(pid: int, nstype: str, reader: str, arg: object = None, *, expect: NsId | None = None,
                      proc: Path = PROC) -> object:
    """``NAMED_READERS[reader](arg)`` inside ``pid``'s ``nstype`` namespace, through the resident reader."""
    fd = os.open(proc / str(pid) / "ns" / nstype, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if expect is not None and (st.st_dev, st.st_ino) != (expect.dev, expect.ino):
            raise NamespaceReadError(f"pid {pid} is no longer in {nstype} namespace {expect.ino}")
        try:
            return RESIDENT.read(fd, nstype, reader, arg)
        except NamespaceReadError as exc:
            raise NamespaceReadError(f"reading {nstype} namespace of pid {pid}: {exc}") from None
    finally:
        os.close(fd)


def uts_nodename(pid: int, expect: NsId | None = None) -> str:
    """The hostname (uname(2) nodename) inside ``pid``'s UTS namespace."""
    return str(read_in_namespace(pid, "uts", "nodename", expect=expect))


def sysvipc_shm(pid: int | None = None, expect: NsId | None = None) -> list[dict[str, int]]:
    """The SysV shared memory segments of ``pid``'s IPC namespace (the agent's own when pid is None).

    /proc/sysvipc/shm lists the segments of the reader's IPC namespace, so another
    namespace's list is read from inside it.
    """
    if pid is None:
        return _read_shm()
    return list(read_in_namespace(pid, "ipc", "sysvipc_shm", expect=expect))  # type: ignore[call-overload]


def parse_sysvipc_shm(text: str) -> list[dict[str, int]]:
    """Rows of /proc/sysvipc/shm keyed by its header (key, shmid, perms, size, cpid, uid, cuid, ...)."""
    lines = text.splitlines()
    if not lines:
        return []
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) == len(header):
            rows.append({name: int(value) for name, value in zip(header, fields, strict=True)})
    return rows


def cgroup_seen_from_ns(pid: int, expect: NsId | None = None) -> dict[str, str]:
    """/proc/<pid>/cgroup read from inside ``pid``'s cgroup namespace (paths relative to its root)."""
    return dict(read_in_namespace(pid, "cgroup", "proc_cgroup", pid, expect=expect))  # type: ignore[call-overload]
