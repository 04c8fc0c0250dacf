"""playbooks/tools/labfleet_stage.py: the same inputs give the same bytes, so site.yml stays idempotent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.processes import REPO

TOOL = REPO / "playbooks" / "tools" / "labfleet_stage.py"


def stage(out: Path, *args: str) -> dict:
    result = subprocess.run([sys.executable, str(TOOL), "--out", str(out), "--project", str(REPO), *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_catalog_archive_is_reproducible_and_changes_only_with_the_catalog(tmp_path):
    catalog = shutil.copytree(REPO / "labs", tmp_path / "labs")
    first = stage(tmp_path / "a", "--labs", str(catalog))
    assert first["changed"] == ["labs"]
    again = stage(tmp_path / "a", "--labs", str(catalog))
    elsewhere = stage(tmp_path / "b", "--labs", str(catalog))
    assert again["changed"] == [] and again["artifacts"] == first["artifacts"]
    assert elsewhere["artifacts"]["labs"]["sha256"] == first["artifacts"]["labs"]["sha256"]

    (catalog / "README.md").write_text("changed\n")
    after = stage(tmp_path / "a", "--labs", str(catalog))
    assert after["changed"] == ["labs"] and after["artifacts"]["labs"]["sha256"] != first["artifacts"]["labs"]["sha256"]

    with tarfile.open(after["artifacts"]["labs"]["path"]) as tar:
        members = tar.getmembers()
    assert all(m.name == "labs" or m.name.startswith("labs/") for m in members)
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "root" for m in members)
    assert not any("__pycache__" in m.name or m.name.endswith(".pyc") for m in members)
    names = {m.name for m in members}
    assert {f"labs/{p.name}" for p in catalog.iterdir()} <= names


def test_the_root_fs_is_built_once_by_the_agents_builder(tmp_path):
    first = stage(tmp_path, "--busybox", "/bin/busybox")
    again = stage(tmp_path, "--busybox", "/bin/busybox")
    assert first["changed"] == ["rootfs"] and again["changed"] == []
    assert again["artifacts"]["rootfs"] == first["artifacts"]["rootfs"]
    with tarfile.open(first["artifacts"]["rootfs"]["path"]) as tar:
        names = set(tar.getnames())
    assert {"bin/busybox", "bin/sh", "proc", "etc/passwd"} <= names


def test_a_given_wheel_and_tarball_are_used_as_they_are(tmp_path):
    wheel = tmp_path / "labfleet-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not built here")
    tarball = tmp_path / "mine.tar.gz"
    tarball.write_bytes(b"my own root fs")
    out = stage(tmp_path / "stage", "--wheel", str(wheel), "--rootfs-tarball", str(tarball),
                "--inputs", str(REPO / "playbooks"))
    assert out["artifacts"]["wheel"]["path"] == str(wheel) and out["artifacts"]["rootfs"]["path"] == str(tarball)
    assert out["changed"] == [] and len(out["inputs_sha256"]) == 64


def test_bad_inputs_are_refused_naming_the_variable(tmp_path):
    for args, key in ((["--labs", str(tmp_path / "nowhere")], "labfleet_labs_src"),
                      (["--wheel", str(tmp_path / "none.whl")], "labfleet_agent_wheel"),
                      (["--busybox", str(tmp_path / "busybox")], "busybox-static")):
        result = subprocess.run([sys.executable, str(TOOL), "--out", str(tmp_path / "s"), "--project", str(REPO),
                                 *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and key in result.stderr, (args, result.stderr)


def test_one_bundle_holds_everything_a_host_gets_and_is_reproducible(tmp_path):
    wheel = tmp_path / "labfleet-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not built here")
    hook = tmp_path / "hook.sh"
    hook.write_text("echo hi\n")
    tarball = tmp_path / "mine.tar.gz"
    tarball.write_bytes(b"my own root fs")
    args = ("--labs", str(REPO / "labs"), "--rootfs-tarball", str(tarball), "--wheel", str(wheel), "--bundle",
            f"--bundle-file=labfleet-help.sh={hook}")
    first = stage(tmp_path / "a", *args)
    again = stage(tmp_path / "a", *args)
    elsewhere = stage(tmp_path / "b", *args)
    assert "bundle" in first["changed"] and again["changed"] == []
    assert elsewhere["artifacts"]["bundle"]["sha256"] == first["artifacts"]["bundle"]["sha256"]
    with tarfile.open(first["artifacts"]["bundle"]["path"]) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert set(members) == {"labs.tar.gz", "rootfs.tar.gz", wheel.name, "labfleet-help.sh"}
    assert members[wheel.name] == b"not built here" and members["labfleet-help.sh"] == b"echo hi\n"

    hook.write_text("echo changed\n")
    after = stage(tmp_path / "a", *args)
    assert after["changed"] == ["bundle"]
    bad = subprocess.run([sys.executable, str(TOOL), "--out", str(tmp_path / "c"), "--project", str(REPO),
                          "--bundle", "--bundle-file=nothing"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "NAME=PATH" in bad.stderr
