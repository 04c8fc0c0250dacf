"""A bounded fork bomb: forks inside a given cgroup until the kernel refuses (EAGAIN) or a budget runs out.

Used by the agent to solve ``cg-forkbomb``, as the active probe of its check
(a refused fork seen by the agent itself proves ``pids.max`` is enforced, not
just written), and by the benchmark. It is bounded three ways, so a mistake can
never take the VM down: at most ``budget`` (≤ 300) fork attempts in total, made
by one leader process only (children never fork); every process arms a
self-destruct timer (SIGALRM, default action: terminate); and the children
block on a pipe whose write end only the leader holds, so they exit as soon as
the leader does.

The leader is a forked child of the caller. It joins the cgroup by writing 0
("myself") to ``cgroup.procs``, forks, and sends its result back as one line
of JSON; in ``hold`` mode it then keeps its children alive until the caller
releases it (or the timer fires), otherwise it lets them go and reaps them
before it exits, leaving no zombie behind.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MAX_BUDGET = 300
# A child that is a copy of a Python process costs ~0.4 ms to fork and ~0.3 ms of page-table teardown
# to die; a static busybox started with posix_spawn costs a fraction of both, which is most of the
# time to the first refusal and of a cgroup's cleanup. Without busybox the children are Python copies:
# slower, same semantics.
SLIM_CHILD = ("/bin/busybox", "cat")  # reads the hold pipe on stdin, exits on EOF


@dataclass
class BombResult:
    """What the leader saw: forks that worked, forks refused, and when the first refusal came."""

    forks: int
    refused: int
    first_refused_s: float | None  # seconds from the leader's first fork attempt to the first EAGAIN
    leader_pid: int
    error: str = ""
    children: list[int] = field(default_factory=list)

    @property
    def saw_eagain(self) -> bool:
        return self.refused > 0


class Bomb:
    """A running leader in ``hold`` mode; ``release()`` lets its children exit and reaps the leader."""

    def __init__(self, result: BombResult, release_fd: int) -> None:
        self.result = result
        self._release_fd = release_fd

    def release(self, timeout: float = 2.0) -> None:
        if self._release_fd >= 0:
            os.close(self._release_fd)
            self._release_fd = -1
        _reap(self.result.leader_pid, timeout)


def run(
    procs_file: Path | None,
    *,
    budget: int = MAX_BUDGET,
    lifetime: float = 5.0,
    stop_after_refused: int = 1,
    hold: bool = False,
    slim: bool | None = None,
) -> BombResult | Bomb:
    """Start a leader in the cgroup whose ``cgroup.procs`` is ``procs_file`` (None: stay where the caller is)
    and fork until ``stop_after_refused`` forks were refused or ``budget`` attempts were made.

    Returns the result once the leader has reported it; with ``hold=True`` a ``Bomb`` whose children stay
    alive (up to ``lifetime`` seconds) until ``release()``, else the leader has already exited and reaped
    its children. ``slim`` (default: when busybox is installed) starts each child with posix_spawn as a
    static ``busybox cat`` on the hold pipe (no self-destruct timer of its own: it ends with the leader),
    else each child is a fork of the leader with its own timer.
    """
    if slim is None:
        slim = os.access(SLIM_CHILD[0], os.X_OK)
    if not 1 <= budget <= MAX_BUDGET:
        raise ValueError(f"budget: expected 1..{MAX_BUDGET} fork attempts, got {budget}")
    if not 0 < lifetime <= 60:
        raise ValueError(f"lifetime: expected 0 < seconds <= 60, got {lifetime}")
    result_r, result_w = os.pipe()
    release_r, release_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the leader
        os.close(result_r)
        os.close(release_w)
        code = 1
        try:
            _leader(procs_file, budget, lifetime, stop_after_refused, hold, slim, result_w, release_r)
            code = 0
        finally:
            os._exit(code)
    os.close(result_w)
    os.close(release_r)
    line = _read_all(result_r)
    os.close(result_r)
    result = _parse(line, pid)
    if hold and not result.error:
        return Bomb(result, release_w)
    os.close(release_w)
    _reap(pid, lifetime + 1)
    return result


def _leader(
    procs_file: Path | None,
    budget: int,
    lifetime: float,
    stop_after_refused: int,
    hold: bool,
    slim: bool,
    result_w: int,
    release_r: int,
) -> None:
    signal.setitimer(signal.ITIMER_REAL, lifetime)  # self-destruct, whatever happens below
    report = {"forks": 0, "refused": 0, "first_refused_s": None, "error": "", "children": []}
    try:
        if procs_file is not None:
            with open(procs_file, "w") as f:
                f.write("0")
    except OSError as exc:
        report["error"] = f"cannot join {procs_file}: {os.strerror(exc.errno or 0)}"
        os.write(result_w, (json.dumps(report) + "\n").encode())
        return
    hold_r, hold_w = os.pipe()
    children: list[int] = []
    start = time.monotonic()
    for _ in range(budget):
        try:
            child = _spawn_slim(hold_r) if slim else os.fork()
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                report["error"] = f"fork: {os.strerror(exc.errno or 0)}"
                break
            report["refused"] += 1
            if report["first_refused_s"] is None:
                report["first_refused_s"] = time.monotonic() - start
            if report["refused"] >= stop_after_refused:
                break
            continue
        if child == 0:
            _child(hold_r, (hold_w, result_w, release_r), lifetime)
        children.append(child)
    report["forks"] = len(children)
    report["children"] = children
    os.write(result_w, (json.dumps(report) + "\n").encode())
    os.close(result_w)
    if hold:
        os.read(release_r, 1)  # EOF when the caller releases (or dies); the timer ends it otherwise
    os.close(hold_w)  # children see EOF and exit
    for child in children:
        os.waitpid(child, 0)


def _spawn_slim(hold_r: int) -> int:
    # posix_spawn is clone(CLONE_VM|CLONE_VFORK) + execve in glibc: no page tables to copy, and the
    # pids controller charges and refuses it exactly like fork(2). The pipes are O_CLOEXEC (PEP 446),
    # so the child holds only the hold pipe's read end, on stdin.
    return os.posix_spawn(SLIM_CHILD[0], list(SLIM_CHILD), {}, file_actions=[(os.POSIX_SPAWN_DUP2, hold_r, 0)])


def _child(hold_r: int, close: tuple[int, ...], lifetime: float) -> None:
    try:
        for fd in close:  # only the leader may hold these: EOF must mean "the leader is gone"
            os.close(fd)
        signal.setitimer(signal.ITIMER_REAL, lifetime)
        os.read(hold_r, 1)
    finally:
        os._exit(0)


def _read_all(fd: int, eof: bool = False) -> bytes:
    """Read until a newline (one JSON line) or, with ``eof``, until the writers are gone."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
        if chunk.endswith(b"\n") and not eof:
            break
    return b"".join(chunks)


