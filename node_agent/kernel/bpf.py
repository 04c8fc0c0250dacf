"""A classic-BPF interpreter for seccomp filters, run over ``struct seccomp_data``.

A check cannot trust what a program says its filter is; it dumps the filter the kernel really holds
(``seccomp_filter.dump``) and runs it here for the syscall it cares about, exactly as the kernel would.
The instruction set is what ``seccomp_check_filter()`` in kernel/seccomp.c admits (loads of 32-bit words
of seccomp_data, scratch memory, ALU, forward jumps, RET), which covers everything libseccomp and
Docker/runc emit. Several filters on one task combine as in ``seccomp_run_filters()``: every filter runs,
the action with the highest precedence wins and, between equals, the newest filter's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from node_agent.kernel.syscalls import AUDIT_ARCH_X86_64

BPF_MAXINSNS = 4096
BPF_MEMWORDS = 16
SECCOMP_DATA_SIZE = 64  # int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];
_INSN = struct.Struct("<HBBI")  # struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; }

# Opcodes (include/uapi/linux/bpf_common.h, filter.h), as class | size/op | mode/src.
LD_W_ABS, LD_W_LEN, LD_IMM, LD_MEM = 0x20, 0x80, 0x00, 0x60
LDX_W_LEN, LDX_IMM, LDX_MEM = 0x81, 0x01, 0x61
ST, STX = 0x02, 0x03
RET_K, RET_A = 0x06, 0x16
MISC_TAX, MISC_TXA = 0x07, 0x87
JA, JEQ_K, JEQ_X, JGT_K, JGT_X, JGE_K, JGE_X, JSET_K, JSET_X = 0x05, 0x15, 0x1D, 0x25, 0x2D, 0x35, 0x3D, 0x45, 0x4D
ALU_NEG = 0x84
_ALU_OPS = {0x00: "add", 0x10: "sub", 0x20: "mul", 0x30: "div", 0x40: "or", 0x50: "and", 0x60: "lsh", 0x70: "rsh",
            0xA0: "xor"}
_MASK32 = 0xFFFFFFFF

# Return values (include/uapi/linux/seccomp.h): action in the high 16 bits, data (errno, trace msg) below.
SECCOMP_RET_ACTION_FULL = 0xFFFF0000
SECCOMP_RET_DATA = 0x0000FFFF
ACTIONS = {
    0x80000000: "kill_process",
    0x00000000: "kill_thread",
    0x00030000: "trap",
    0x00050000: "errno",
    0x7FC00000: "user_notif",
    0x7FF00000: "trace",
    0x7FFC0000: "log",
    0x7FFF0000: "allow",
}


class BpfError(ValueError):
    """A program the kernel would refuse to load or that runs off its end, with the instruction index."""


class Insn(NamedTuple):
    """One ``struct sock_filter`` (a tuple: the interpreter unpacks it in one step)."""

    code: int
    jt: int
    jf: int
    k: int


@dataclass(frozen=True)
class SeccompData:
    """The input of a seccomp filter: syscall number, audit arch, instruction pointer and six arguments."""

    nr: int
    arch: int = AUDIT_ARCH_X86_64
    instruction_pointer: int = 0
    args: tuple[int, ...] = (0, 0, 0, 0, 0, 0)

    def words(self) -> tuple[int, ...]:
        """The 16 little-endian 32-bit words a ``BPF_LD|BPF_W|BPF_ABS`` reads (x86_64 is little-endian)."""
        args = tuple(self.args) + (0,) * (6 - len(self.args))
        raw = struct.pack("<iIQ6Q", self.nr, self.arch, self.instruction_pointer, *args)
        return struct.unpack("<16I", raw)


@dataclass(frozen=True)
class Verdict:
    """A filter's decision: the action's name, its 16-bit data (the errno for ``errno``) and the raw value."""

    action: str
    data: int
    raw: int

    def __str__(self) -> str:
        return f"{self.action.upper()}({self.data})" if self.action in ("errno", "trace", "trap") else \
            self.action.upper()


def decode(raw: bytes) -> list[Insn]:
    """Split a dumped filter (an array of ``struct sock_filter``) into instructions."""
    if len(raw) % _INSN.size:
        raise BpfError(f"filter is {len(raw)} bytes, not a multiple of {_INSN.size} (struct sock_filter)")
    return [Insn(*fields) for fields in _INSN.iter_unpack(raw)]


def encode(prog: list[Insn]) -> bytes:
    """The inverse of ``decode``."""
    return b"".join(_INSN.pack(i.code, i.jt, i.jf, i.k) for i in prog)


def verdict(ret: int) -> Verdict:
    """Name the action of a 32-bit filter return value; unknown actions act as kill_process (seccomp(2))."""
    action = ACTIONS.get(ret & SECCOMP_RET_ACTION_FULL)
    if action is None:
        return Verdict("kill_process", ret & SECCOMP_RET_DATA, ret)
    return Verdict(action, ret & SECCOMP_RET_DATA, ret)


def _precedence(ret: int) -> int:
    # ACTION_ONLY() in kernel/seccomp.c: the action bits as a signed 32-bit int; smaller wins.
    action = ret & SECCOMP_RET_ACTION_FULL
    return action - (1 << 32) if action & 0x80000000 else action


def run(prog: list[Insn], data: SeccompData) -> int:
    """Run one filter over ``data`` and return its 32-bit return value."""
    if not prog or len(prog) > BPF_MAXINSNS:
        raise BpfError(f"filter has {len(prog)} instructions; the kernel takes 1..{BPF_MAXINSNS}")
    words = data.words()
    mem = [0] * BPF_MEMWORDS
    a = x = pc = 0
    end = len(prog)
    while pc < end:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == JEQ_K:
            pc += jt if a == k else jf
        elif code == LD_W_ABS:
            if k & 3 or k >= SECCOMP_DATA_SIZE:
                raise BpfError(f"instruction {pc - 1}: load at offset {k} outside seccomp_data or unaligned")
            a = words[k >> 2]
        elif code == RET_K:
            return k
        elif code == JGE_K:
            pc += jt if a >= k else jf
        elif code == JGT_K:
            pc += jt if a > k else jf
        elif code == JSET_K:
            pc += jt if a & k else jf
        elif code == JA:
            pc += k
        elif code == RET_A:
            return a
        elif code & 0x07 == 0x04:  # BPF_ALU
            if code == 0x3C and x == 0:
                return 0  # classic BPF ends the program with 0 on a division by a zero X (net/core/filter.c)
            a = _alu(code, a, x, k, pc - 1)
        elif code in (JEQ_X, JGT_X, JGE_X, JSET_X):
            taken = {JEQ_X: a == x, JGT_X: a > x, JGE_X: a >= x, JSET_X: bool(a & x)}[code]
            pc += jt if taken else jf
        else:
            a, x = _load_store(code, k, a, x, mem, pc - 1)
    raise BpfError(f"filter of {end} instructions ran off its end without a RET")


def _alu(code: int, a: int, x: int, k: int, index: int) -> int:
    if code == ALU_NEG:
        return -a & _MASK32
    op = _ALU_OPS.get(code & 0xF0)
    if op is None:
        raise BpfError(f"instruction {index}: opcode {code:#06x} is not allowed in a seccomp filter")
    operand = x if code & 0x08 else k
    if op == "div":
        if operand == 0:
            raise BpfError(f"instruction {index}: division by the constant 0")
        return a // operand
    if op in ("lsh", "rsh") and operand >= 32:
        return 0
    value = {"add": a + operand, "sub": a - operand, "mul": a * operand, "or": a | operand,
             "and": a & operand, "lsh": a << operand, "rsh": a >> operand, "xor": a ^ operand}[op]
    return value & _MASK32


def _load_store(code: int, k: int, a: int, x: int, mem: list[int], index: int) -> tuple[int, int]:
    if code in (LD_MEM, LDX_MEM, ST, STX) and k >= BPF_MEMWORDS:
        raise BpfError(f"instruction {index}: scratch memory slot {k} is past M[{BPF_MEMWORDS - 1}]")
    if code == LD_W_LEN:
        return SECCOMP_DATA_SIZE, x
    if code == LDX_W_LEN:
        return a, SECCOMP_DATA_SIZE
    if code == LD_IMM:
        return k, x
    if code == LDX_IMM:
        return a, k
    if code == LD_MEM:
        return mem[k], x
    if code == LDX_MEM:
        return a, mem[k]
    if code == ST:
        mem[k] = a
        return a, x
    if code == STX:
        mem[k] = x
        return a, x
    if code == MISC_TAX:
        return a, a
    if code == MISC_TXA:
        return x, x
    raise BpfError(f"instruction {index}: opcode {code:#06x} is not allowed in a seccomp filter")


def run_filters(filters: list[list[Insn]], data: SeccompData) -> Verdict:
    """The verdict of a task's whole filter stack, given oldest first (PTRACE_SECCOMP_GET_FILTER's order).

    The kernel runs the newest filter first and keeps the first action of the highest precedence, so on a
    tie the newest filter's data wins. With no filter the syscall is allowed, as in seccomp mode 0.
    """
    best = 0x7FFF0000  # SECCOMP_RET_ALLOW
    for prog in reversed(filters):
        ret = run(prog, data)
        if _precedence(ret) < _precedence(best):
            best = ret
    return verdict(best)
