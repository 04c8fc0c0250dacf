"""Identity and credentials: generated once, stored 0600, secrets kept out of repr."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from node_agent.identity import Credentials, load_credentials, load_or_create_identity, save_credentials


def test_identity_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path)
    again = load_or_create_identity(tmp_path)

    assert first == again and len(first.machine_id) == 32 and len(first.machine_secret) >= 40
    assert stat.S_IMODE((tmp_path / "identity.json").stat().st_mode) == 0o600
    assert first.machine_secret not in repr(first)


def test_credentials_round_trip_atomically(tmp_path: Path) -> None:
    assert load_credentials(tmp_path) is None
    creds = Credentials(node_id="n1", node_token="lfn_secret", controller_url="http://ctl", name="lab-1",
                        heartbeat_interval=5.0, poll_wait=20.0)

    save_credentials(tmp_path, creds)

    assert load_credentials(tmp_path) == creds
    assert stat.S_IMODE((tmp_path / "credentials.json").stat().st_mode) == 0o600
    assert json.loads((tmp_path / "credentials.json").read_text())["node_token"] == "lfn_secret"
    assert [p.name for p in tmp_path.iterdir()] == ["credentials.json"]  # no tmp file left behind
    assert "lfn_secret" not in repr(creds)
