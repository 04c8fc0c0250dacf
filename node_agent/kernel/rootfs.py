"""The small root file system of ns-mount-2, built on the VM from Debian's busybox-static (no download).

The tarball holds one static busybox binary, a symlink per applet (as
``busybox --list-full`` names them), the empty mount points a container needs
(proc, sys, dev, tmp) and a minimal /etc. Members carry fixed owners and
mtimes, so the same busybox always gives the same archive.

Usage (the playbook stages it; tests build it into a temporary directory)::

    python3 -m node_agent.kernel.rootfs /usr/share/labfleet/rootfs.tar.gz
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
DEFAULT_TARBALL = Path("/usr/share/labfleet/rootfs.tar.gz")
DIRECTORIES = ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "home")
ETC_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hostname": "rootfs\n",
    "etc/os-release": 'NAME="labfleet busybox rootfs"\nID=labfleet-rootfs\n',
}
_MTIME = 1_600_000_000  # fixed, so rebuilding from the same busybox gives the same members


class RootfsError(RuntimeError):
    """The root fs cannot be built: busybox-static is missing or is not a static busybox."""


def applets(busybox: Path = BUSYBOX) -> list[str]:
    """The applet paths busybox installs itself as (``bin/sh``, ``usr/bin/awk``, ...)."""
    if not busybox.is_file():
        raise RootfsError(f"{busybox} not found: install the Debian package busybox-static")
    out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True, timeout=10)
    return sorted(line.strip().lstrip("/") for line in out.stdout.splitlines() if line.strip())


def build(out: Path = DEFAULT_TARBALL, busybox: Path = BUSYBOX) -> Path:
    """Write the gzip tarball to ``out`` (atomically: a temp file then rename) and return ``out``."""
    names = applets(busybox)
    if "bin/sh" not in names:
        raise RootfsError(f"{busybox} has no sh applet; it is not Debian's busybox-static")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for d in DIRECTORIES:
                tar.addfile(_info(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
            with busybox.open("rb") as f:
                info = _info("bin/busybox", tarfile.REGTYPE, 0o755)
                info.size = os.fstat(f.fileno()).st_size
                tar.addfile(info, f)
            for name in names:
                if name == "bin/busybox":
                    continue
                link = _info(name, tarfile.SYMTYPE, 0o777)
                link.linkname = "/bin/busybox"
                tar.addfile(link)
            for name, text in ETC_FILES.items():
                data = text.encode()
                info = _info(name, tarfile.REGTYPE, 0o644)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_TARBALL, help="tarball to write")
    parser.add_argument("--busybox", type=Path, default=BUSYBOX, help="static busybox binary to package")
    args = parser.parse_args(argv)
    try:
        print(build(args.out, args.busybox))
    except RootfsError as exc:
        parser.exit(1, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
