"""SSH keys of the fleet: one client key pair for the controller, host keys per host.

All keys come from OpenSSH's own ``ssh-keygen``. The private key stays in the
fleet's state directory with mode 0600 and is never printed or logged; hosts
cannot read it (their init hides the state directory).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from controller.fleet.errors import FleetError


def generate(path: Path, comment: str) -> None:
    """A new ed25519 key pair at ``path`` (0600) and ``path.pub``, replacing any old one."""
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    result = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise FleetError(f"ssh-keygen could not write {path}: {result.stderr.strip()}")
    os.chmod(path, 0o600)


def ensure_client_key(path: Path) -> str:
    """The fleet's client key pair, made once and kept across ``up``s; returns the public key line."""
    public = path.with_name(path.name + ".pub")
    if not (path.exists() and public.exists()):
        generate(path, "labfleet-fleet")
    os.chmod(path, 0o600)
    return public.read_text().strip()


def public_key(path: Path) -> str:
    return path.with_name(path.name + ".pub").read_text().strip()


def write_known_hosts(path: Path, entries: list[tuple[str, str, str]]) -> None:
    """``known_hosts`` with one line per (name, address, host public key), so clients can check strictly."""
    lines = []
    for name, address, key in entries:
        key_type, key_data = key.split()[:2]
        lines.append(f"{address},{name} {key_type} {key_data}\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(path)
