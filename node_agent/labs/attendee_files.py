"""The attendee's home, as an agent running as root may touch it.

Every name in the home is the attendee's to choose: a symbolic link to /etc/shadow or to the agent's
credentials, a FIFO that never answers, a link to /dev/zero, a root-owned hard link, a file system
mounted there (fusermount needs no sudo, and a FUSE server can stall every read). So:

- looking and reading (``lookup``, ``regular_file``, ``open_file``, ``read_text``): the walk starts at the
  home and opens each directory relative to the one before with O_NOFOLLOW|O_DIRECTORY (openat), crosses
  no mount point, and the file itself is opened O_NOFOLLOW|O_NONBLOCK, must be a regular file owned by
  the attendee, and is read up to a cap;
- writing and running (``run``, ``make_directory``, ``clear_for_writing``): as the attendee — the command
  drops to their uid, gid and groups before it starts and enters its working directory after the drop,
  so a link leads it only where the attendee could go anyway; a file a solve rewrites is first removed
  as the attendee, so a planted link or FIFO is replaced, never written through;
- removing (``remove``): the same walk, then rmtree through directory descriptors, never across a mount.

Attendee text quoted back in a reason or evidence goes through ``excerpt``: short, escaped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from node_agent.kernel import procfs
from node_agent.labs.context import Attendee, LabContext
from node_agent.labs.model import ResetReport

MAX_READ = 64 * 1024      # an answer file is a few KiB; more is not an answer
EXCERPT_CHARS = 60        # what a reason or evidence may quote of attendee text
COMMAND_OUTPUT_CHARS = 160  # the end of a failed command's error output, quoted in the solve's error

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_FOLLOWS_NO_LINK = "is a symbolic link: the agent follows no link in your home"
_MOUNTED = "is a mount point: the agent does not cross a file system mounted in your home"


class AttendeeFileError(Exception):
    """A path in the attendee's home the agent will not use as it stands; the message is for the attendee
    and names the path and what is wrong with it."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(f"{path} {problem}")


class AttendeeCommandFailed(RuntimeError):
    """A command run as the attendee (mkdir, cp, gcc, strace, tar) failed; the message quotes the end of its
    error output."""


# --- attendee text in reasons -------------------------------------------------------------------------

def excerpt(text: str, limit: int = EXCERPT_CHARS, *, tail: bool = False) -> str:
    """At most ``limit`` characters of ``text`` (its end with ``tail``), control and other non-printable
    characters and backslashes escaped as repr() does, "…" where it was cut."""
    window = text[-(limit + 1):] if tail else text[: limit + 1]
    shown = "".join(ch if ch.isprintable() and ch != "\\" else repr(ch)[1:-1] for ch in window)
    if len(shown) <= limit and len(window) == len(text):
        return shown
    return "…" + shown[-(limit - 1):] if tail else shown[: limit - 1] + "…"


# --- looking and reading, without following ---------------------------------------------------------------

def kind(mode: int) -> str:
    """What an lstat() mode is, in words."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "an unknown kind of file"


def _parts(attendee: Attendee, path: Path | str) -> tuple[str, ...]:
    """``path`` (relative to the home, or absolute inside it) as names below the home."""
    p = Path(path)
    if p.is_absolute():
        p = p.relative_to(attendee.home)  # ValueError outside the home: a lab file's mistake
    parts = p.parts
    if not parts or any(x in ("", ".", "..") for x in parts):
        raise ValueError(f"{path}: expected a path below the attendee's home without '..'")
    return parts


def _mount_points_under(home: Path) -> set[str]:
    prefix = f"{home}/"
    return {m.mount_point for m in procfs.mountinfo("self") if m.mount_point.startswith(prefix)}


def _problem(dir_fd: int, name: str, *, wanted: str) -> str:
    """Why ``name`` (in ``dir_fd``) is not the ``wanted`` kind of file, in words."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        return _FOLLOWS_NO_LINK
    return f"is {kind(st.st_mode)}, not {wanted}"


