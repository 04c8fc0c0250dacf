#!/usr/bin/env python3
"""Build, on the controller, the files that site.yml copies to every lab VM.

A lab VM has no internet (and a local fleet host has no network beyond its
bridge), so everything it installs is made here once per run and copied:

- ``labs``: the lab catalog (the repo's ``labs/``) as one tar.gz. One archive
  is one copy per host instead of one per file; the host unpacks it fresh, so
  a lab removed from the catalog disappears from the VM too.
- ``rootfs``: the small root file system of lab ns-mount-2, built by the
  agent's own builder (``node_agent.kernel.rootfs``, imported from the source
  tree) from the controller's static busybox (Debian's ``busybox-static``);
  cached under a hash of the busybox and the builder, so it is built once.
- ``wheel``: the labfleet wheel the agent is installed from, either the one
  given or one built with ``pip wheel --no-deps`` and cached under a hash of
  the sources, so a second run copies the same bytes.
- ``inputs``: a sha256 over the given files and folders (the playbooks, the
  systemd unit): with the artifacts' hashes it says whether a host provisioned
  earlier already has what this run would give it (site.yml's fast path).

The catalog archive is reproducible (sorted members, fixed owner, modes and
mtime, gzip without a timestamp) and rewritten only when its bytes change; the
root fs and a built wheel are cached. So the same inputs give the same
sha256s, which is how the playbook stays idempotent. Prints one JSON object: ``{"changed": [names], "artifacts": {name:
{"path", "sha256"}}}``. Errors go to stderr with exit code 2, naming the path.

Standard library only (plus the agent's stdlib-only root fs builder): it runs
with the Python that runs Ansible.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# 2000-01-01: a fixed, plausible mtime for every archive member (reproducible builds).
FIXED_MTIME = 946684800
SKIP_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache"}
WHEEL_SOURCES = ("pyproject.toml", "controller", "node_agent")


class StageError(Exception):
    """An input is missing or unusable; the message names the path."""


def _member(name: str, *, mode: int, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "root", "root"
    return info


def _archive(add_members) -> bytes:
    """A reproducible tar.gz from ``add_members(tar)``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        add_members(tar)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _walk(root: Path) -> list[Path]:
    """Every file and directory under ``root``, sorted, without caches and hidden entries."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES and not d.startswith("."))
        base = Path(dirpath)
        found.extend(base / d for d in dirnames)
        found.extend(base / f for f in sorted(filenames) if not f.startswith(".") and not f.endswith(".pyc"))
    return sorted(found)


def labs_archive(src: Path) -> bytes:
    """The catalog folder as ``labs/...`` members; executables keep their x bits (0755), others 0644."""
    if not src.is_dir():
        raise StageError(f"labs: {src} is not a directory (labfleet_labs_src)")

    def add(tar: tarfile.TarFile) -> None:
        tar.addfile(_member("labs", mode=0o755, kind=tarfile.DIRTYPE))
        for path in _walk(src):
            name = "labs/" + path.relative_to(src).as_posix()
            if path.is_symlink():
                raise StageError(f"labs: {path} is a symlink; the catalog must hold plain files")
            if path.is_dir():
                tar.addfile(_member(name, mode=0o755, kind=tarfile.DIRTYPE))
                continue
            data = path.read_bytes()
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            tar.addfile(_member(name, mode=mode, size=len(data)), io.BytesIO(data))

    return _archive(add)


def rootfs_archive(busybox: Path, project: Path, cache: Path) -> tuple[Path, bool]:
    """The ns-mount-2 root fs built by ``node_agent.kernel.rootfs`` from ``busybox``, cached by input hash."""
    if not busybox.is_file():
        raise StageError(f"rootfs: {busybox} not found; install Debian's busybox-static on the controller "
                         "or set labfleet_rootfs_tarball to a tar.gz of your own")
    builder = project / "node_agent" / "kernel" / "rootfs.py"
    if not builder.is_file():
        raise StageError(f"rootfs: {builder} not found (labfleet_project_dir must be the labfleet source tree)")
    key = hashlib.sha256(busybox.read_bytes() + b"\0" + builder.read_bytes()).hexdigest()[:16]
    target = cache / f"rootfs-{key}.tar.gz"
    if target.is_file():
        return target, False
    sys.path.insert(0, str(project))
    from node_agent.kernel import rootfs  # the same builder the lab engine falls back to on a VM

    try:
        rootfs.build(target, busybox)
    except rootfs.RootfsError as exc:
        raise StageError(f"rootfs: {exc}") from exc
    return target, True


def source_hash(project: Path) -> str:
    """sha256 over the paths and bytes of what goes into the wheel."""
    digest = hashlib.sha256()
    for top in WHEEL_SOURCES:
        root = project / top
        if not root.exists():
            raise StageError(f"wheel: {root} not found (labfleet_project_dir must be the repo)")
        for path in [root] if root.is_file() else _walk(root):
            if path.is_file():
                digest.update(path.relative_to(project).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_wheel(project: Path, python: str, cache: Path) -> tuple[Path, bool]:
    """The cached wheel for the current sources, built with ``python -m pip wheel`` when missing."""
    target = cache / source_hash(project)[:16]
    existing = sorted(target.glob("labfleet-*.whl"))
    if existing:
        return existing[0], False
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        argv = [python, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", tmp, str(project)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "SOURCE_DATE_EPOCH": str(FIXED_MTIME)})
        built = sorted(Path(tmp).glob("labfleet-*.whl"))
        if proc.returncode != 0 or not built:
            raise StageError(f"wheel: `{' '.join(argv)}` failed: {(proc.stderr or proc.stdout).strip()[-800:]}")
        final = target / built[0].name
        shutil.move(built[0], final)
    return final, True


def tree_hash(paths: list[str]) -> str:
    """sha256 over the relative names and bytes of every file in ``paths`` (files or folders)."""
    digest = hashlib.sha256()
    for given in paths:
        root = Path(given).expanduser()
        if not root.exists():
            raise StageError(f"inputs: {root} not found")
        files = [root] if root.is_file() else [p for p in _walk(root) if p.is_file()]
        for path in files:
            name = root.name if path == root else f"{root.name}/{path.relative_to(root).as_posix()}"
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def bundle_archive(artifacts: dict[str, dict[str, str]], extra: list[str]) -> bytes:
    """One uncompressed, reproducible tar of everything a host gets (its members are compressed
    already): the catalog as ``labs.tar.gz``, the root fs as ``rootfs.tar.gz``, the wheel under its
    own name, and each ``NAME=PATH`` of ``extra``. site.yml copies it once per host (one task, and no
    transfer at all when the host's copy has the same sha256); labfleet_host places its members."""
    members: list[tuple[str, Path]] = []
    for key, name in (("labs", "labs.tar.gz"), ("rootfs", "rootfs.tar.gz"), ("wheel", None)):
        if key in artifacts:
            path = Path(artifacts[key]["path"])
            members.append((name or path.name, path))
    for item in extra:
        name, sep, value = item.partition("=")
        if not sep or not name or "/" in name:
            raise StageError(f"bundle: {item!r} is not NAME=PATH")
        members.append((name, _given_file(f"bundle file {name}", value)))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, path in sorted(members):
            data = path.read_bytes()
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            tar.addfile(_member(name, mode=mode, size=len(data)), io.BytesIO(data))
    return raw.getvalue()


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically unless ``path`` already holds exactly these bytes."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _given_file(key: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise StageError(f"{key}: {path} is not a file")
    return path


def stage(args: argparse.Namespace) -> dict:
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    changed: list[str] = []
    artifacts: dict[str, dict[str, str]] = {}

    def record(name: str, path: Path, was_changed: bool) -> None:
        artifacts[name] = {"path": str(path.resolve()), "sha256": sha256_file(path)}
        if was_changed:
            changed.append(name)

    if args.labs:
        path = out / "labs.tar.gz"
        record("labs", path, write_if_changed(path, labs_archive(Path(args.labs).expanduser())))
    project = Path(args.project).expanduser().resolve()
    if args.rootfs_tarball:
        record("rootfs", _given_file("labfleet_rootfs_tarball", args.rootfs_tarball), False)
    elif args.busybox:
        record("rootfs", *rootfs_archive(Path(args.busybox), project, out))
    if args.wheel:
        record("wheel", _given_file("labfleet_agent_wheel", args.wheel), False)
    elif args.build_wheel:
        record("wheel", *build_wheel(project, args.python, out / "wheels"))
    if args.bundle:
        path = out / "bundle.tar"
        record("bundle", path, write_if_changed(path, bundle_archive(artifacts, args.bundle_file)))
    result = {"changed": changed, "artifacts": artifacts}
    if args.inputs:
        result["inputs_sha256"] = tree_hash(args.inputs)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="stage directory (created)")
    parser.add_argument("--labs", help="the lab catalog folder to archive")
    parser.add_argument("--busybox", help="a static busybox to build the ns-mount-2 root fs from")
    parser.add_argument("--rootfs-tarball", help="use this root fs tar.gz instead of building one")
    parser.add_argument("--wheel", help="use this labfleet wheel instead of building one")
    parser.add_argument("--project", required=True, help="the labfleet source tree (root fs builder, wheel)")
    parser.add_argument("--build-wheel", action="store_true", help="build the wheel from --project (cached)")
    parser.add_argument("--python", default=sys.executable, help="Python whose pip builds the wheel")
    parser.add_argument("--bundle", action="store_true",
                        help="also write bundle.tar: the artifacts and every --bundle-file in one archive")
    parser.add_argument("--bundle-file", action="append", default=[], metavar="NAME=PATH",
                        help="a file to add to the bundle under NAME")
    parser.add_argument("--inputs", nargs="*", default=[], help="files/folders to hash into inputs_sha256")
    args = parser.parse_args(argv)
    try:
        result = stage(args)
    except StageError as exc:
        print(f"labfleet_stage: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
