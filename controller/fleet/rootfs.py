"""A host's root filesystem: its upper layer over the machine's ``/``, seeded before it starts.

The host's init mounts ``overlay(lowerdir=/, upperdir=upper, workdir=work)``;
everything a host writes (users, packages' files, services, a venv in /opt)
lands in its own upper layer. Before the first start the machine writes the
few files that make the host itself: its hostname, /etc/hosts, its sshd
configuration, host key and the authorized fleet key, and root's ``~/.bashrc`` and
``~/.profile`` as a fresh Debian VM has them (not this machine's). Directories created in
the upper layer copy the owner and mode of the machine's, because the upper
directory's attributes are what the merged view shows.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

SSH_DIR = "/etc/ssh/labfleet-fleet"
SSHD_CONFIG = f"{SSH_DIR}/sshd_config"
HOST_KEY = f"{SSH_DIR}/ssh_host_ed25519_key"
AUTHORIZED_KEYS = f"{SSH_DIR}/authorized_keys"


def sshd_config(address: str, port: int) -> str:
    """The host's own sshd: listens only on its address; the fleet key logs in as root.

    MaxStartups and MaxSessions are raised because Ansible with many forks and
    SSH multiplexing opens many sessions at once.
    """
    return "\n".join([
        f"ListenAddress {address}:{port}",
        f"HostKey {HOST_KEY}",
        f"AuthorizedKeysFile .ssh/authorized_keys {AUTHORIZED_KEYS}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication yes",
        "KbdInteractiveAuthentication no",
        "UsePAM yes",
        "UseDNS no",
        "PrintMotd no",
        "MaxStartups 200:30:400",
        "MaxSessions 64",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
        "",
    ])


# root's shell start-up files on a fresh Debian VM: base-files' copies (what the installer puts in
# /root), else /etc/skel's. Never this machine's own /root files, which can run anything (here
# `pyenv init`, about 0.09 s of CPU for every SSH command a host runs).
ROOT_DOTFILES = {
    "/root/.bashrc": ("/usr/share/base-files/dot.bashrc", "/etc/skel/.bashrc"),
    "/root/.profile": ("/usr/share/base-files/dot.profile", "/etc/skel/.profile"),
}
# What a dot file says when neither source exists (a machine without base-files): nothing to run.
_EMPTY_DOTFILE = "# written by labfleet's fleet: a fresh VM's root runs nothing here\n"


def fresh_root_dotfiles() -> dict[str, str]:
    """{path in the host: content} for root's start-up files as a fresh Debian VM has them."""
    files = {}
    for path, sources in ROOT_DOTFILES.items():
        for source in sources:
            try:
                files[path] = Path(source).read_text()
                break
            except OSError:
                continue
        else:
            files[path] = _EMPTY_DOTFILE
    return files


def etc_hosts(entries: list[tuple[str, str]]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{address}\t{name}" for name, address in entries]
    return "\n".join(lines) + "\n"


def prepare(upper: Path, work: Path, mountpoint: Path) -> None:
    for directory in (upper, work, mountpoint):
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)


def write(upper: Path, path: str, content: str, mode: int = 0o644) -> None:
    """Write ``path`` (as the host will see it) into the upper layer, creating parents like the machine's."""
    target = upper / path.lstrip("/")
    _mirror_parents(upper, Path(path).parent)
    tmp = target.with_name(target.name + ".labfleet-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(tmp, mode)
    tmp.replace(target)


def whiteout(upper: Path, path: str) -> None:
    """Make ``path`` absent in the host whatever the machine has there: an overlayfs whiteout
    (a 0/0 character device, see the kernel's overlayfs.rst) in the upper layer.

    Something the host itself already wrote there is left alone.
    """
    target = upper / path.lstrip("/")
    if os.path.lexists(target):
        return
    _mirror_parents(upper, Path(path).parent)
    os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))


def _mirror_parents(upper: Path, directory: Path) -> None:
    current = Path("/")
    for part in directory.parts[1:]:
        current = current / part
        in_upper = upper / str(current).lstrip("/")
        if in_upper.is_dir():
            continue
        try:
            info = os.stat(current)
            mode, uid, gid = stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid
        except FileNotFoundError:
            mode, uid, gid = 0o755, 0, 0
        in_upper.mkdir(mode=mode)
        os.chmod(in_upper, mode)
        os.chown(in_upper, uid, gid)


def remove_tree(path: Path) -> None:
    """Delete a host's directory without ever crossing into a mounted filesystem.

    A host's ``root`` is an overlay of the machine's ``/`` while it runs; a plain
    recursive delete that followed it would delete the machine. Anything on
    another device is left alone (``down`` unmounts first and checks).
    """
    try:
        device = os.lstat(path).st_dev
    except FileNotFoundError:
        return
    _remove_on_device(path, device)


def _remove_on_device(path: Path, device: int) -> None:
    info = os.lstat(path)
    if info.st_dev != device:
        return
    if stat.S_ISDIR(info.st_mode):
        for entry in os.scandir(path):
            _remove_on_device(Path(entry.path), device)
        try:
            os.rmdir(path)
        except OSError:
            pass  # something mounted below it was left alone
    else:
        os.unlink(path)
