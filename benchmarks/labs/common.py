"""What every lab benchmark shares: a throwaway attendee account, an engine under unique names, timers, main().

One version of each, so the topic benchmarks (cgroups_bench, namespaces_bench, network_bench, seccomp_bench)
and catalog_bench measure the same way and clean up the same way:

- ``attendee_account``: a real Linux account like ``class`` on a lab VM (passwordless sudo, as the
  walkthroughs need), under a unique name; afterwards every process of that uid is killed by PID and
  reaped, and the account and its sudoers drop-in are removed.
- ``lab_engine``: the engine over the repo's labs with a unique prefix and the cgroup parent
  ``labfleet-bench/<prefix>``; at the end the labs named are reset, the work dir removed and the parent
  cgroup dirs it created removed (``labfleet-bench`` itself only when no concurrent run still uses it).
- ``measure_step``: solve, five checks, the shell-script baseline and reset, per round, timed.
- ``timed``, ``baseline_ms``, ``fmt_ms``, ``main``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import median, print_header
from node_agent.kernel import procfs, reaper
from node_agent.labs.context import Attendee, LabContext
from node_agent.labs.engine import Engine
from node_agent.labs.loader import Catalog, load_catalog
from node_agent.labs.model import Lab
from node_agent.labs.progress import ProgressStore

REPO = Path(__file__).resolve().parents[2]
LABS_DIR = REPO / "labs"
NONCE = 417


# ---- the attendee ----------------------------------------------------------------------------------------


def kill_uid(uid: int) -> None:
    """Every process of ``uid`` (the run's own account only), killed by PID, then reaped."""
    for pid in procfs.pids():
        if procfs.uid_of(pid) == uid:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    reaper.reap_orphans()


@contextmanager
def attendee_account(tag: str = "lfb") -> Iterator[Attendee]:
    """A real account for the run (like ``class`` on a lab VM, with passwordless sudo), removed afterwards."""
    name = tag + secrets.token_hex(3)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    sudoers = Path(f"/etc/sudoers.d/labfleet-bench-{name}")
    try:
        sudoers.write_text(f"{name} ALL=(ALL) NOPASSWD:ALL\n")
        sudoers.chmod(0o440)
        account = Attendee.lookup(name)
        try:
            yield account
        finally:
            kill_uid(account.uid)
    finally:
        sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "--remove", name], capture_output=True)


# ---- the engine --------------------------------------------------------------------------------------------


@dataclass
class BenchLabs:
    """The engine of one run and the names it uses (prefix, cgroup parent, work dir)."""

    engine: Engine
    catalog: Catalog
    context: Callable[[Lab], LabContext]
    prefix: str
    cgroup_parent: str
    work: Path


def _rmdir_retry(path: Path, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while path.is_dir():
        try:
            path.rmdir()
        except OSError:
            if time.monotonic() > deadline:
                print(f"left behind: {path} ({sorted(p.name for p in path.iterdir() if p.is_dir())})")
                return
            reaper.reap_orphans()
            time.sleep(0.01)


@contextmanager
def lab_engine(attendee: Attendee, *, reset: Iterable[str] = (), progress: bool = False,
               nonce: int = NONCE) -> Iterator[BenchLabs]:
    """The engine over the repo's labs under a unique prefix; afterwards ``reset`` labs, work dir and cgroups go."""
    work = Path(tempfile.mkdtemp(prefix="labfleet-bench-"))
    prefix = "b" + secrets.token_hex(2)
    parent = f"labfleet-bench/{prefix}"
    catalog = load_catalog(LABS_DIR)

    def context(lab: Lab) -> LabContext:
        return LabContext(lab_id=lab.id, lab_dir=lab.path, attendee=attendee, nonce=nonce, prefix=prefix,
                          cgroup_parent=parent, work_root=work, cgroup=lab.cgroup)

    engine = Engine(catalog, context, ProgressStore(work / "progress.json") if progress else None)
    try:
        yield BenchLabs(engine, catalog, context, prefix, parent, work)
    finally:
        for lab_id in reset:
            engine.reset(lab_id)
        shutil.rmtree(work, ignore_errors=True)
        any_lab = next(iter(catalog.labs.values()), None)
        if any_lab is not None:
            for root in context(any_lab).lab_cgroup_roots():
                _rmdir_retry(root)
                try:
                    root.parent.rmdir()  # labfleet-bench: shared by concurrent runs, kept while one uses it
                except OSError:
                    pass


# ---- timing ------------------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and how long it took, in ms."""
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000


def baseline_ms(script: str, args: list[str], runs: int) -> tuple[float, bool]:
    """Median ms of ``runs`` runs of the shell-script check (``sh -c script check args...``); all exited 0."""
    times, ok = [], True
    for _ in range(runs):
        done, ms = timed(lambda: subprocess.run(["sh", "-c", script, "check", *args], capture_output=True))
        times.append(ms)
        ok = ok and done.returncode == 0
    return median(times), ok


@dataclass
class StepTimes:
    """The ms of every solve, check (engine, and the checker alone), baseline and reset of one step's rounds."""

    solves: list[float] = field(default_factory=list)
    checks: list[float] = field(default_factory=list)
    checker: list[float] = field(default_factory=list)
    baselines: list[float] = field(default_factory=list)
    resets: list[float] = field(default_factory=list)
    passed: bool = True
    clean: bool = True
    baseline_passed: bool = True

    def medians(self) -> dict[str, Any]:
        return {"check_ms": median(self.checks), "solve_ms": median(self.solves), "reset_ms": median(self.resets),
                "baseline_check_ms": median(self.baselines) if self.baselines else None,
                "baseline_passed": self.baseline_passed, "all_passed": self.passed, "all_clean": self.clean}


def measure_step(engine: Engine, lab_id: str, step: str, rounds: int,
                 baseline: Callable[[], tuple[float | None, bool]],
                 after_checks: Callable[[], bool] | None = None) -> StepTimes:
    """Per round: the engine's solve, five checks, ``after_checks`` (more timings; passed?), the baseline, reset."""
    t = StepTimes()
    for _ in range(rounds):
        solved, ms = timed(lambda: engine.solve(lab_id, step))
        t.solves.append(ms)
        t.passed = t.passed and solved["passed"]
        for _ in range(5):
            result, ms = timed(lambda: engine.check(lab_id, step))
            t.checks.append(ms)
            t.checker.append(result["steps"][0]["ms"])
            t.passed = t.passed and result["passed"]
        if after_checks is not None:
            t.passed = after_checks() and t.passed
        base, ok = baseline()
        if base is not None:
            t.baselines.append(base)
        t.baseline_passed = t.baseline_passed and ok
        report, ms = timed(lambda: engine.reset(lab_id))
        t.resets.append(ms)
        t.clean = t.clean and report["clean"]
    return t


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} ms"


# ---- main --------------------------------------------------------------------------------------------------


def main(doc: str, title: str, why_root: str, report: Callable[[int], None], *, rounds: int = 10) -> None:
    """``--rounds N``, refused unless root (``why_root`` says why), the header, then ``report(rounds)``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error(f"run as root: {why_root}")
    print_header(title, args)
    report(args.rounds)
