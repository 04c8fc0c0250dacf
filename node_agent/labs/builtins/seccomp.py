"""Checkers, solvers and resetters of the seccomp labs (docs/labs.md, "seccomp"): sc-profile, sc-strict,
sc-filter, sc-docker.

A check believes the kernel, not the attendee's source file: the ``Seccomp``, ``Seccomp_filters``,
``NoNewPrivs`` and ``TracerPid`` fields of their live processes (read only after the status file is proven
to be procfs's own), and the filter the kernel really holds, dumped with PTRACE_SECCOMP_GET_FILTER and
run through the BPF evaluator for the syscalls that matter. When no live process shows the state, the
agent re-runs the attendee's compiled program as the attendee, with stdin held open, watches its status
while it waits, then lets it go on and sees how it ends (exit status or SIGKILL).

sc-profile is the exception, and its text says so: its deliverable is an answer (the syscalls a program
needs), which the agent verifies against its own strace run of the same program. That file is read through
``attendee_files`` (no link followed, a regular file of the attendee's, bounded), and what the reason
quotes of it is a short escaped excerpt. Everything written in the home is written as the attendee.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node_agent.kernel import bpf, proctable, seccomp_filter, syscalls
from node_agent.kernel import seccomp_profile as profiles
from node_agent.kernel.bpf import SeccompData, Verdict
from node_agent.labs import attendee_files
from node_agent.labs.attendee_files import AttendeeFileError, excerpt
from node_agent.labs.builtins.seccomp_tasks import (
    compile_in_home,
    confined_tasks,
    exe_path,
    forged_run,
    program_path,
    program_problem,
    run_watched,
    status_task,
    traced_reason,
)
from node_agent.labs.context import LabContext, holder_env
from node_agent.labs.model import CheckResult, ResetReport
from node_agent.labs.registry import checker, resetter, solver

SOLVE_TIMEOUT = 5.0


# --- shared by the four labs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CleanParams:
    directory: str            # relative to the attendee's home, e.g. "seccomp/filter"
    modes: list[int] = field(default_factory=lambda: [1, 2])
    exe_under_directory: bool = False  # only kill confined processes whose program lives in ``directory``


@resetter("seccomp.clean", CleanParams)
def reset_clean(ctx: LabContext, p: CleanParams) -> ResetReport:
    """Kill the attendee's processes in the given seccomp modes, then remove ~/<directory>."""
    report = ResetReport()
    directory = ctx.attendee.home / p.directory
    targets = []
    for t in (status_task(q) for q in ctx.processes()):
        if t is None or t.mode not in p.modes:
            continue
        if p.exe_under_directory and not exe_path(t.proc.pid).startswith(f"{directory}/"):
            continue
        targets.append(t.proc)
    for pid in ctx.kill(targets):
        report.removed.append(f"process {pid} under seccomp")
    report.leftovers.extend(f"process {q.pid} ({excerpt(q.comm)}) is still under seccomp" for q in targets
                            if proctable.alive(q.pid, q.starttime))
    report.merge(attendee_files.remove(ctx, directory))
    return report


def _spawn_waiting(ctx: LabContext, program: Path) -> dict[str, Any]:
    """A holder running the attendee's program with stdin held open: it waits at its read(2)."""
    holder = ctx.spawn([str(program)], as_attendee=True, stdin_open=True)
    return {"holder": {"pid": holder.pid, "starttime": holder.starttime, "argv": list(holder.argv)}}


def _wait_for(check, ctx: LabContext, p: Any) -> CheckResult:
    deadline = time.monotonic() + SOLVE_TIMEOUT
    while True:
        result = check(ctx, p)
        if result.passed or time.monotonic() > deadline:
            return result
        time.sleep(0.005)


# --- sc-strict --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StrictParams:
    program: str = "seccomp/strict/strict"   # the attendee's binary, relative to their home
    clean_exit: bool = False                  # step "exit": it must also leave strict mode with _exit(2)
    source: str = "strict.c"                  # in the lab folder, for the solve