@contextlib.contextmanager
def _directory(attendee: Attendee, parts: tuple[str, ...]) -> Iterator[int]:
    """A descriptor of home/parts, each step opened without following a link or crossing a mount.

    FileNotFoundError when a step is missing; AttendeeFileError when one is a link, not a directory or
    a mount point.
    """
    home = attendee.home
    mounts = _mount_points_under(home)
    fd = os.open(home, _DIR_FLAGS & ~os.O_NOFOLLOW)  # /home/<user> is root's to name: a VM may link it
    try:
        home_dev = os.fstat(fd).st_dev
        here = home
        for part in parts:
            here = here / part
            if str(here) in mounts:
                raise AttendeeFileError(here, _MOUNTED)
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise AttendeeFileError(here, _problem(fd, part, wanted="a directory")) from None
                raise
            os.close(fd)
            fd = nxt
            if os.fstat(fd).st_dev != home_dev:  # mounted after mountinfo was read
                raise AttendeeFileError(here, _MOUNTED)
        yield fd
    finally:
        os.close(fd)


def lookup(attendee: Attendee, path: Path | str) -> os.stat_result | None:
    """lstat() of ``path``, reached without following a link; None when it (or a directory on the way)
    does not exist. AttendeeFileError when a directory on the way is a link, a mount or not a directory."""
    parts = _parts(attendee, path)
    try:
        with _directory(attendee, parts[:-1]) as fd:
            return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _require_own_regular(where: Path, st: os.stat_result, attendee: Attendee) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise AttendeeFileError(where, _FOLLOWS_NO_LINK)
    if not stat.S_ISREG(st.st_mode):
        raise AttendeeFileError(where, f"is {kind(st.st_mode)}, not a regular file")
    if st.st_uid != attendee.uid:
        raise AttendeeFileError(where, f"is owned by uid {st.st_uid}, not by you")


def regular_file(attendee: Attendee, path: Path | str) -> os.stat_result | None:
    """lstat() of ``path`` if it is a regular file of the attendee's, None when it does not exist;
    AttendeeFileError when it is anything else (a link, a FIFO, root's...)."""
    st = lookup(attendee, path)
    if st is not None:
        _require_own_regular(attendee.home.joinpath(*_parts(attendee, path)), st, attendee)
    return st


