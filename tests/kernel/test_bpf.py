"""The classic-BPF evaluator gives the kernel's answer: programs loaded into real processes decide the same."""

from __future__ import annotations

import json

import pytest

from node_agent.kernel import bpf, seccomp_filter, syscalls
from node_agent.kernel.bpf import Insn, SeccompData
from tests.kernel.seccomp_children import python_child, run_python

ERRNO, ALLOW = 0x00050000, 0x7FFF0000

# Loads a hand-assembled program with prctl(PR_SET_SECCOMP) and prints what the kernel answers for a few
# syscalls, one JSON line per call: {"nr": .., "arg0": .., "ret": .., "errno": ..}.
LOAD_AND_PROBE = """
import ctypes, json, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
raw = bytes.fromhex(sys.argv[1] if len(sys.argv) > 1 else {prog!r})
buf = ctypes.create_string_buffer(raw)
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = SockFprog(len(raw) // 8, ctypes.cast(buf, ctypes.c_void_p))
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0, ctypes.get_errno()  # PR_SET_SECCOMP, FILTER
for nr, arg0 in {probes!r}:
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), ctypes.c_long(arg0), 0, 0)
    print(json.dumps({{"nr": nr, "arg0": arg0, "ret": ret, "errno": ctypes.get_errno()}}), flush=True)
"""


def kernel_answers(prog: list[Insn], probes: list[tuple[int, int]]) -> list[dict]:
    code = LOAD_AND_PROBE.format(prog=bpf.encode(prog).hex(), probes=probes)
    return [json.loads(line) for line in run_python(code).splitlines()]


def errno_arith_program() -> list[Insn]:
    """errno = (arg0 & 0xff) * 2 + 7 for getppid, via X, scratch memory and ALU; everything else allowed."""
    getppid = syscalls.number("getppid")
    return [
        Insn(bpf.LD_W_ABS, 0, 0, 0),            # A = nr
        Insn(bpf.JEQ_K, 0, 10, getppid),         # not getppid -> allow
        Insn(bpf.LD_W_ABS, 0, 0, 16),            # A = low word of args[0]
        Insn(0x54, 0, 0, 0xFF),                  # A &= 0xff
        Insn(bpf.ST, 0, 0, 3),                   # M[3] = A
        Insn(bpf.LDX_MEM, 0, 0, 3),              # X = M[3]
        Insn(0x0C, 0, 0, 0),                     # A += X
        Insn(0x04, 0, 0, 7),                     # A += 7
        Insn(bpf.JSET_K, 0, 1, 0x100),           # bit 8 set? (never for these inputs) -> fall to OR
        Insn(bpf.RET_K, 0, 0, ERRNO | 999),
        Insn(0x44, 0, 0, ERRNO),                 # A |= SECCOMP_RET_ERRNO
        Insn(bpf.RET_A, 0, 0, 0),
        Insn(bpf.RET_K, 0, 0, ALLOW),
    ]


def test_alu_memory_and_jumps_match_what_the_kernel_returns() -> None:
    prog = errno_arith_program()
    probes = [(syscalls.number("getppid"), 5), (syscalls.number("getppid"), 0x1FF), (syscalls.number("getpid"), 5)]

    answers = kernel_answers(prog, probes)

    for (nr, arg0), seen in zip(probes, answers, strict=True):
        verdict = bpf.verdict(bpf.run(prog, SeccompData(nr, args=(arg0, 0, 0, 0, 0, 0))))
        if verdict.action == "errno":
            assert (seen["ret"], seen["errno"]) == (-1, verdict.data)
        else:
            assert verdict.action == "allow" and seen["ret"] > 0
    assert [a["errno"] for a in answers[:2]] == [17, 517]


