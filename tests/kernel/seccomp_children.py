"""Real child processes under real seccomp filters, for the kernel-helper tests; stopped by PID."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def python_child(code: str, *, ready: str | None = "ready") -> Iterator[subprocess.Popen]:
    """Run ``code`` in a fresh Python; yield once it printed its first line (``ready`` if given, kept as
    ``child.first_line``); kill it by its PID afterwards."""
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=REPO)
    try:
        line = child.stdout.readline().strip()
        assert line and (ready is None or line == ready), f"child said {line!r} instead of {ready!r}"
        child.first_line = line
        yield child
    finally:
        child.kill()
        child.wait()


def run_python(code: str, *, prefix: list[str] | None = None) -> str:
    """Run ``code`` to completion (under ``prefix``, e.g. a profile runner) and return its stdout."""
    argv = [*(prefix or []), sys.executable, "-c", code]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout
