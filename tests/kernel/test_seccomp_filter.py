"""Dumping the filters of live tasks with PTRACE_SECCOMP_GET_FILTER, on the real kernel, as root."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from node_agent.kernel import bpf, procfs, seccomp_filter, syscalls
from node_agent.kernel.bpf import SeccompData
from tests.kernel.seccomp_children import REPO, python_child

SMALL_FILTER = """
import seccomp
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
f.add_rule(seccomp.ERRNO(1), 'mkdirat')
f.load()
print('ready', flush=True)
import sys
for line in sys.stdin:
    print('echo', line.strip(), flush=True)
"""


def test_dump_reads_the_filter_the_kernel_holds() -> None:
    import seccomp

    with python_child(SMALL_FILTER) as child:
        dump = seccomp_filter.dump(child.pid)
        status = procfs.status(child.pid)

    assert (status["Seccomp"], status["Seccomp_filters"], status["NoNewPrivs"]) == ("2", "1", "1")
    assert len(dump.filters) == 1
    assert str(dump.evaluate(SeccompData(syscalls.number("mkdirat")))) == "ERRNO(1)"
    assert str(dump.evaluate(SeccompData(syscalls.number("getpid")))) == "ALLOW"
    # The same rules compiled here by libseccomp give the very same program, instruction for instruction.
    same = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    same.add_rule(seccomp.ERRNO(1), "mkdirat")
    with tempfile.TemporaryFile() as out:
        same.export_bpf(out)
        out.seek(0)
        assert bpf.decode(out.read()) == dump.filters[0]


def test_the_dumped_task_carries_on_untraced() -> None:
    with python_child(SMALL_FILTER) as child:
        for _ in range(3):
            seccomp_filter.dump(child.pid)
        status = procfs.status(child.pid)
        child.stdin.write("hello\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "echo hello"
    assert status["TracerPid"] == "0"
    assert status["State"][0] in "SR"


def test_a_signal_arriving_during_the_dump_is_delivered() -> None:
    code = """
import signal, time, seccomp
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
f.add_rule(seccomp.ERRNO(1), 'mkdirat')
f.load()
got = []
signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
print('ready', flush=True)
while not got:
    time.sleep(0.001)
print('got SIGUSR1', flush=True)
time.sleep(60)
"""
    with python_child(code) as child:
        os.kill(child.pid, signal.SIGUSR1)  # pending while the dump seizes and stops the task
        seccomp_filter.dump(child.pid)
        assert child.stdout.readline().strip() == "got SIGUSR1"


def test_a_task_without_a_filter_is_refused_with_a_reason() -> None:
    with python_child("print('ready', flush=True)\nimport time; time.sleep(60)") as child:
        with pytest.raises(seccomp_filter.FilterDumpError, match="not in seccomp filter mode") as err:
            seccomp_filter.dump(child.pid)
    assert err.value.errno == errno.EINVAL


def test_a_task_traced_by_someone_else_cannot_be_dumped() -> None:
    """A filtered task under another tracer (the ptrace bypass docs/labs.md warns about) shows TracerPid."""
    tracer = subprocess.Popen(["strace", "-f", "-o", "/dev/null", sys.executable, "-c", SMALL_FILTER],
                              stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert tracer.stdout.readline().strip() == "ready"
        traced = next(pid for pid in _children(tracer.pid))
        assert procfs.status(traced)["TracerPid"] == str(tracer.pid)
        with pytest.raises(seccomp_filter.FilterDumpError, match="TracerPid") as err:
            seccomp_filter.dump(traced)
        assert err.value.errno == errno.EPERM
    finally:
        tracer.kill()
        tracer.wait()


def test_a_gone_task_is_named() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(seccomp_filter.FilterDumpError, match=f"pid {child.pid}"):
        seccomp_filter.dump(child.pid)


def _children(pid: int) -> list[int]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(p) for p in f.read().split()]
        if kids:
            return kids
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} has no children")
