"""The suite from a clone under a 0700 directory, as a newcomer who clones into /root runs it.

The test attendee is another account: it cannot enter the clone there, nor run a
venv interpreter copied under it. The lab tests must still pass (they give the
attendee readable copies, tests/attendee_share.py). This copies the clone's
tracked files (as they are in the work tree) under a fresh 0700 directory, makes
a venv there with a copied interpreter, and runs a few lab tests in which the
attendee reads ``labs/`` and runs ``node_agent`` from that clone.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.processes import REPO

pytestmark = pytest.mark.timeout(600)

# Tests in which the attendee account itself reads the catalog or runs the agent's code.
ATTENDEE_TESTS = [
    "tests/labs/test_catalog.py::test_walkthrough_passes_and_reset_cleans[ns-uts/rename]",
    "tests/labs/test_catalog.py::test_walkthrough_passes_and_reset_cleans[sc-filter/allow]",
    "tests/labs/test_attendee_socket.py::test_the_attendee_checks_gets_hints_and_resets_without_sudo",
]


def _as_nobody(*argv: str) -> subprocess.CompletedProcess:
    # From a shell already running as nobody: setpriv itself execs while it still holds root's capabilities.
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c",
                           'exec "$@"', "sh", *argv], capture_output=True, text=True, timeout=30)


def test_lab_tests_pass_from_a_clone_the_attendee_cannot_enter():
    home = Path(tempfile.mkdtemp(prefix="lf-root-like-"))  # 0700, owned by root: like /root
    try:
        clone = home / "labfleet"
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True,
                                 timeout=60).stdout.decode().split("\0")
        for name in filter(None, tracked):
            source = REPO / name
            if source.is_file():
                (clone / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, clone / name)
        # The interpreter a newcomer's venv has there: a copy under the 0700 directory. Its packages come
        # from this venv by a plain path (no editable finder: the clone's own controller/node_agent win).
        venv = home / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--copies", "--without-pip", str(venv)], check=True,
                       capture_output=True, timeout=120)
        python = venv / "bin" / "python"
        inner_site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                    capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        Path(inner_site, "outer-venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")

        # The premise: another account can neither read the clone's labs nor run that interpreter.
        assert _as_nobody("cat", str(clone / "labs" / "README.md")).returncode != 0
        assert _as_nobody(str(python), "-c", "pass").returncode != 0

        done = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *ATTENDEE_TESTS],
                              cwd=clone, capture_output=True, text=True, timeout=540)
        summary = done.stdout[-4000:] + done.stderr[-2000:]
        assert done.returncode == 0, summary
        assert f"{len(ATTENDEE_TESTS)} passed" in done.stdout and "skipped" not in done.stdout, summary
        # The clone's own code ran, not this work tree's.
        where = subprocess.run([str(python), "-c", "import node_agent, controller; "
                                "print(node_agent.__file__); print(controller.__file__)"],
                               cwd=clone, capture_output=True, text=True, check=True, timeout=30).stdout.split()
        assert all(path.startswith(str(clone)) for path in where), where
    finally:
        shutil.rmtree(home, ignore_errors=True)
