"""What the seccomp checks look at, and how they touch the attendee's files.

- ``confined_tasks``: the lab's live tasks in a seccomp mode, read from /proc/<pid>/status only once the
  file is proven procfs's own (a bind mount over it makes the check ``forged``).
- ``run_watched``: the attendee's compiled program re-run as the attendee with stdin held open; the agent
  watches its status while it waits, dumps its filter, then lets it go on and sees how it ends. Its
  whole session is killed afterwards.
- ``compile_in_home``/``program_problem``: the attendee's program is built as the attendee, and found
  without following a link they planted (``attendee_files``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node_agent.kernel import namespaces, procfs, reaper, seccomp_filter
from node_agent.kernel.procfs import ProcInfo
from node_agent.labs import attendee_files
from node_agent.labs.context import LabContext, holder_env
from node_agent.labs.model import CheckResult

WATCH_TIMEOUT = 3.0
MAX_LIVE_TASKS = 16  # dumping costs ~1 ms a task; an attendee with more confined tasks gets the newest


# --- the state of a live task ------------------------------------------------------------------------

@dataclass(frozen=True)
class SeccompTask:
    """A process and the seccomp fields of its (genuine) /proc/<pid>/status."""

    proc: ProcInfo
    mode: int
    filters: int
    no_new_privs: int
    tracer: int

    def evidence(self, **extra: Any) -> dict[str, Any]:
        return {"pid": self.proc.pid, "starttime": self.proc.starttime, "comm": self.proc.comm,
                "uid": self.proc.uid, "Seccomp": self.mode, "Seccomp_filters": self.filters,
                "NoNewPrivs": self.no_new_privs, "TracerPid": self.tracer, **extra}


def status_task(p: ProcInfo) -> SeccompTask | None:
    try:
        st = procfs.status(p.pid)
    except OSError:
        return None
    if not procfs.alive(p.pid, p.starttime):
        return None
    return SeccompTask(p, int(st.get("Seccomp", "0")), int(st.get("Seccomp_filters", "0")),
                       int(st.get("NoNewPrivs", "0")), int(st.get("TracerPid", "0")))


def confined_tasks(ctx: LabContext, mode: int) -> tuple[list[SeccompTask], CheckResult | None]:
    """The lab's live tasks in seccomp ``mode``; or a forged verdict if a status file is not procfs's own."""
    tasks = [t for t in (status_task(p) for p in ctx.processes()) if t is not None and t.mode == mode]
    if tasks:
        mounts = procfs.mountinfo("self")
        for t in tasks:
            try:
                reasons = namespaces.forged_proc_files(t.proc.pid, ("status",), mounts=mounts)
            except FileNotFoundError:
                continue
            if reasons:
                return [], CheckResult.forged(
                    f"The status file of process {t.proc.pid} is not the kernel's: {'; '.join(reasons)}. "
                    "The check reads the kernel, so a file mounted over /proc cannot pass it.",
                    t.evidence(forged=reasons))
    tasks.sort(key=lambda t: -t.proc.starttime)
    return tasks[:MAX_LIVE_TASKS], None


def traced_reason(t: SeccompTask) -> str:
    return (f"process {t.proc.pid} ({attendee_files.excerpt(t.proc.comm)}) is traced by pid {t.tracer} (TracerPid): a tracer can make "
            "a filtered task skip its filter, so a traced task does not count. Detach strace/gdb and check again.")


# --- running the attendee's program, watched ------------------------------------------------------------

@dataclass
class WatchedRun:
    """What the agent saw running the attendee's program: the seccomp mode it reached while waiting on
    stdin, the filter it held then (dumped), and how it ended."""

    argv: list[str]
    mode_seen: int = 0
    status_seen: dict[str, str] = field(default_factory=dict)
    dump: seccomp_filter.FilterDump | None = None
    dump_error: str = ""
    returncode: int | None = None
    output: str = ""
    forged: list[str] = field(default_factory=list)

    @property
    def killed_by(self) -> str | None:
        if self.returncode is not None and self.returncode < 0:
            return signal.Signals(-self.returncode).name
        return None

    def evidence(self) -> dict[str, Any]:
        fields = ("Seccomp", "Seccomp_filters", "NoNewPrivs", "TracerPid")
        return {"rerun": self.argv, "seen": {k: self.status_seen.get(k) for k in fields},
                "exit": self.returncode, "signal": self.killed_by,
                "output": attendee_files.excerpt(self.output, tail=True)}


def run_watched(ctx: LabContext, program: Path, args: list[str], *, want_mode: int, dump: bool = False,
                timeout: float = WATCH_TIMEOUT) -> WatchedRun:
    """Run ``program`` as the attendee in its own directory; once its status shows ``want_mode`` (or it
    ends), dump its filters if asked, then close its stdin and collect how it ends."""
    a = ctx.attendee
    run = WatchedRun([str(program), *args])
    # The child drops to the attendee before exec (no setpriv: one exec less); env enters the program's
    # directory after the drop, as the attendee, and execs it in place (same pid).
    argv = ["env", "-C", str(program.parent), "--", *run.argv]
    with reaper.spawning():
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                cwd="/", env=holder_env(a), start_new_session=True,
                                user=a.uid, group=a.gid, extra_groups=a.groups())
        reaper.own(proc.pid)
    try:
        _watch(proc, run, want_mode, timeout)
        try:  # a mount raced over the new process's status file would have fed _watch its numbers
            run.forged = namespaces.forged_proc_files(proc.pid, ("status",))
        except FileNotFoundError:
            pass
        if dump and run.mode_seen == 2:
            try:
                run.dump = seccomp_filter.dump(proc.pid, caller_owns=True)
            except seccomp_filter.FilterDumpError as exc:
                run.dump_error = str(exc)
        _finish(proc, run, timeout)
    finally:
        _end_session(proc)
        reaper.disown(proc.pid)
        reaper.reap_orphans()
    return run


def _finish(proc: subprocess.Popen, run: WatchedRun, timeout: float) -> None:
    """Send Enter, close stdin, wait for the end; the output is what the pipe holds by then (a child it
    left behind may keep the pipe open, so nothing waits for end-of-file)."""
    try:
        proc.stdin.write(b"\n")
        proc.stdin.close()
    except BrokenPipeError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _end_session(proc)
    os.set_blocking(proc.stdout.fileno(), False)
    chunks = []
    while True:
        try:
            chunk = os.read(proc.stdout.fileno(), 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.stdout.close()
    run.returncode, run.output = proc.returncode, b"".join(chunks).decode(errors="replace")


def _end_session(proc: subprocess.Popen, timeout: float = 1.0) -> None:
    """Kill the run and anything it forked (they share the session it leads: start_new_session), and wait
    until the group is empty — SIGKILL is asynchronous, and a reset or check right after must not meet
    a member still dying."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # a pgid is never reused while a member lives, zombies too
        except ProcessLookupError:
            return
        reaper.reap_orphans()
        time.sleep(0.0005)


