"""Forgetting the enrollment token on disk once the agent holds node credentials.

The token reaches the agent from a file: the env file systemd's ``EnvironmentFile=``
(or the supervisor, reading the same file) turns into ``LABFLEET_AGENT_ENROLL_TOKEN``,
or ``enroll_token = ...`` in the TOML config. Once enrolled, the agent rewrites that
file without the token's line, so a token never outlives the enrollment it was for on
the VM. The agent runs as root: the file is opened without following a link, must be a
regular file of at most 64 KiB, and is replaced atomically (a temporary file in the same
folder with the same owner and mode, fsync, rename), its other lines kept as they were.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from node_agent import atomic_file

MAX_BYTES = 64 * 1024
TOKEN_LINE = re.compile(rb"^\s*(?:export\s+)?(?:LABFLEET_AGENT_ENROLL_TOKEN|enroll_token)\s*=")


class TokenFileError(OSError):
    """The file cannot be rewritten safely (a link, not a regular file, too large)."""


def forget_token(path: Path) -> bool:
    """Remove every token line from ``path``; True when one was removed. A missing file holds no token."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise TokenFileError(exc.errno, f"cannot open it without following links: {exc.strerror}", str(path)) \
            from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TokenFileError(f"{path}: not a regular file")
        if info.st_size > MAX_BYTES:
            raise TokenFileError(f"{path}: larger than {MAX_BYTES} bytes")
        with os.fdopen(os.dup(fd), "rb") as f:
            content = f.read(MAX_BYTES + 1)
    finally:
        os.close(fd)
    lines = content.splitlines(keepends=True)
    kept = [line for line in lines if not TOKEN_LINE.match(line)]
    if len(kept) == len(lines):
        return False
    _replace(path, b"".join(kept), info)
    return True


def _replace(path: Path, data: bytes, like: os.stat_result) -> None:
    tmp = path.with_name(f".{path.name}.labfleet-tmp")
    tmp.unlink(missing_ok=True)  # left by a crash; O_EXCL below refuses anything planted meanwhile
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchown(fd, like.st_uid, like.st_gid)
            os.fchmod(fd, stat.S_IMODE(like.st_mode))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    atomic_file.fsync_dir(path.parent)
