"""Network namespaces: the named ones in /run/netns, who keeps one alive, entering one, deleting one.

A network namespace lives as long as anything references it (network_namespaces(7)): a process
whose ``/proc/<pid>/ns/net`` is it, an open file descriptor on an nsfs file (``readlink`` gives
``net:[<inode>]``), or an nsfs bind mount in *any* mount namespace (mountinfo's root field is
``net:[<inode>]``). ``ip netns del`` removes only the name in the caller's mount namespace, so a
lab reset has to find and remove the other holders too, or the namespace and its veths stay.

Entering a namespace happens in a forked child (``nsenter.call``): setns(2) changes the calling
thread, and the agent is multi-threaded.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from node_agent.kernel import nsenter
from node_agent.kernel.procfs import PROC, unescape

NETNS_RUN_DIR = Path("/run/netns")
MNT_DETACH = 2
# An nsfs file bind-mounted on itself again stacks mounts; ip netns del unmounts one layer only.
MAX_STACKED_MOUNTS = 16


class NetnsError(Exception):
    """A network namespace could not be entered, inspected or removed; the message names the path."""


@dataclass(frozen=True)
class NamedNetns:
    """One entry of /run/netns. ``inode`` is None when the file is no longer an nsfs mount (a stale name)."""

    name: str
    path: Path
    inode: int | None


@dataclass(frozen=True)
class FdHolder:
    """An open file descriptor on the namespace's nsfs file (``/proc/<pid>/fd/<fd>`` → ``net:[inode]``)."""

    pid: int
    fd: int


@dataclass(frozen=True)
class MountHolder:
    """An nsfs bind mount of the namespace, as seen by ``pid`` in mount namespace ``mnt_ns``."""

    pid: int
    mnt_ns: int
    mount_point: str


@dataclass
class Holders:
    """Everything that keeps one network namespace alive."""

    inode: int
    pids: list[int] = field(default_factory=list)
    fds: list[FdHolder] = field(default_factory=list)
    mounts: list[MountHolder] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.pids or self.fds or self.mounts)

    def describe(self) -> list[str]:
        """One sentence per holder, for reset reports."""
        return ([f"process {pid} is in net namespace {self.inode}" for pid in self.pids]
                + [f"process {h.pid} holds fd {h.fd} on net namespace {self.inode}" for h in self.fds]
                + [f"nsfs mount of net namespace {self.inode} at {h.mount_point} (mount namespace {h.mnt_ns}, "
                   f"seen by process {h.pid})" for h in self.mounts])


# --- reading ---------------------------------------------------------------------------------------

@functools.cache
def nsfs_dev() -> int:
    """st_dev of the nsfs filesystem: namespace files of every type share it."""
    return os.stat("/proc/self/ns/net").st_dev


def ns_inode(pid: int | str, ns_type: str = "net", proc: Path = PROC) -> int | None:
    """Inode of ``/proc/<pid>/ns/<type>``, or None when the process is gone or unreadable."""
    try:
        return os.stat(proc / str(pid) / "ns" / ns_type).st_ino
    except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
        return None


def named_netns(run_dir: Path = NETNS_RUN_DIR) -> list[NamedNetns]:
    """The names in /run/netns (what ``ip netns list`` shows) with the namespace inode behind each."""
    try:
        names = sorted(os.listdir(run_dir))
    except FileNotFoundError:
        return []
    dev = nsfs_dev()
    out = []
    for name in names:
        path = run_dir / name
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        out.append(NamedNetns(name, path, st.st_ino if st.st_dev == dev else None))
    return out