def _watch(proc: subprocess.Popen, run: WatchedRun, want_mode: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            st = procfs.status(proc.pid)
        except OSError:
            return
        run.status_seen = st
        run.mode_seen = int(st.get("Seccomp", "0"))
        if run.mode_seen == want_mode and st.get("State", "")[:1] == "S":
            return  # confined, and asleep: waiting on stdin
        time.sleep(0.0005)


def forged_run(program: Path, run: WatchedRun) -> CheckResult:
    """The verdict when the re-run's own status file turned out not to be procfs's."""
    return CheckResult.forged(f"While the agent ran {program}, its status file was not the kernel's: "
                              f"{'; '.join(run.forged)}.", {**run.evidence(), "forged": run.forged})


def program_path(ctx: LabContext, relative: str) -> Path:
    """Where a lab expects the attendee's binary (``relative`` to their home)."""
    return ctx.attendee.home / relative


# --- the attendee's program, built and found in their home -------------------------------------------------

def compile_in_home(ctx: LabContext, source: Path, workdir: str, output: str, libs: list[str]) -> Path:
    """Copy ``source`` into ~/<workdir> and build it there with gcc, as the attendee does (everything as
    them; an old ``output`` is removed first, so a link or FIFO planted in its place is not written to)."""
    source = source.resolve()  # the lab folder: the attendee reads it, the copy is theirs
    binary = attendee_files.clear_for_writing(ctx, Path(workdir) / output)
    target = binary.parent
    attendee_files.run(ctx, ["cp", "--remove-destination", "--", str(source), source.name],
                       f"copying {source.name}", cwd=target)
    attendee_files.run(ctx, ["gcc", "-o", output, source.name, *libs], f"gcc {source.name}", cwd=target,
                       timeout=60)
    return binary


def program_problem(ctx: LabContext, program: Path) -> str | None:
    """Why the attendee's ``program`` cannot be re-run (missing, a link, a FIFO, not theirs), or None."""
    try:
        found = attendee_files.regular_file(ctx.attendee, program)
    except attendee_files.AttendeeFileError as exc:
        return str(exc)
    return None if found is not None else f"{program} does not exist"


def exe_path(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        return ""
