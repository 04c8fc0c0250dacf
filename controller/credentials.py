"""Where the CLI finds the controller: URL, instructor token and CA, saved by ``labfleet init``.

Stdlib only: ``labfleet init`` (controller/bootstrap.py) writes this file and the CLI reads it, and
neither should pull the other's imports in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CREDENTIALS_FILE = "cli.json"


class MissingCredentials(Exception):
    """Neither the options nor the data dir say which controller to talk to."""


@dataclass
class Credentials:
    url: str
    token: str
    # The CA the controller's certificate must chain to (the room CA in the data dir); None: the system's.
    ca_file: Path | None = None

    @classmethod
    def resolve(cls, *, url: str | None, token: str | None, data_dir: Path, ca_file: Path | None = None
                ) -> Credentials:
        """Explicit options first, then what ``labfleet init`` wrote into the data dir."""
        saved: dict[str, str] = {}
        path = data_dir / CREDENTIALS_FILE
        if path.exists():
            saved = json.loads(path.read_text())
        url = url or saved.get("url")
        token = token or saved.get("token")
        if not url or not token:
            raise MissingCredentials(f"no controller URL/token: run 'labfleet init' or pass --url and --token "
                                     f"(looked in {path})")
        return cls(url=url.rstrip("/"), token=token, ca_file=ca_file)

    def save(self, data_dir: Path) -> Path:
        path = data_dir / CREDENTIALS_FILE
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(json.dumps({"url": self.url, "token": self.token}, indent=2))
        return path
