"""A fleet host starts like a fresh VM: none of this machine's labfleet state shows through its overlay.

On a machine where an agent once ran, /var/lib/labfleet-agent/identity.json
showed through to every host, and three hosts enrolled as one node.
"""

from __future__ import annotations

import re
import secrets
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.fleet import Fleet
from controller.fleet.product_paths import PRODUCT_PATHS
from tests.fleet.conftest import ssh_ok
from tests.processes import REPO

STATE_DIR = Path("/var/lib/labfleet-agent")
CONFIG_DIR = Path("/etc/labfleet-agent")
ABSOLUTE_LABFLEET_PATH = re.compile(r"(?<![\w{}.-])/(?:etc|var|opt|usr|run|srv|lib)/[\w./-]*labfleet[\w./-]*")


def product_paths_named_in(files: list[Path]) -> set[str]:
    return {m.group(0).rstrip("/.") for f in files for m in ABSOLUTE_LABFLEET_PATH.finditer(f.read_text())}


def test_the_one_list_covers_every_path_the_playbooks_and_the_agent_write():
    sources = [REPO / "node_agent" / "config.py", *sorted((REPO / "playbooks").rglob("*.yml")),
               *sorted((REPO / "playbooks").rglob("*.j2"))]
    named = product_paths_named_in(sources)
    assert "/var/lib/labfleet-agent" in named and "/usr/share/labfleet/labs" in named  # the scan reads them
    uncovered = sorted(p for p in named if not any(p == q or p.startswith(q + "/") for q in PRODUCT_PATHS))
    assert uncovered == [], f"product paths a fleet host would inherit from the machine: {uncovered}"


@pytest.fixture
def planted() -> Iterator[tuple[str, dict[Path, str]]]:
    """An agent's state on this machine, as one that once ran here leaves it; exactly that is removed after."""
    made_dirs = [d for d in (STATE_DIR, CONFIG_DIR) if not d.exists()]
    for directory in made_dirs:
        directory.mkdir(mode=0o700)
    marker = "planted-" + secrets.token_hex(8)
    files = {STATE_DIR / "identity.json": f'{{"machine_id": "{marker}", "machine_secret": "{marker}"}}\n',
             STATE_DIR / "credentials.json": f'{{"node_id": "{marker}", "token": "{marker}"}}\n',
             CONFIG_DIR / "agent.toml": f'name = "{marker}"\n'}
    made_files = []
    try:
        for path, content in files.items():
            if not path.exists():
                path.write_text(content)
                made_files.append(path)
        yield marker, {p: files[p] for p in made_files}
    finally:
        for path in made_files:
            path.unlink(missing_ok=True)
        for directory in reversed(made_dirs):
            directory.rmdir()


def test_hosts_inherit_no_agent_state_and_make_their_own_identity(planted, make_fleet: Callable[[], Fleet]):
    marker, made = planted
    hosts = make_fleet().up(3)
    identities = []
    for host in hosts:
        shown = ssh_ok(host, "for p in " + " ".join(PRODUCT_PATHS) + '; do [ -e "$p" ] && echo "$p"; done; true')
        assert shown.split() == [], f"{host.name} sees the machine's {shown.split()}"
        # The agent's own code makes the identity on first start, in the host's state directory.
        make_identity = (f"from pathlib import Path; from node_agent.identity import load_or_create_identity as i; "
                         f"print(i(Path('{STATE_DIR}')).machine_id)")
        identities.append(ssh_ok(host, f"mkdir -m 700 -p {STATE_DIR} && cd {shlex.quote(str(REPO))} && "
                                       f"{shlex.quote(sys.executable)} -c {shlex.quote(make_identity)}").strip())
    assert len(set(identities)) == 3 and marker not in identities, identities
    # What a host made stays on the host: the machine keeps exactly what was planted.
    assert {p: p.read_text() for p in made} == made
