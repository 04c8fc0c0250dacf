"""Dump the seccomp filters a live task really holds, with ``ptrace(PTRACE_SECCOMP_GET_FILTER)``.

ptrace(2): the call needs CAP_SYS_ADMIN, a caller that is not itself under seccomp, and a tracee in a
ptrace-stop. The agent seizes the task (PTRACE_SEIZE does not send SIGSTOP, so the task never sees a
stop it could notice), interrupts it (PTRACE_INTERRUPT), waits for the stop, reads filter 0, 1, ... until
ENOENT, and detaches, handing back any signal that arrived meanwhile. Index 0 is the OLDEST filter:
``get_nth_filter()`` in kernel/seccomp.c counts back from the newest by (count - index); ptrace(2)'s
"most recently installed" wording is wrong, and a test on a real two-filter stack pins it. A task that is not in
filter mode answers EINVAL, which makes the dump also a kernel-side proof of ``Seccomp: 2``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from dataclasses import dataclass

from node_agent.kernel import bpf, reaper

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
PTRACE_EVENT_STOP = 128
__WALL = 0x40000000
STOP_TIMEOUT = 2.0
MAX_FILTERS = 512  # a task can stack at most MAX_INSNS_PER_PATH (32768) instructions: far fewer filters

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long


class FilterDumpError(OSError):
    """The filters of a task could not be read; ``errno`` and the message say why, in words."""


@dataclass(frozen=True)
class FilterDump:
    """The filter stack of one task, oldest first (the order it was installed), as the kernel holds it."""

    pid: int
    filters: list[list[bpf.Insn]]

    @property
    def instructions(self) -> int:
        return sum(len(f) for f in self.filters)

    def evaluate(self, data: bpf.SeccompData) -> bpf.Verdict:
        """What the kernel decides for ``data`` under this stack."""
        return bpf.run_filters(self.filters, data)


def _call(request: int, pid: int, addr: int = 0, data: int | ctypes.Array | None = None) -> int:
    ctypes.set_errno(0)
    ret = _ptrace(request, pid, addr, data)
    if ret == -1:
        err = ctypes.get_errno()
        if err:
            raise OSError(err, os.strerror(err))
    return ret


_WHY = {
    errno.EPERM: "the agent may not trace it (it lacks CAP_SYS_ADMIN/CAP_SYS_PTRACE, or the task is already "
                 "traced: see TracerPid)",
    errno.ESRCH: "the task is gone",
    errno.EACCES: "the agent itself runs under seccomp, so the kernel refuses to show filters",
    errno.EINVAL: "the task is not in seccomp filter mode",
    errno.EMEDIUMTYPE: "the filter is not a classic BPF program",
}


def _error(pid: int, what: str, exc: OSError) -> FilterDumpError:
    why = _WHY.get(exc.errno or 0, exc.strerror or "")
    return FilterDumpError(exc.errno, f"cannot {what} pid {pid}: {why}")


def _stop(pid: int) -> int:
    """Seize and interrupt ``pid``; return the signal to re-inject on detach (0 for none)."""
    try:
        _call(PTRACE_SEIZE, pid)
    except OSError as exc:
        raise _error(pid, "seize", exc) from None
    try:
        _call(PTRACE_INTERRUPT, pid)
        deadline = time.monotonic() + STOP_TIMEOUT
        while True:
            done, status = os.waitpid(pid, __WALL | os.WNOHANG)
            if not done:
                if time.monotonic() > deadline:
                    raise FilterDumpError(errno.ETIMEDOUT, f"pid {pid} did not stop within {STOP_TIMEOUT} s")
                time.sleep(0.0001)
                continue
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                raise FilterDumpError(errno.ESRCH, f"pid {pid} exited while its filters were being read")
            if os.WIFSTOPPED(status):
                event = status >> 16
                sig = os.WSTOPSIG(status)
                # A signal-delivery-stop (event 0) swallows the signal unless it is handed back on detach.
                return sig if event == 0 else 0
    except OSError as exc:
        _detach(pid, 0)
        if isinstance(exc, FilterDumpError):
            raise
        raise _error(pid, "stop", exc) from None


def _detach(pid: int, sig: int) -> None:
    try:
        _call(PTRACE_DETACH, pid, 0, sig or None)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


def _read_filter(pid: int, index: int) -> list[bpf.Insn] | None:
    try:
        count = _call(PTRACE_SECCOMP_GET_FILTER, pid, index, None)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise _error(pid, f"read filter {index} of", exc) from None
    buf = ctypes.create_string_buffer(count * 8)
    got = _call(PTRACE_SECCOMP_GET_FILTER, pid, index, buf)
    return bpf.decode(buf.raw[: got * 8])


def dump(pid: int, *, caller_owns: bool = False) -> FilterDump:
    """Read every seccomp filter of ``pid`` (oldest first) while it is briefly ptrace-stopped.

    While traced, ``pid`` is owned against the agent's subreaper loop: for a traced child, waitpid reports
    ptrace-stops even without WUNTRACED, and a stolen stop would leave this call waiting for nothing.
    ``caller_owns``: the caller spawned ``pid`` and already owns it (it stays owned afterwards).
    """
    if not caller_owns:
        with reaper.spawning():
            reaper.own(pid)
    try:
        sig = _stop(pid)
        try:
            return FilterDump(pid, _read_all(pid))
        finally:
            _detach(pid, sig)
    finally:
        if not caller_owns:
            reaper.disown(pid)


def _read_all(pid: int) -> list[list[bpf.Insn]]:
    filters = []
    for index in range(MAX_FILTERS):
        prog = _read_filter(pid, index)
        if prog is None:
            break
        filters.append(prog)
    return filters

