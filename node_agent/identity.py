"""Who this machine is (identity.json) and what the controller gave it (credentials.json).

The identity pair is generated once and never changes: presenting it again
when re-enrolling keeps the node's id and name on the controller. Both files
are mode 0600 in the 0700 state directory. Their secrets never reach a log:
the dataclasses leave them out of ``repr``.
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from node_agent import atomic_file
from node_agent.errors import ConfigurationError

IDENTITY_FILE = "identity.json"
CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True)
class Identity:
    machine_id: str
    machine_secret: str = field(repr=False)


@dataclass(frozen=True)
class Credentials:
    """What enrollment returned, plus the controller it came from (another controller means re-enroll)."""

    node_id: str
    node_token: str = field(repr=False)
    controller_url: str = ""
    name: str = ""
    heartbeat_interval: float | None = None
    poll_wait: float | None = None


def load_or_create_identity(state_dir: Path) -> Identity:
    """The machine's identity, generated and stored on the first call."""
    path = state_dir / IDENTITY_FILE
    data = _read(path)
    if data is None:
        identity = Identity(machine_id=uuid.uuid4().hex, machine_secret=secrets.token_urlsafe(32))
        atomic_file.write_json(path, dataclasses.asdict(identity))
        return identity
    try:
        return Identity(machine_id=str(data["machine_id"]), machine_secret=str(data["machine_secret"]))
    except (KeyError, TypeError) as exc:
        raise ConfigurationError(f"state_dir: {path} lacks machine_id/machine_secret; restore or delete it") from exc


def load_credentials(state_dir: Path) -> Credentials | None:
    """The stored credentials, or None before the first enrollment."""
    path = state_dir / CREDENTIALS_FILE
    data = _read(path)
    if data is None:
        return None
    known = {f.name for f in dataclasses.fields(Credentials)}
    try:
        return Credentials(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise ConfigurationError(f"state_dir: {path} is incomplete; delete it to enroll again") from exc


def save_credentials(state_dir: Path, credentials: Credentials) -> None:
    """Store the credentials atomically, mode 0600."""
    atomic_file.write_json(state_dir / CREDENTIALS_FILE, dataclasses.asdict(credentials))


def _read(path: Path) -> dict | None:
    try:
        data = atomic_file.read_json(path)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"state_dir: cannot read {path}: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise ConfigurationError(f"state_dir: {path} is not a JSON object; restore or delete it")
    return data
