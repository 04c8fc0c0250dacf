"""SSH control sockets live in a folder that is the worker's own, never one another local user made first.

Another user is played by chown to ``nobody`` (the tests run as root); each
planted folder or link must be left unused, and the folder given back must be
a real 0700 directory of ours in which a socket of the longest name ssh binds
fits (bound for real).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.provision.runner import control_path_dir

NOBODY = 65534


def assert_ours(folder: Path) -> None:
    info = os.lstat(folder)
    assert stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode)
    assert info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o700
    # The longest name ssh binds there: %C (40 hex) plus its 16-character temporary suffix.
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / f"{'c' * 40}.{'r' * 16}"))
    os.unlink(folder / f"{'c' * 40}.{'r' * 16}")


def plant_foreign_dir(path: Path) -> Path:
    path.mkdir(mode=0o777)
    (path / "planted").write_text("someone else's\n")
    os.chown(path / "planted", NOBODY, NOBODY)
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o777)
    return path


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data dir short enough for its own control folder (pytest's tmp_path may not be)."""
    folder = Path(tempfile.mkdtemp(prefix="lfcpt-"))
    yield folder
    shutil.rmtree(folder)


def test_the_old_predictable_tmp_name_planted_by_another_user_is_not_used(data_dir):
    old = Path(tempfile.gettempdir()) / f"lfcp-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:10]}"
    plant_foreign_dir(old)
    try:
        folder = control_path_dir(data_dir)
        assert folder != old
        assert_ours(folder)
    finally:
        for child in old.iterdir():
            child.unlink()
        old.rmdir()


def test_a_link_at_the_folder_is_removed_not_followed(data_dir):
    target = plant_foreign_dir(data_dir / "elsewhere")
    (data_dir / "cp").symlink_to(target)
    folder = control_path_dir(data_dir)
    assert folder == data_dir / "cp"
    assert_ours(folder)
    # The link's target is untouched: still someone else's, with what they put there.
    assert os.stat(target).st_uid == NOBODY and (target / "planted").read_text() == "someone else's\n"
    assert list(folder.iterdir()) == []


def test_another_users_folder_there_is_replaced_by_ours(data_dir):
    plant_foreign_dir(data_dir / "cp")
    folder = control_path_dir(data_dir)
    assert_ours(folder)
    assert list(folder.iterdir()) == []


def test_a_loose_mode_is_tightened(data_dir):
    (data_dir / "cp").mkdir(mode=0o755)
    os.chmod(data_dir / "cp", 0o755)
    assert_ours(control_path_dir(data_dir))


def test_a_data_dir_too_long_for_a_socket_path_gets_a_random_private_folder_kept_while_ours(tmp_path):
    long_dir = tmp_path / ("x" * 60)
    long_dir.mkdir(mode=0o700)
    first = control_path_dir(long_dir)
    assert_ours(first)
    assert not str(first).startswith(str(long_dir))
    assert first.name != f"lfcp-{hashlib.sha256(str(long_dir).encode()).hexdigest()[:10]}"
    assert control_path_dir(long_dir) == first  # reused: warm master connections stay usable
    # Gone, and its name taken by another user: a new random folder, never theirs.
    first.rmdir()
    plant_foreign_dir(first)
    try:
        second = control_path_dir(long_dir)
        assert second != first
        assert_ours(second)
    finally:
        for child in first.iterdir():
            child.unlink()
        first.rmdir()
        second.rmdir()