def netns_inode_of(path: Path) -> int | None:
    """The namespace inode behind a name like /run/netns/x, or None if it is missing or not an nsfs mount."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino if st.st_dev == nsfs_dev() else None


def _pids(proc: Path) -> list[int]:
    return [int(name) for name in os.listdir(proc) if name.isdigit()]


def pids_in_netns(inode: int, proc: Path = PROC, *, threads: bool = True) -> list[int]:
    """Processes (any thread, unless ``threads`` is False) whose network namespace is ``inode``."""
    return scan_holders({inode}, proc, threads=threads, fds=False, mounts=False)[inode].pids


def fd_holders(inode: int, proc: Path = PROC) -> list[FdHolder]:
    """Open file descriptors on the namespace (an nsfs file or a bind mount of one), in every process."""
    return scan_holders({inode}, proc, pids=False, mounts=False)[inode].fds


def mount_holders(inode: int, proc: Path = PROC) -> list[MountHolder]:
    """nsfs bind mounts of the namespace in every mount namespace on the host (one reader per mount namespace)."""
    return scan_holders({inode}, proc, pids=False, fds=False)[inode].mounts


def holders(inode: int, proc: Path = PROC) -> Holders:
    """Processes, fds and nsfs mounts that keep network namespace ``inode`` alive."""
    return scan_holders({inode}, proc)[inode]


def scan_holders(inodes: set[int], proc: Path = PROC, *, pids: bool = True, threads: bool = True,
                 fds: bool = True, mounts: bool = True, others: dict[int, list[int]] | None = None
                 ) -> dict[int, Holders]:
    """Every holder of each namespace in ``inodes``, in one pass over /proc.

    setns(2) moves one thread, so a multi-threaded process can have a thread in another namespace
    than its leader: with ``threads``, the threads of multi-threaded processes are looked at too.
    ``others``, when given, receives the members of every other network namespace met on the way
    (``{inode: [pid, ...]}``), so a caller can look for namespaces it knows only by their content.
    """
    dev = nsfs_dev()
    found = {inode: Holders(inode) for inode in inodes}
    fd_targets = {f"net:[{inode}]": inode for inode in inodes}
    seen_mnt: set[int] = set()
    root = str(proc)
    for name in os.listdir(root):
        if not name.isdigit():
            continue
        base, pid = f"{root}/{name}", int(name)
        if pids or others is not None:
            inode = _net_inode(base, dev, threads)
            if inode in found:
                found[inode].pids.append(pid)
            elif inode is not None and others is not None:
                others.setdefault(inode, []).append(pid)
        if fds:
            for fd, inode in _fds_pointing_at(base, dev, found):
                found[inode].fds.append(FdHolder(pid, fd))
        if mounts:
            mnt = _ino(f"{base}/ns/mnt")
            if mnt is not None and mnt not in seen_mnt:
                text = _read(f"{base}/mountinfo")
                if text is not None:
                    seen_mnt.add(mnt)
                    for ns_root, point in _parse_nsfs(text):
                        inode = fd_targets.get(ns_root)
                        if inode is not None:
                            found[inode].mounts.append(MountHolder(pid, mnt, point))
    return found


_GONE = (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError)


def _ino(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except _GONE:
        return None


def _read(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except _GONE:
        return None
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def _net_inode(base: str, dev: int, threads: bool) -> int | None:
    """The process's net namespace inode; with ``threads``, a thread's if it differs from the leader's."""
    try:
        st = os.stat(f"{base}/ns/net")
        if st.st_dev != dev:
            return None
        # procfs gives the task directory a link count of 2 + the number of threads.
        if not threads or os.stat(f"{base}/task").st_nlink <= 3:
            return st.st_ino
        for tid in os.listdir(f"{base}/task"):
            tst = os.stat(f"{base}/task/{tid}/ns/net")
            if tst.st_ino != st.st_ino:
                return tst.st_ino
        return st.st_ino
    except _GONE:
        return None