def open_file(attendee: Attendee, path: Path | str) -> int:
    """A read-only descriptor of ``path``, a regular file the attendee owns, opened without following a
    link and without blocking (a FIFO swapped in after the lstat cannot hang the open).

    FileNotFoundError when it does not exist, AttendeeFileError when it is not such a file.
    """
    parts = _parts(attendee, path)
    where = attendee.home.joinpath(*parts)
    with _directory(attendee, parts[:-1]) as dir_fd:
        before = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        _require_own_regular(where, before, attendee)  # refused before open(): no device is ever opened
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise AttendeeFileError(where, _FOLLOWS_NO_LINK) from None
            raise
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise AttendeeFileError(where, "changed while the agent opened it; check again")
        _require_own_regular(where, st, attendee)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_text(attendee: Attendee, path: Path | str, cap: int = MAX_READ) -> str:
    """The text of ``path`` (``open_file``'s rules), at most ``cap`` bytes: a bigger file is refused."""
    fd = open_file(attendee, path)
    try:
        chunks, size = [], 0
        while size <= cap:
            chunk = os.read(fd, cap + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > cap:
        raise AttendeeFileError(attendee.home.joinpath(*_parts(attendee, path)), f"is larger than {cap} bytes")
    return b"".join(chunks).decode(errors="replace")


def own_directory(attendee: Attendee, path: Path | str) -> Path:
    """``path`` if it is a directory of the attendee's reached without a link or a mount;
    FileNotFoundError when missing, AttendeeFileError otherwise."""
    parts = _parts(attendee, path)
    where = attendee.home.joinpath(*parts)
    with _directory(attendee, parts) as fd:
        owner = os.fstat(fd).st_uid
    if owner != attendee.uid:
        raise AttendeeFileError(where, f"is owned by uid {owner}, not by you")
    return where


# --- writing and running, as the attendee ----------------------------------------------------------------

def run(ctx: LabContext, argv: list[str], what: str, *, cwd: Path | str | None = None, input: str | None = None,
        stdin: int | None = None, timeout: float = 10) -> subprocess.CompletedProcess:
    """``argv`` as the attendee (their uid, gid and groups, set before it starts; ``cwd`` entered after);
    AttendeeCommandFailed names ``what`` and quotes the end of its error output."""
    done = ctx.run(argv, as_attendee=True, cwd=None if cwd is None else str(cwd), input=input, stdin=stdin,
                   timeout=timeout)
    if done.returncode != 0:
        said = (done.stderr or "").strip() or (done.stdout or "").strip()
        raise AttendeeCommandFailed(f"{what} failed (exit {done.returncode}): "
                                    f"{excerpt(said, COMMAND_OUTPUT_CHARS, tail=True)}")
    return done


def make_directory(ctx: LabContext, path: Path | str) -> Path:
    """~/``path``, made by the attendee if missing; it must then be their directory, reached without a
    link or a mount (AttendeeFileError names the step that is not)."""
    try:
        return own_directory(ctx.attendee, path)
    except FileNotFoundError:
        pass
    where = ctx.attendee.home.joinpath(*_parts(ctx.attendee, path))
    run(ctx, ["mkdir", "-p", "--", str(where)], f"mkdir {where}")
    return own_directory(ctx.attendee, path)


def clear_for_writing(ctx: LabContext, path: Path | str) -> Path:
    """Make ready a file a solve is about to (re)write: its directory as ``make_directory``, and whatever
    is at ``path`` removed by the attendee (a planted link goes, its target stays). Returns ``path``."""
    parts = _parts(ctx.attendee, path)
    parent = make_directory(ctx, Path(*parts[:-1])) if len(parts) > 1 else ctx.attendee.home
    run(ctx, ["rm", "-f", "--", parts[-1]], f"removing the old {parts[-1]}", cwd=parent)
    return parent / parts[-1]


# --- removing ---------------------------------------------------------------------------------------------

def remove(ctx: LabContext, path: Path | str) -> ResetReport:
    """Remove ~/``path`` (a tree or a file) without following a link or crossing a mount the attendee made.

    Every step from the home down is opened with O_NOFOLLOW; the entry must belong to the attendee; a
    tree is removed through directory descriptors (shutil.rmtree's dir_fd walk, which follows no link);
    a mount anywhere under it stops the removal and is reported.
    """
    report = ResetReport()
    attendee = ctx.attendee
    parts = _parts(attendee, path)
    where = attendee.home.joinpath(*parts)
    mounted = [m for m in sorted(_mount_points_under(attendee.home))
               if m == str(where) or m.startswith(f"{where}/")]
    if mounted:
        report.leftovers.append(f"{where} not removed: {', '.join(mounted)} is mounted under it")
        return report
    try:
        with _directory(attendee, parts[:-1]) as fd:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            if st.st_uid != attendee.uid:
                report.leftovers.append(f"{where} does not belong to {attendee.user}; left alone")
                return report
            try:
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(parts[-1], dir_fd=fd)
                else:
                    os.unlink(parts[-1], dir_fd=fd)
            except OSError as exc:
                report.leftovers.append(f"{where} could not be removed: {exc}")
                return report
    except FileNotFoundError:
        return report
    except AttendeeFileError as exc:
        report.leftovers.append(f"{exc.path} is not a plain directory ({exc.problem}); left alone")
        return report
    report.removed.append(str(where))
    _prune_empty_parents(attendee, parts[:-1])
    return report


def _prune_empty_parents(attendee: Attendee, parts: tuple[str, ...]) -> None:
    """rmdir the directories on the way (``mkdir -p ~/seccomp/filter`` made ~/seccomp too) once empty.

    The lab starts without them; one holding anything of the attendee's stays, as does one not theirs.
    Each is reached like the removed path (no link followed, no mount crossed).
    """
    while parts:
        try:
            with _directory(attendee, parts[:-1]) as fd:
                if os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_uid != attendee.uid:
                    return
                os.rmdir(parts[-1], dir_fd=fd)
        except (OSError, AttendeeFileError):  # not empty, not a directory, gone, a link or a mount: stays
            return
        parts = parts[:-1]
