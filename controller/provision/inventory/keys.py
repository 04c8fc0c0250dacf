"""Where a static inventory's SSH keys come from: uploaded with it, or named from the operator's folder.

A request never names a path on the controller: a host's ``private_key`` is
the label of a key uploaded with the inventory (``labfleet provision`` uploads
each key file the inventory names, under the name written there), or a plain
file name in ``LABFLEET_PROVISION_KEYS_DIR``, the one folder the operator
chose (opened with ``O_NOFOLLOW`` from that folder; no ``/``, no ``..``).
Anything else is refused with the same words whatever the controller's disk
holds, so the answer tells nothing about its files. Either way the key's bytes
are copied into ``<data dir>/provision/keys/<sha256>.key`` (0600, in a 0700
folder): ssh reads the controller's copy, never the caller's path.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from pathlib import Path

MAX_KEY_BYTES = 16 * 1024
MAX_KEYS = 64
MAX_LABEL = 255
# A plain file name: no '/', and no leading '.' (so neither '.' nor '..' nor a hidden file).
_FILE_NAME = re.compile(r"^[A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,127}$")
_PRIVATE_KEY = re.compile(r"\A-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n.+\n-----END [A-Z0-9 ]*PRIVATE KEY-----\s*\Z",
                          re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class KeyRefused(ValueError):
    """A key reference or upload that cannot be used; ``key`` names the request field."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key


def check_uploads(keys: object) -> dict[str, str]:
    """The ``inventory.keys`` of a request: label -> key text. The text is never echoed in an error."""
    if not isinstance(keys, dict):
        raise KeyRefused("must be a mapping of key names (as the inventory writes them) to key text",
                         key="inventory.keys")
    if len(keys) > MAX_KEYS:
        raise KeyRefused(f"at most {MAX_KEYS} keys per inventory", key="inventory.keys")
    for label, text in keys.items():
        if not isinstance(label, str) or not label or len(label) > MAX_LABEL or _CONTROL.search(label):
            raise KeyRefused(f"key names are 1-{MAX_LABEL} printable characters", key="inventory.keys")
        where = f"inventory.keys.{label}"
        if not isinstance(text, str):
            raise KeyRefused("must be the key file's text", key=where)
        if len(text.encode()) > MAX_KEY_BYTES:
            raise KeyRefused(f"larger than {MAX_KEY_BYTES // 1024} KiB: not an SSH private key", key=where)
        if not _PRIVATE_KEY.match(text):
            raise KeyRefused("not an SSH private key (a '-----BEGIN ... PRIVATE KEY-----' block)", key=where)
    return dict(keys)


class KeyResolver:
    """Turns each host's ``private_key`` reference into the controller's own copy of that key.

    ``resolve`` only checks and remembers; ``commit`` writes the copies, once the whole
    inventory is known to be good.
    """

    def __init__(self, uploaded: dict[str, str], *, keys_dir: str | Path | None, store_dir: Path) -> None:
        self.uploaded = uploaded
        self.keys_dir = Path(keys_dir) if keys_dir else None
        self.store_dir = store_dir
        self._pending: dict[Path, bytes] = {}

    def resolve(self, reference: str) -> str:
        if reference in self.uploaded:
            material = self.uploaded[reference].encode()
        elif self.keys_dir is not None and _FILE_NAME.match(reference):
            material = self._from_keys_dir(reference)
        else:
            raise KeyRefused(self._not_uploaded(reference))
        if not material.endswith(b"\n"):
            material += b"\n"  # OpenSSH refuses a key whose last line has no newline
        path = self.store_dir / f"{hashlib.sha256(material).hexdigest()[:32]}.key"
        self._pending[path] = material
        return str(path)

    def commit(self) -> None:
        """Write the keys resolved so far (0600) into the store (0700, ours, not a link)."""
        if not self._pending:
            return
        private_dir(self.store_dir)
        for path, material in self._pending.items():
            temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, material)
            finally:
                os.close(fd)
            os.replace(temp, path)
        self._pending.clear()

    def _not_uploaded(self, reference: str) -> str:
        # The same words whether or not such a path exists on the controller.
        where = (" nor a plain file name in LABFLEET_PROVISION_KEYS_DIR" if self.keys_dir
                 else " (the controller has no LABFLEET_PROVISION_KEYS_DIR)")
        return (f"{reference!r} is not a key uploaded with the inventory{where}; the controller never reads "
                f"a key path a request names (labfleet provision uploads the key files the inventory names)")

    def _from_keys_dir(self, name: str) -> bytes:
        refused = KeyRefused(f"no key file named {name!r} in LABFLEET_PROVISION_KEYS_DIR (a regular file; "
                             f"links are not followed)")
        try:
            dir_fd = os.open(self.keys_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            raise KeyRefused("LABFLEET_PROVISION_KEYS_DIR is not a folder the controller can open") from None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            raise refused from None
        finally:
            os.close(dir_fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise refused
            material = os.read(fd, MAX_KEY_BYTES + 1)
        finally:
            os.close(fd)
        if len(material) > MAX_KEY_BYTES or not _PRIVATE_KEY.match(material.decode(errors="replace")):
            raise KeyRefused(f"{name!r} in LABFLEET_PROVISION_KEYS_DIR is not an SSH private key")
        return material


def private_dir(path: Path) -> None:
    """``path`` as a folder of ours, mode 0700; a link or someone else's folder there is refused."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise KeyRefused(f"{path} is not a folder owned by the controller's user: remove it", key="inventory")
    os.chmod(path, 0o700)