def _fds_pointing_at(base: str, dev: int, inodes: dict[int, Holders]) -> list[tuple[int, int]]:
    # stat(2) through the magic link, not readlink: an fd opened on a bind mount such as
    # /run/netns/x reads back as that path, only one opened on /proc/<pid>/ns/net as net:[inode].
    try:
        dir_fd = os.open(f"{base}/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []
    out = []
    try:
        try:
            names = os.listdir(dir_fd)
        except OSError:  # the process exited under us
            return []
        for name in names:
            try:
                st = os.stat(name, dir_fd=dir_fd)
            except OSError:
                continue
            if st.st_ino in inodes and st.st_dev == dev:
                out.append((int(name), st.st_ino))
    finally:
        os.close(dir_fd)
    return out


def nsfs_mounts(pid: int | str, proc: Path = PROC) -> list[tuple[str, str]]:
    """``(root, mount_point)`` of every nsfs mount in ``pid``'s mountinfo, e.g. ``("net:[4026532177]", "/run/netns/a")``.

    The root field (the 4th of proc(5)'s mountinfo) names the namespace a nsfs mount pins.
    """
    return _parse_nsfs((proc / str(pid) / "mountinfo").read_text())


def _parse_nsfs(text: str) -> list[tuple[str, str]]:
    if " nsfs " not in text:
        return []
    out = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] != "nsfs":
            continue
        fields = left.split(" ")
        out.append((fields[3], unescape(fields[4])))
    return out


# --- entering --------------------------------------------------------------------------------------------

@functools.cache
def _umount2() -> Callable[[bytes, int], int]:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.umount2
    fn.argtypes = (ctypes.c_char_p, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def umount2(path: str, flags: int = MNT_DETACH) -> None:
    """umount2(2) of ``path`` in the caller's mount namespace."""
    if _umount2()(os.fsencode(path), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount2 {path}: {os.strerror(err)}", path)


# --- removing --------------------------------------------------------------------------------------

def umount_in_mount_ns(pid: int, mount_point: str, proc: Path = PROC, timeout: float = 5.0) -> None:
    """Lazily unmount ``mount_point`` inside ``pid``'s mount namespace (its own, or entered in a child).

    Raises OSError: EINVAL when the mount is locked (a mount namespace owned by a less privileged
    user namespace cannot drop mounts it inherited, mount_namespaces(7)); the only way out is then
    to end the processes of that mount namespace.
    """
    if ns_inode(pid, "mnt", proc) == ns_inode("self", "mnt", proc):
        umount2(mount_point)
        return
    _umount2()  # resolved before the fork, not in the child
    nsenter.call([nsenter.proc_ns(pid, "mnt", proc)], umount2, mount_point, timeout=timeout)


def delete_named(name: str, run_dir: Path = NETNS_RUN_DIR) -> bool:
    """``ip netns del NAME``: unmount every layer of /run/netns/NAME, then unlink it.

    Returns False when there was no such name. Like iproute2, it never touches the /run/netns
    directory's own self bind mount (made shared so names propagate): other tools rely on it.
    Unlinking a file that is a mount point in *other* mount namespaces detaches those mounts too
    (kernel ≥ 3.18), which is why copies made by ``unshare -m`` do not survive this.
    """
    if "/" in name or name in ("", ".", ".."):
        raise NetnsError(f"bad network namespace name {name!r}: must be a plain file name in {run_dir}")
    path = run_dir / name
    if not os.path.lexists(path):
        return False
    for _ in range(MAX_STACKED_MOUNTS):
        try:
            umount2(str(path))
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):  # no longer a mount point
                break
            raise NetnsError(f"cannot unmount {path}: {exc.strerror}") from exc
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise NetnsError(f"cannot remove namespace file {path}: {exc.strerror}") from exc
    return True


def add_named(name: str) -> int:
    """``ip netns add NAME`` through iproute2 itself (it sets up /run/netns's shared self bind mount).

    Returns the new namespace's inode.
    """
    run_dir = NETNS_RUN_DIR
    if "/" in name or name in ("", ".", ".."):
        raise NetnsError(f"bad network namespace name {name!r}: must be a plain file name in {run_dir}")
    proc = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise NetnsError(f"ip netns add {name}: {proc.stderr.strip()}")
    inode = netns_inode_of(run_dir / name)
    if inode is None:
        raise NetnsError(f"ip netns add {name} succeeded but {run_dir / name} is not an nsfs mount")
    return inode