@checker("seccomp.strict", StrictParams)
def check_strict(ctx: LabContext, p: StrictParams) -> CheckResult:
    """Step "strict": a live task shows ``Seccomp: 1``, or the re-run program reaches it. Step "exit":
    the re-run program reaches strict mode and then exits 0, not killed."""
    tasks = []
    if not p.clean_exit:  # a live task proves step "strict"; step "exit" has to see the program end
        tasks, forged = confined_tasks(ctx, 1)
        if forged:
            return forged
        untraced = [t for t in tasks if t.tracer == 0]
        if untraced:
            return CheckResult.ok({"live": untraced[0].evidence()})
    program = program_path(ctx, p.program)
    problem = program_problem(ctx, program)
    if problem:
        if tasks:  # all of them traced
            return CheckResult.fail(traced_reason(tasks[0]), {"live": tasks[0].evidence()})
        return CheckResult.fail(f"{problem}: compile strict.c there, as yourself (gcc -o strict strict.c), "
                                "and run it.", {"program": str(program)})
    run = run_watched(ctx, program, [], want_mode=1)
    ev = run.evidence()
    if run.forged:
        return forged_run(program, run)
    if run.mode_seen != 1:
        return CheckResult.fail(f"{program} ran but never entered strict mode (its Seccomp stayed "
                                f"{run.mode_seen}): it must call prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT).", ev)
    if not p.clean_exit:
        return CheckResult.ok(ev)
    if run.killed_by:
        return CheckResult.fail(f"{program} entered strict mode, then the kernel killed it with {run.killed_by}: "
                                "it made a system call strict mode forbids — getpid(), or the exit_group(2) "
                                "that return and exit() make. End with syscall(SYS_exit, 0).", ev)
    if run.returncode != 0:
        return CheckResult.fail(f"{program} entered strict mode but exited with status {run.returncode}, not 0.", ev)
    return CheckResult.ok(ev)


@solver("seccomp.strict", StrictParams)
def solve_strict(ctx: LabContext, p: StrictParams) -> dict[str, Any]:
    """Build the lab's program (the finished one for step "exit") in the attendee's home, as they would,
    and keep one copy waiting in strict mode."""
    program = program_path(ctx, p.program)
    binary = compile_in_home(ctx, ctx.lab_dir / p.source, str(program.parent.relative_to(ctx.attendee.home)),
                      program.name, [])
    out = _spawn_waiting(ctx, binary)
    out["check"] = _wait_for(check_strict, ctx, p).status
    return out


# --- sc-filter --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FilterParams:
    program: str = "seccomp/filter/filter"
    denied: list[str] = field(default_factory=list)            # must be ERRNO(EPERM)
    allowed: list[str] = field(default_factory=lambda: ["getpid"])
    default_probes: list[str] = field(default_factory=lambda: ["reboot", "ptrace", "mount"])  # EPERM: default
    source: str = "filter.c"


def _judge_filter(dump: seccomp_filter.FilterDump, p: FilterParams) -> tuple[list[str], dict[str, str]]:
    """Problems with a dumped filter stack for this step (in words) and the verdicts looked at."""
    names = [*p.denied, *p.allowed, *p.default_probes]
    verdicts = {n: str(dump.evaluate(SeccompData(syscalls.number(n)))) for n in names}
    problems = []
    for n in p.allowed:
        if verdicts[n] != "ALLOW":
            problems.append(f"{n} must stay allowed but the filter answers {verdicts[n]}")
    for n in p.denied:
        if verdicts[n] != "ERRNO(1)":
            problems.append(f"{n} must fail with EPERM but the filter answers {verdicts[n]}: remove it from the "
                            "allow list")
    if any(verdicts[n] != "ERRNO(1)" for n in p.default_probes):
        odd = ", ".join(f"{n}: {verdicts[n]}" for n in p.default_probes)
        problems.append(f"the filter is not an allow list with a default of EPERM ({odd})")
    return problems, verdicts


def _untraced_dumps(tasks, looked: list[dict[str, Any]]):
    """Each untraced task with its dumped filter; a traced or undumpable one is noted in ``looked``."""
    for t in tasks:
        if t.tracer:
            looked.append(t.evidence(problem=traced_reason(t)))
            continue
        try:
            yield t, seccomp_filter.dump(t.proc.pid)
        except seccomp_filter.FilterDumpError as exc:
            looked.append(t.evidence(problem=str(exc)))


