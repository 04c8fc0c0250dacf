"""Run a function inside other namespaces: fork, setns(2) in the child, the answer back as JSON over a pipe.

setns(2) changes the calling *thread*; the agent is multi-threaded, so no agent thread ever enters a
namespace. ``call`` forks a single-threaded child that opens nothing new: the parent opens the
namespace files first (so the child enters exactly the namespaces the parent checked, and a reused
pid cannot swap one in between), the child setns(2)es into each in order, runs the function, writes
``{"value": ...}`` (JSON, never pickle: the answer is data, not code) and ``os._exit``s. The libc
symbol is resolved before the fork, so the child does not load anything.

For the many small reads of the lab checks, ``namespaces.ResidentReader`` keeps one such child
alive instead of forking per read; this module is the general runner (any function, any types).
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import select
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from node_agent.kernel import reaper

# linux/sched.h clone flags, the nstype argument of setns(2).
CLONE_FLAGS = {
    "mnt": 0x00020000, "cgroup": 0x02000000, "uts": 0x04000000, "ipc": 0x08000000,
    "user": 0x10000000, "pid": 0x20000000, "net": 0x40000000, "time": 0x00000080,
}

Entry = tuple[str | os.PathLike[str], str]  # (namespace file, type): ("/run/netns/a", "net")


class NsEnterError(RuntimeError):
    """A namespace could not be opened or entered, or the child gave no answer; the message says which."""


class ChildError(NsEnterError):
    """The function raised inside the child (anything but OSError); ``kind`` is the exception's type name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class NsEnterTimeout(NsEnterError, TimeoutError):
    """The child did not answer in time (it was killed and reaped)."""


@functools.cache
def _libc_setns() -> Callable[[int, int], int]:
    fn = ctypes.CDLL(None, use_errno=True).setns
    fn.argtypes = (ctypes.c_int, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def prepare() -> None:
    """Resolve libc's setns now: call before forking a child that will setns(2)."""
    _libc_setns()


def setns(fd: int, nstype: str) -> None:
    """setns(2) of the calling thread into the ``nstype`` namespace open as ``fd``.

    Only ever in a forked child (``call``, the resident reader): never in an agent thread.
    """
    if _libc_setns()(fd, CLONE_FLAGS[nstype]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def call(entries: Sequence[Entry], fn: Callable[..., Any], *args: Any, timeout: float = 5.0,
         expect: Sequence[tuple[int, int] | None] | None = None) -> Any:
    """``fn(*args)`` in a forked child that first setns(2)es into each ``(namespace file, type)``, in order.

    Returns ``fn``'s JSON-encodable result, decoded. ``expect``, when given, holds per entry the
    ``(st_dev, st_ino)`` the namespace file must still be (None: any). Raises:

    - NsEnterError naming the file when it cannot be opened, is no longer the expected namespace,
      or cannot be entered; or when the child exits without an answer;
    - OSError (FileNotFoundError, ...) with the child's errno and message when ``fn`` raised one;
    - ChildError ``"<Type>: <message>"`` when ``fn`` raised anything else (a result JSON cannot
      encode included);
    - NsEnterTimeout (a TimeoutError) when the child did not answer within ``timeout`` seconds.
    """
    if expect is not None and len(expect) != len(entries):
        raise ValueError(f"expect holds {len(expect)} namespaces for {len(entries)} entries")
    for _path, nstype in entries:
        if nstype not in CLONE_FLAGS:
            raise ValueError(f"unknown namespace type {nstype!r}; one of {', '.join(sorted(CLONE_FLAGS))}")
    prepare()  # libc's setns resolved before the fork, not in the child
    fds: list[int] = []
    try:
        for i, (path, _nstype) in enumerate(entries):
            try:
                fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as exc:
                raise NsEnterError(f"cannot open namespace file {path}: {exc.strerror}") from exc
            wanted = expect[i] if expect else None
            if wanted is not None:
                st = os.fstat(fds[-1])
                if (st.st_dev, st.st_ino) != tuple(wanted):
                    raise NsEnterError(f"{path} is no longer namespace {wanted[1]} (now {st.st_ino})")
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        with reaper.spawning():  # the agent's subreaper loop leaves this child's exit to us
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, answers through the pipe
                _child(read_end, write_end, fds, entries, fn, args)
            reaper.own(pid)
    finally:
        for fd in fds:
            os.close(fd)
    os.close(write_end)
    try:
        data = _read_until(read_end, pid, time.monotonic() + timeout, timeout)
    finally:
        os.close(read_end)
        _reap(pid)
    if not data:
        raise NsEnterError(f"the child entering {', '.join(str(p) for p, _ in entries)} exited without an answer")
    message = json.loads(data)
    if "value" in message:
        return message["value"]
    if "setns" in message:
        path, reason = message["setns"]
        raise NsEnterError(f"cannot enter namespace {path}: {reason}")
    kind, text, err_no = message["error"]
    if err_no:
        raise OSError(err_no, text)  # OSError(2, ...) is a FileNotFoundError, as in the child
    raise ChildError(kind, text)


def _child(read_end: int, write_end: int, fds: list[int], entries: Sequence[Entry],
           fn: Callable[..., Any], args: tuple) -> None:  # pragma: no cover - runs in the child
    try:
        os.close(read_end)
        answer: dict[str, Any] | None = None
        for fd, (path, nstype) in zip(fds, entries, strict=True):
            try:
                setns(fd, nstype)
            except OSError as exc:
                answer = {"setns": [str(path), exc.strerror or str(exc)]}
                break
        if answer is None:
            try:
                answer = {"value": fn(*args)}
                json.dumps(answer)  # an answer JSON cannot carry is the function's error, reported below
            except OSError as exc:
                answer = {"error": [type(exc).__name__, exc.strerror or str(exc), exc.errno or 0]}
            except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent, as text
                answer = {"error": [type(exc).__name__, str(exc), 0]}
        data = json.dumps(answer).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
    finally:
        os._exit(0)


def _read_until(fd: int, pid: int, deadline: float, timeout: float) -> bytes:
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise NsEnterTimeout(f"the namespace child {pid} did not answer within {timeout} s; killed")
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # reaped elsewhere all the same; the pipe has answered anyway
        pass
    finally:
        reaper.disown(pid)


def proc_ns(pid: int | str, nstype: str, proc: Path = Path("/proc")) -> Entry:
    """The entry for ``pid``'s ``nstype`` namespace: ``(/proc/<pid>/ns/<nstype>, nstype)``."""
    return proc / str(pid) / "ns" / nstype, nstype
