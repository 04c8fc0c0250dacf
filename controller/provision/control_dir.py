"""The folder for Ansible's SSH control sockets: the worker's own, and short enough for a socket path.

Whoever owns the folder the master connections' sockets live in can read and
replace them, and so ride on (or stand in for) the controller's SSH sessions
to every VM. A fixed name under /tmp (``/tmp/lfcp-<hash>``) is one any local
user can create first. The folder is ``<data dir>/cp`` (the data dir is the
controller's, 0700), made 0700 and checked to be ours and not a link; a link,
a file or another user's folder found there is removed and made again.

A socket path holds at most 107 bytes, and ssh first binds a master's socket
as ``<folder>/<%C, 40 hex>.<16 random characters>`` before renaming it. When
``<data dir>/cp`` is too long for that, the folder is a ``mkdtemp`` one (a
random name, 0700, ours), recorded in ``<data dir>/provision/control-dir`` so
later runs reuse it (and its warm master connections) while it is still ours.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

SUN_PATH_MAX = 107
# "/" + OpenSSH's %C (40 hex) + "." + the 16 random characters of its temporary name.
SOCKET_NAME_BYTES = 1 + 40 + 1 + 16
MAX_DIR_BYTES = SUN_PATH_MAX - SOCKET_NAME_BYTES


class ControlDirError(RuntimeError):
    """No private folder could be had for the control sockets."""


def control_dir(data_dir: Path) -> Path:
    """A 0700 folder of this process's user, short enough for OpenSSH's control sockets."""
    preferred = Path(data_dir) / "cp"
    if _fits(preferred):
        return _own_folder(preferred)
    return _recorded_temp_folder(Path(data_dir) / "provision" / "control-dir")


def _fits(path: Path) -> bool:
    return len(os.fsencode(path)) <= MAX_DIR_BYTES


def _is_private(info: os.stat_result) -> bool:
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            and stat.S_IMODE(info.st_mode) & 0o077 == 0)


def _own_folder(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for _ in range(3):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            if stat.S_IMODE(info.st_mode) != 0o700:
                os.chmod(path, 0o700)
            return path
        _remove(path, info)
    raise ControlDirError(f"{path} keeps being replaced by something that is not this user's folder")


def _remove(path: Path, info: os.stat_result) -> None:
    """Take away what someone else put at ``path`` (a link is removed, never followed)."""
    if stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode):
        shutil.rmtree(path, ignore_errors=True)
        if os.path.lexists(path):  # not ours to empty: set it aside, out of the way
            os.rename(path, path.with_name(f".{path.name}-refused-{secrets.token_hex(4)}"))
    else:
        os.unlink(path)


def _recorded_temp_folder(record: Path) -> Path:
    try:
        recorded = Path(record.read_text().strip())
        if recorded.is_absolute() and _fits(recorded) and _is_private(os.lstat(recorded)):
            return recorded
    except (OSError, ValueError):
        pass
    made = Path(tempfile.mkdtemp(prefix="lfcp-"))
    if not _fits(made):  # a long TMPDIR
        os.rmdir(made)
        made = Path(tempfile.mkdtemp(prefix="lfcp-", dir="/tmp"))
    record.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = record.with_name(f".{record.name}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(str(made))
    os.replace(temp, record)
    return made
