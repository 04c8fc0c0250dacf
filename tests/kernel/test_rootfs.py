"""The ns-mount-2 root fs, built from this machine's busybox-static and used as a real unshare --root."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from node_agent.kernel import rootfs


def test_tarball_holds_busybox_its_applets_and_mount_points(tmp_path: Path) -> None:
    out = rootfs.build(tmp_path / "share" / "rootfs.tar.gz")
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode == 0o755
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/bin/busybox"
    assert {"proc", "sys", "dev", "tmp"} <= {n for n, m in members.items() if m.isdir()}
    assert not list(out.parent.glob(".*.tmp"))


def test_same_busybox_gives_the_same_members(tmp_path: Path) -> None:
    def listing(path: Path) -> list[tuple]:
        with tarfile.open(path) as tar:
            return [(m.name, m.mode, m.mtime, m.linkname, m.size) for m in tar.getmembers()]

    assert listing(rootfs.build(tmp_path / "a.tgz")) == listing(rootfs.build(tmp_path / "b.tgz"))


def test_unpacked_root_runs_a_shell_as_pid_1(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "node_agent.kernel.rootfs", str(tmp_path / "r.tgz")],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == str(tmp_path / "r.tgz")
    root = tmp_path / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "-xzf", str(tmp_path / "r.tgz"), "-C", str(root)], check=True)
    ps = subprocess.run(["unshare", "-Ufmrp", "--mount-proc", f"--root={root}", "--wd=/", "sh", "-c",
                         "echo $$; cat /etc/os-release"], capture_output=True, text=True, timeout=10, check=True)
    assert ps.stdout.splitlines()[0] == "1"
    assert "labfleet busybox rootfs" in ps.stdout


def test_missing_busybox_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(rootfs.RootfsError, match="install the Debian package busybox-static"):
        rootfs.build(tmp_path / "r.tgz", busybox=tmp_path / "nope")
    with pytest.raises(SystemExit) as exit_info:
        rootfs.main([str(tmp_path / "r.tgz"), "--busybox", str(tmp_path / "nope")])
    assert exit_info.value.code == 1
    assert not (tmp_path / "r.tgz").exists()
