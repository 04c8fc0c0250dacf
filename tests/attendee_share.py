"""What the test attendee may read and run: copies in a 0755 directory, never the clone itself.

The clone may sit under a 0700 directory (``/root``, a ``mktemp -d``), and so
may the interpreter (a venv's python links into ``~/.pyenv``). The attendee
account then cannot read ``labs/`` or run ``sys.executable``. Instead of
opening the user's directories, the session makes one world-readable temp
directory with copies of what the attendee needs (the lab catalog, the
standard-library-only ``node_agent`` package) and picks an interpreter the
attendee can execute; ``remove()`` deletes it at the end of the session.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIN_PYTHON = (3, 11)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


@dataclass(frozen=True)
class Share:
    root: Path

    @property
    def labs(self) -> Path:
        return self.root / "labs"

    @property
    def pythonpath(self) -> str:
        """PYTHONPATH for the attendee: the copied ``node_agent`` package, beside ``labs`` as in a checkout
        (sc-docker's ``scrun`` finds it two folders above itself)."""
        return str(self.root)

    @property
    def python(self) -> str:
        return _attendee_python()

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (this process's environment by default) with the attendee's PYTHONPATH."""
        return {**(os.environ if base is None else base), "PYTHONPATH": self.pythonpath}


_share: Share | None = None


def get() -> Share:
    """The session's share, made on first use."""
    global _share
    if _share is None:
        root = Path(tempfile.mkdtemp(prefix="labfleet-attendee-", dir="/tmp"))  # TMPDIR may be private
        try:
            shutil.copytree(REPO / "labs", root / "labs", ignore=_IGNORE)
            shutil.copytree(REPO / "node_agent", root / "node_agent", ignore=_IGNORE)
            _open_up(root)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        _share = Share(root)
    return _share


def remove() -> None:
    global _share
    if _share is not None:
        shutil.rmtree(_share.root, ignore_errors=True)
        _share = None


def _open_up(root: Path) -> None:
    """Directories 0755, files readable (executable where they were): only inside our own temp dir."""
    for directory, _dirs, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            path = os.path.join(directory, name)
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            os.chmod(path, 0o755 if mode & 0o100 else 0o644)


def world_reachable(path: str) -> bool:
    """Whether any account may execute ``path``: every directory on the way searchable by others."""
    real = Path(os.path.realpath(path))
    try:
        if not os.stat(real).st_mode & stat.S_IXOTH:
            return False
        return all(os.stat(d).st_mode & stat.S_IXOTH for d in real.parents)
    except OSError:
        return False


@functools.cache
def _attendee_python() -> str:
    """This interpreter if the attendee can run it, else the system's python3 (3.11 or newer)."""
    for candidate in (sys.executable, getattr(sys, "_base_executable", ""), "/usr/bin/python3"):
        if candidate and world_reachable(candidate) and _version_ok(candidate):
            return candidate
    raise RuntimeError("no Python >= 3.11 that the test attendee can run: install python3 (Debian's python3 "
                       "package) or use an interpreter outside a 0700 directory")


def _version_ok(python: str) -> bool:
    done = subprocess.run([python, "-c", f"import sys; print(sys.version_info >= {MIN_PYTHON!r})"],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip() == "True"