@checker("seccomp.filter", FilterParams)
def check_filter(ctx: LabContext, p: FilterParams) -> CheckResult:
    """A live task in filter mode (NoNewPrivs 1, untraced) whose dumped filter gives the step's verdicts;
    else the re-run program, dumped while it waits."""
    tasks, forged = confined_tasks(ctx, 2)
    if forged:
        return forged
    looked: list[dict[str, Any]] = []
    for t, dump in _untraced_dumps(tasks, looked):
        problems, verdicts = _judge_filter(dump, p)
        if not problems and t.no_new_privs == 1:
            return CheckResult.ok({"live": t.evidence(verdicts=verdicts, filters=len(dump.filters))})
        looked.append(t.evidence(verdicts=verdicts, problem="; ".join(problems) or "NoNewPrivs is not 1"))
    return _rerun_filter(ctx, p, looked)


def _rerun_filter(ctx: LabContext, p: FilterParams, looked: list[dict[str, Any]]) -> CheckResult:
    program = program_path(ctx, p.program)
    problem = program_problem(ctx, program)
    if problem:
        why = looked[0]["problem"] if looked else "no process of yours runs under a seccomp filter"
        return CheckResult.fail(f"{why.rstrip('.')}; and {problem}: compile filter.c there, as yourself "
                                "(gcc -o filter filter.c -lseccomp).", {"live": looked, "program": str(program)})
    probe_dir = f".labfleet-probe-{ctx.prefix}"
    run = run_watched(ctx, program, [probe_dir], want_mode=2, dump=True)
    made = program.parent / probe_dir
    try:
        probe = attendee_files.lookup(ctx.attendee, made)
    except AttendeeFileError:
        probe = None
    if probe is not None and stat.S_ISDIR(probe.st_mode) and probe.st_uid == ctx.attendee.uid:
        ctx.run(["rmdir", "--", str(made)], as_attendee=True)
    ev = {"live": looked, **run.evidence()}
    if run.forged:
        return forged_run(program, run)
    if run.mode_seen != 2:
        return CheckResult.fail(f"{program} ran but never loaded a seccomp filter (its Seccomp stayed "
                                f"{run.mode_seen}).", ev)
    if run.dump is None:
        return CheckResult.fail(f"The agent could not read the filter of {program}: {run.dump_error}", ev)
    problems, verdicts = _judge_filter(run.dump, p)
    ev.update(verdicts=verdicts, filters=len(run.dump.filters))
    if problems:
        return CheckResult.fail(f"The filter {program} loads is not right yet: {'; '.join(problems)}.", ev)
    if run.status_seen.get("NoNewPrivs") != "1":
        return CheckResult.fail(f"{program} loaded its filter without NoNewPrivs.", ev)
    return CheckResult.ok(ev)


@solver("seccomp.filter", FilterParams)
def solve_filter(ctx: LabContext, p: FilterParams) -> dict[str, Any]:
    """Build the lab's filter program (the finished one for step "deny") as the attendee and keep one
    copy waiting under its filter."""
    program = program_path(ctx, p.program)
    binary = compile_in_home(ctx, ctx.lab_dir / p.source, str(program.parent.relative_to(ctx.attendee.home)),
                      program.name, ["-lseccomp"])
    out = _spawn_waiting(ctx, binary)
    out["check"] = _wait_for(check_filter, ctx, p).status
    return out


# --- sc-docker --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DockerParams:
    profile: str = str(profiles.DEFAULT_PROFILE)
    also_blocked: list[str] = field(default_factory=list)   # blocked on top of the profile (step "custom")
    may_block: list[str] = field(default_factory=list)      # the attendee may block these too, or not
    custom: str = "seccomp/docker/custom.json"               # where the solve writes its custom profile


@dataclass(frozen=True)
class Reference:
    """What a profile answers: every x86_64 syscall with all-zero arguments, and the argument probes
    (syscall, arguments, answer) for the syscalls whose rules compare arguments."""

    verdicts: dict[int, tuple[str, int]]
    probes: list[tuple[int, tuple[int, ...], tuple[str, int]]]


_REFERENCE: dict[tuple[str, float], Reference] = {}


def _reference(path: str) -> Reference:
    """The profile's answers, cached per file version."""
    key = (path, os.stat(path).st_mtime)
    if key not in _REFERENCE:
        prof = profiles.load(path)
        probes = [(nr, args, prof.verdict_at(nr, args)) for nr, args in prof.argument_probes()]
        _REFERENCE[key] = Reference(prof.reference(), probes)
    return _REFERENCE[key]


_VERDICTS: dict[bytes, dict[tuple[int, tuple[int, ...]], Verdict]] = {}
_VERDICTS_KEPT = 8
_ZERO_ARGS = (0, 0, 0, 0, 0, 0)


class _Answers:
    """A filter stack's answers, remembered per program text: a filter is a pure function of its input,
    so a check of the same shell again, or of another task under the same profile, costs a dump and
    dictionary lookups instead of ~400 BPF runs."""

    def __init__(self, dump: seccomp_filter.FilterDump) -> None:
        self.dump = dump
        key = b"".join(bpf.encode(f) + b"|" for f in dump.filters)
        if key not in _VERDICTS:
            if len(_VERDICTS) >= _VERDICTS_KEPT:
                _VERDICTS.pop(next(iter(_VERDICTS)))
            _VERDICTS[key] = {}
        self.memo = _VERDICTS[key]

    def __call__(self, nr: int, args: tuple[int, ...] = _ZERO_ARGS) -> Verdict:
        got = self.memo.get((nr, args))
        if got is None:
            got = self.memo[(nr, args)] = self.dump.evaluate(SeccompData(nr, args=args))
        return got


def _judge_profile(dump: seccomp_filter.FilterDump, p: DockerParams, reference: Reference) -> dict[str, Any]:
    answer = _Answers(dump)
    got = {nr: answer(nr) for nr in syscalls.table()}
    want = reference.verdicts
    blocked = {syscalls.name(nr) for nr, v in got.items() if v.action != "allow"}
    ref_blocked = {syscalls.name(nr) for nr, (action, _) in want.items() if action != "allow"}
    skip = {syscalls.number(n) for n in (*p.also_blocked, *p.may_block)}
    wrong = {syscalls.name(nr): {"kernel": str(got[nr]), "profile": _as_text(want[nr])}
             for nr in got if nr not in skip and (got[nr].action, got[nr].data) != want[nr]}
    for nr, args, expected in reference.probes:
        seen = answer(nr, args)
        if nr not in skip and (seen.action, seen.data) != expected:
            call = f"{syscalls.name(nr)}({', '.join(hex(a) for a in args[: _last_set(args) + 1])})"
            wrong[call] = {"kernel": str(seen), "profile": _as_text(expected)}
    not_blocked = [n for n in p.also_blocked if got[syscalls.number(n)].action == "allow"]
    return {"blocked": len(blocked), "reference_blocked": len(ref_blocked) + len(p.also_blocked),
            "argument_probes": len(reference.probes), "differs": dict(sorted(wrong.items())[:20]),
            "differs_count": len(wrong), "not_blocked": not_blocked,
            "also_blocked": {n: str(got[syscalls.number(n)]) for n in p.also_blocked}}


def _as_text(verdict: tuple[str, int]) -> str:
    action, data = verdict
    return f"{action.upper()}({data})" if action in ("errno", "trace", "trap") else action.upper()


def _last_set(args: tuple[int, ...]) -> int:
    return max((i for i, a in enumerate(args) if a), default=0)


@checker("seccomp.docker_profile", DockerParams)
def check_docker_profile(ctx: LabContext, p: DockerParams) -> CheckResult:
    """A live task whose dumped filter answers every x86_64 syscall exactly as the profile does (plus, for
    the custom step, ``also_blocked`` blocked)."""
    try:
        reference = _reference(p.profile)
    except (OSError, profiles.ProfileError) as exc:
        return CheckResult.unavailable(f"the reference profile cannot be read: {exc}")
    tasks, forged = confined_tasks(ctx, 2)
    if forged:
        return forged
    looked = []
    for t, dump in _untraced_dumps(tasks, looked):
        judged = _judge_profile(dump, p, reference)
        if not judged["differs_count"] and not judged["not_blocked"]:
            return CheckResult.ok({"live": t.evidence(**judged)})
        looked.append(t.evidence(**judged))
    if not looked:
        return CheckResult.fail("No process of yours runs under a seccomp filter: start a shell under the profile "
                                "(scrun) and keep it open while you check.", {"live": []})
    return CheckResult.fail(_profile_reason(looked[0], p), {"live": looked})