def test_x_register_comparisons_and_jset() -> None:
    mkdirat = syscalls.number("mkdirat")
    prog = [
        Insn(bpf.LD_W_ABS, 0, 0, 0),
        Insn(bpf.MISC_TAX, 0, 0, 0),             # X = nr
        Insn(bpf.LD_IMM, 0, 0, mkdirat),
        Insn(bpf.JEQ_X, 0, 4, 0),                # A == X ?
        Insn(bpf.LD_W_ABS, 0, 0, 24),            # A = low word of args[1]
        Insn(bpf.JSET_K, 0, 1, 0o100),           # mode has 0100 set -> EPERM, else EACCES
        Insn(bpf.RET_K, 0, 0, ERRNO | 1),
        Insn(bpf.RET_K, 0, 0, ERRNO | 13),
        Insn(bpf.RET_K, 0, 0, ALLOW),
    ]
    assert str(bpf.verdict(bpf.run(prog, SeccompData(mkdirat, args=(0, 0o755))))) == "ERRNO(1)"
    assert str(bpf.verdict(bpf.run(prog, SeccompData(mkdirat, args=(0, 0o644))))) == "ERRNO(13)"
    assert bpf.verdict(bpf.run(prog, SeccompData(39))).action == "allow"


def test_the_kernel_refuses_what_the_evaluator_refuses() -> None:
    with pytest.raises(bpf.BpfError, match="offset 64"):
        bpf.run([Insn(bpf.LD_W_ABS, 0, 0, 64), Insn(bpf.RET_K, 0, 0, ALLOW)], SeccompData(0))
    with pytest.raises(bpf.BpfError, match="not allowed"):
        bpf.run([Insn(0x28, 0, 0, 0), Insn(bpf.RET_K, 0, 0, ALLOW)], SeccompData(0))  # LD|H|ABS
    with pytest.raises(bpf.BpfError, match="ran off its end"):
        bpf.run([Insn(bpf.LD_W_ABS, 0, 0, 0)], SeccompData(0))
    with pytest.raises(bpf.BpfError, match="multiple of 8"):
        bpf.decode(b"\x00" * 12)


def test_a_stack_of_filters_combines_as_the_kernel_does() -> None:
    """Two stacked filters, dumped from a live task: the stricter action wins, the newest on a tie —
    and the task itself sees exactly those errnos."""
    code = """
import ctypes, json, os, seccomp
older = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
older.add_rule(seccomp.ERRNO(1), 'mkdirat')
older.add_rule(seccomp.ERRNO(5), 'getppid')
older.load()
newer = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
newer.add_rule(seccomp.ERRNO(2), 'mkdirat')
newer.add_rule(seccomp.LOG, 'getppid')
newer.load()
seen = {}
fd = os.open('/', os.O_RDONLY)
try:
    os.mkdir('never-made-by-a-filtered-task', dir_fd=fd)  # mkdirat(2)
except OSError as exc:
    seen['mkdirat'] = exc.errno
libc = ctypes.CDLL(None, use_errno=True)
seen['getppid'] = ctypes.get_errno() if libc.syscall(110) == -1 else 0  # glibc's getppid() never sets errno
print(json.dumps(seen), flush=True)
import time; time.sleep(60)
"""
    with python_child(code, ready=None) as child:
        seen = json.loads(child.first_line)
        dump = seccomp_filter.dump(child.pid)
    assert len(dump.filters) == 2
    mkdirat = dump.evaluate(SeccompData(syscalls.number("mkdirat")))
    getppid = dump.evaluate(SeccompData(syscalls.number("getppid")))
    assert (str(mkdirat), str(getppid)) == ("ERRNO(2)", "ERRNO(5)")   # tie: newest; errno beats log
    assert seen == {"mkdirat": mkdirat.data, "getppid": getppid.data}
    assert str(dump.evaluate(SeccompData(syscalls.number("getpid")))) == "ALLOW"


def test_other_arches_are_judged_by_their_arch_word() -> None:
    """libseccomp filters kill a syscall from an arch they were not built for (the x86 int 0x80 trick)."""
    code = """
import seccomp
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
f.add_rule(seccomp.ERRNO(1), 'mkdirat')
f.load()
print('ready', flush=True)
import time; time.sleep(60)
"""
    with python_child(code) as child:
        dump = seccomp_filter.dump(child.pid)
    audit_arch_i386 = 0x40000003
    assert dump.evaluate(SeccompData(syscalls.number("mkdirat"), arch=audit_arch_i386)).action == "kill_thread"
    assert bpf.decode(bpf.encode(dump.filters[0])) == dump.filters[0]