def _parse(line: bytes, leader_pid: int) -> BombResult:
    if not line:
        return BombResult(0, 0, None, leader_pid, error="the leader died before reporting (timer or killed)")
    data = json.loads(line)
    return BombResult(
        data["forks"], data["refused"], data["first_refused_s"], leader_pid, data["error"], data["children"]
    )


def _reap(pid: int, timeout: float) -> None:
    """waitpid the leader, SIGKILLing it if it outlives ``timeout`` (its own timer normally ends it first)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        time.sleep(0.0001)


# The probe in busybox's ash: it moves itself in (echo 0 > cgroup.procs), then forks one holder per
# round (cat on the hold pipe, fd 3: a background job's stdin is /dev/null), printing its pid, until a fork fails (ash exits 2, "can't fork") or the budget is spent.
PROBE_SCRIPT = 'echo 0 > "$1" || exit 3; i=0; while [ $i -lt "$2" ]; do cat <&3 & echo $!; i=$((i+1)); done'


def probe(procs_file: Path, *, budget: int = MAX_BUDGET, reap: Callable[[], object] | None = None,
          timeout: float = 2.0) -> BombResult:
    """The agent's active probe: does a fork inside this cgroup get EAGAIN within ``budget`` attempts?

    With busybox, the probe is a static ash started with posix_spawn (~1 ms when the cgroup is full: no
    copy of the agent's memory); its holders read a pipe only the agent holds and exit when it is closed,
    then the agent reaps them (``reap``: they are orphans, and the agent is their subreaper). Without
    busybox, a forked leader does the same with ``run``.
    """
    if not 1 <= budget <= MAX_BUDGET:
        raise ValueError(f"budget: expected 1..{MAX_BUDGET} fork attempts, got {budget}")
    if not os.access(SLIM_CHILD[0], os.X_OK):
        result = run(procs_file, budget=budget, lifetime=timeout, stop_after_refused=1, hold=False)
        assert isinstance(result, BombResult)
        return result
    hold_r, hold_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    start = time.monotonic()
    pid = os.posix_spawn(SLIM_CHILD[0], ["busybox", "sh", "-c", PROBE_SCRIPT, "probe", str(procs_file), str(budget)],
                         {"PATH": "/bin"}, file_actions=[(os.POSIX_SPAWN_DUP2, hold_r, 3),
                                                         (os.POSIX_SPAWN_DUP2, out_w, 1),
                                                         (os.POSIX_SPAWN_DUP2, err_w, 2)])
    for fd in (hold_r, out_w, err_w):
        os.close(fd)
    _reap(pid, timeout)
    elapsed = time.monotonic() - start
    os.close(hold_w)  # its holders see EOF and exit
    holders = [int(line) for line in _read_all(out_r, eof=True).split()]
    message = _read_all(err_r, eof=True).decode(errors="replace").strip()
    os.close(out_r)
    os.close(err_r)
    refused = "can't fork" in message
    error = "" if refused or not message else message
    if holders and reap is not None:
        _wait_reaped(holders, reap, timeout)
    return BombResult(len(holders), int(refused), elapsed if refused else None, pid, error, holders)


def _wait_reaped(pids: list[int], reap: Callable[[], object], timeout: float) -> None:
    """Reap the probe's holders: each keeps a pids charge in the attendee's cgroup until it is reaped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap()
        if not any(os.path.exists(f"/proc/{pid}") for pid in pids):
            return
        time.sleep(0.0005)