def _profile_reason(ev: dict[str, Any], p: DockerParams) -> str:
    if "problem" in ev:
        return ev["problem"]
    if ev["not_blocked"]:
        return (f"Process {ev['pid']} still may call {', '.join(ev['not_blocked'])}: libseccomp keeps the first "
                "rule it gets for a syscall, so a deny rule after the big allow list changes nothing; take the "
                "names out of the allow list too.")
    names = ", ".join(ev["differs"])
    return (f"Process {ev['pid']} is under a filter, but it answers {ev['differs_count']} syscalls differently "
            f"from the profile ({names}).")


@solver("seccomp.docker_profile", DockerParams)
def solve_docker_profile(ctx: LabContext, p: DockerParams) -> dict[str, Any]:
    """Compile the profile (for the custom step: a copy that blocks ``also_blocked`` with EPERM, written
    where the attendee would write it) with libseccomp and load it in a holder that sleeps."""
    path = p.profile
    if p.also_blocked:  # written as the attendee, in place of whatever was there (a link is not followed)
        path = str(attendee_files.clear_for_writing(ctx, p.custom))
        attendee_files.run(ctx, ["tee", "--", path], f"writing {path}", input=json.dumps(custom_profile(p)))
    env = {**holder_env(ctx.attendee), "PYTHONPATH": str(_agent_root())}
    holder = ctx.spawn([_python(), "-m", "node_agent.kernel.seccomp_profile", path, "--", "sleep", "infinity"],
                       as_attendee=True, env=env)
    return {"holder": {"pid": holder.pid, "starttime": holder.starttime}, "profile": path,
            "check": _wait_for(check_docker_profile, ctx, p).status}


