"""The agent wheel the playbook copies to every host: built once, reused while the sources are the same.

A lab VM installs the agent from this file with ``pip --no-index`` (no
internet on the VM). The wheel is cached under a hash of the sources, so a
second run hands the playbook the very same bytes and the copy and install
tasks report no change (idempotence). It is built with the controller's own
Python and setuptools (``--no-build-isolation``), so building needs no network
either.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from controller.provision.runner import ProvisionError

REPO_ROOT = Path(__file__).resolve().parents[2]
# The agent needs only node_agent/: a wheel of it alone stays the same while the controller changes.
# pyproject.toml names README.md as the long description: the wheel gets a fixed one-line stand-in,
# so editing the README does not make a new wheel (and a reinstall on every host).
SOURCES = ("pyproject.toml", "node_agent")
README_STUB = "labfleet node agent (built by the controller for lab VMs).\n"
_SKIP = {"__pycache__", ".pytest_cache", ".ruff_cache"}
# 2000-01-01: fixed timestamps inside the wheel (reproducible builds).
SOURCE_DATE_EPOCH = "946684800"


def agent_wheel(cache_dir: Path, *, project: Path = REPO_ROOT) -> Path:
    """The wheel for the current sources under ``cache_dir``, built with ``pip wheel --no-deps`` if missing."""
    target = cache_dir / source_hash(project)[:16]
    existing = sorted(target.glob("labfleet-*.whl"))
    if existing:
        return existing[0]
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lfwheel-") as tmp:
        # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
        src = Path(tmp) / "src"
        for name in SOURCES:
            path = project / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(*_SKIP, "*.pyc"))
            elif path.is_file():
                src.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, src / name)
        (src / "README.md").write_text(README_STUB)
        out = Path(tmp) / "out"
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                "--disable-pip-version-check", "-w", str(out), str(src)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
        built = sorted(out.glob("labfleet-*.whl"))
        if done.returncode != 0 or not built:
            detail = (done.stderr or done.stdout).strip()[-800:]
            raise ProvisionError(f"building the agent wheel failed ({' '.join(argv[:6])} ...): {detail}")
        final = target / built[0].name
        shutil.move(built[0], final.with_suffix(".tmp"))
        os.replace(final.with_suffix(".tmp"), final)
    return final


def source_hash(project: Path) -> str:
    """sha256 over the relative paths and bytes of everything that goes into the wheel."""
    digest = hashlib.sha256()
    for name in SOURCES:
        root = project / name
        if not root.exists():
            raise ProvisionError(f"cannot build the agent wheel: {root} is missing (not a source checkout?)")
        paths = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.is_file() and not _SKIP.intersection(p.parts) and p.suffix != ".pyc")
        for path in paths:
            digest.update(path.relative_to(project).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