def custom_profile(p: DockerParams) -> dict[str, Any]:
    """The reference profile with ``also_blocked`` out of every allow rule and denied with EPERM."""
    doc = json.loads(Path(p.profile).read_text())
    for rule in doc["syscalls"]:
        if rule.get("action") == "SCMP_ACT_ALLOW":
            rule["names"] = [n for n in rule["names"] if n not in p.also_blocked]
    doc["syscalls"] = [r for r in doc["syscalls"] if r.get("names")]
    doc["syscalls"].insert(0, {"names": list(p.also_blocked), "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
    return doc


def _agent_root() -> Path:
    return Path(profiles.__file__).resolve().parents[2]


def _python() -> str:
    # The attendee cannot run an interpreter kept under /root (a pyenv or a venv there); the system's
    # python3 carries Debian's python3-seccomp.
    return shutil.which("python3", path=holder_env(None)["PATH"]) or sys.executable


# --- sc-profile -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProfileAnswerParams:
    answer: str = "seccomp/profile/profile.txt"   # the attendee's list, relative to their home
    source: str = "hello.c"                       # the program, in the lab folder
    baseline: str = "empty.c"                     # an empty program: what the C runtime alone needs
    slack_missing: int = 3
    slack_extra: int = 5


UNKNOWN_SHOWN = 10  # unknown names quoted in the evidence (each an excerpt)
_NAME = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?([a-z_][a-z0-9_]*)\(")


def parse_answer(text: str) -> list[str]:
    """Syscall names from the attendee's file: a ``strace -c`` summary or names separated by blanks/commas."""
    if "% time" in text:
        names = []
        for line in text.splitlines():
            cols = line.split()
            if cols and re.fullmatch(r"[\d.]+", cols[0]) and cols[-1] != "total":
                names.append(cols[-1])
        return names
    tokens = re.split(r"[\s,]+", re.sub(r"#.*", "", text))
    return [t.removesuffix("()") for t in tokens if t]


def traced_syscalls(strace_output: str) -> set[str]:
    """Syscall names in ``strace -f`` output (``resumed`` halves and signals skipped)."""
    return {m.group(1) for line in strace_output.splitlines() if (m := _NAME.match(line))}


def _reference_trace(ctx: LabContext, p: ProfileAnswerParams) -> dict[str, list[str]]:
    """The agent's own strace runs of the lab's program and of an empty one, built with gcc, cached."""
    source, baseline = ctx.lab_dir / p.source, ctx.lab_dir / p.baseline
    digest = hashlib.sha256(source.read_bytes() + baseline.read_bytes()).hexdigest()[:16]
    cache = ctx.work_dir / f"strace-{digest}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    build = ctx.work_dir / f"build-{digest}"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    out = {}
    for name, src in (("program", source), ("baseline", baseline)):
        subprocess.run(["gcc", "-o", str(build / name), str(src)], check=True, capture_output=True, timeout=60)
        trace = build / f"{name}.strace"
        subprocess.run(["strace", "-f", "-qq", "-o", str(trace), str(build / name)], cwd=build, check=True,
                       capture_output=True, timeout=30)
        out[name] = sorted(traced_syscalls(trace.read_text()))
    shutil.rmtree(build, ignore_errors=True)
    cache.write_text(json.dumps(out))
    return out


@checker("seccomp.profile_answer", ProfileAnswerParams)
def check_profile_answer(ctx: LabContext, p: ProfileAnswerParams) -> CheckResult:
    """The attendee's list against the agent's own strace of the same program: everything the program
    itself adds over an empty C program must be named; a little slack for the C runtime's start-up."""
    answer_path = ctx.attendee.home / p.answer
    try:  # the attendee's file, read as root: no link followed, a regular file of theirs, bounded
        text = attendee_files.read_text(ctx.attendee, p.answer)
    except FileNotFoundError:
        return CheckResult.fail(f"{answer_path} does not exist yet: trace the program with strace and save the "
                                "list of syscalls there (strace -f -c -o profile.txt ./hello does it).",
                                {"answer": str(answer_path)})
    except AttendeeFileError as exc:
        return CheckResult.fail(f"{exc}. Save your list there as a plain file of your own "
                                "(strace -f -c -o profile.txt ./hello does it).", {"answer": str(answer_path)})
    ref = _reference_trace(ctx, p)
    seen, core = set(ref["program"]), set(ref["program"]) - set(ref["baseline"])
    answer = set(parse_answer(text))
    unknown = sorted(n for n in answer if n not in syscalls.table().values())
    missing_core, missing = sorted(core - answer), sorted(seen - answer)
    extra = sorted(answer - seen - set(unknown))
    ev = {"answer": str(answer_path), "named": len(answer), "agent_saw": sorted(seen), "program_own": sorted(core),
          "missing": missing, "extra": extra, "unknown": [excerpt(n) for n in unknown[:UNKNOWN_SHOWN]],
          "unknown_count": len(unknown)}
    if unknown:  # the attendee's own words: quoted short and escaped
        return CheckResult.fail(f"These are not x86_64 syscalls: {excerpt(', '.join(unknown))}.", ev)
    if missing_core:
        return CheckResult.fail(f"Your list lacks syscalls the program itself makes: {', '.join(missing_core)}.", ev)
    if len(missing) > p.slack_missing:
        return CheckResult.fail(f"Your list lacks {len(missing)} syscalls the agent saw ({', '.join(missing)}); "
                                f"up to {p.slack_missing} may differ between runs. Did you trace with -f?", ev)
    if len(extra) > p.slack_extra:
        return CheckResult.fail(f"Your list names {len(extra)} syscalls the program never made "
                                f"({', '.join(extra)}).", ev)
    return CheckResult.ok(ev)


@solver("seccomp.profile_answer", ProfileAnswerParams)
def solve_profile_answer(ctx: LabContext, p: ProfileAnswerParams) -> dict[str, Any]:
    """Build the program in the attendee's directory and write the answer with ``strace -c``, as them."""
    answer = ctx.attendee.home / p.answer
    binary = compile_in_home(ctx, ctx.lab_dir / p.source, str(answer.parent.relative_to(ctx.attendee.home)),
                      Path(p.source).stem, [])
    attendee_files.clear_for_writing(ctx, p.answer)  # strace -o would write through a planted link
    attendee_files.run(ctx, ["strace", "-f", "-c", "-o", answer.name, f"./{binary.name}"], "strace",
                       cwd=answer.parent)
    return {"answer": str(answer), "check": check_profile_answer(ctx, p).status}
