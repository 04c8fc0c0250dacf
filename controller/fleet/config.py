"""What one fleet is: its state directory, its /24 and its name prefix, checked once.

Every name the fleet gives to a kernel object is derived here, so ``down()``
can find hosts, links, namespaces and cgroups by name after a crash that lost
the state file.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from controller.fleet.errors import FleetError

DEFAULT_STATE_DIR = "/var/lib/labfleet/fleet"
DEFAULT_SUBNET = "10.213.0.0/24"
DEFAULT_PREFIX = "lfh"
CGROUP_GROUP = "labfleet-fleet"
# Below a host's own group: ``system`` holds its processes (init, sshd, sessions, the agent); ``labs``
# is the agent's lab_cgroup_parent and never holds a system process, so no lab scan ever sees one.
SYSTEM_LEAF = "system"
LABS_LEAF = "labs"
# The attendee's login sessions (the playbook's session ceiling, joined at login by pam_exec): beside
# ``system``, so a fork bomb held at its pids ceiling leaves the host's init, sshd and agent alone.
SESSIONS_LEAF = "sessions"
FIRST_HOST_OCTET = 10
MAX_HOSTS = 254 - FIRST_HOST_OCTET + 1
# Interface names are at most 15 bytes (IFNAMSIZ - 1): prefix (10) + "-" + up to 3 digits.
PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9]{0,9}")
_PRIVATE_NETS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


@dataclass(frozen=True)
class FleetConfig:
    """A validated fleet identity; raises FleetError naming the bad field."""

    state_dir: Path = field(default_factory=lambda: Path(DEFAULT_STATE_DIR))
    subnet: ipaddress.IPv4Network = field(default_factory=lambda: ipaddress.ip_network(DEFAULT_SUBNET))
    prefix: str = DEFAULT_PREFIX

    @classmethod
    def build(cls, state_dir: str | Path = DEFAULT_STATE_DIR, subnet: str = DEFAULT_SUBNET,
              prefix: str = DEFAULT_PREFIX) -> FleetConfig:
        return cls(Path(state_dir).absolute(), parse_subnet(subnet), parse_prefix(prefix))

    # -- names -----------------------------------------------------------

    def host_name(self, index: int) -> str:
        """Host ``index`` (1-based): its hostname, netns and machine-side veth name."""
        return f"{self.prefix}-{index}"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    def host_index(self, name: str) -> int | None:
        """The index of a name this fleet gave, or None for any other name."""
        match = re.fullmatch(re.escape(self.prefix) + r"-([1-9][0-9]{0,2})", name)
        return int(match.group(1)) if match else None

    # -- addresses -------------------------------------------------------

    @property
    def bridge_address(self) -> str:
        return str(self.subnet.network_address + 1)

    def host_address(self, index: int) -> str:
        return str(self.subnet.network_address + FIRST_HOST_OCTET + index - 1)

    # -- paths -----------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.state_dir / "fleet.json"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / ".lock"

    @property
    def private_key(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    def host_dir(self, name: str) -> Path:
        return self.state_dir / "hosts" / name

    def cgroup_parent(self, name: str) -> str:
        """The host's own group (relative to a hierarchy's root): ``system`` and ``labs`` below it."""
        return f"{CGROUP_GROUP}/{name}"

    def lab_cgroup_parent(self, name: str) -> str:
        """Where the host's agent makes lab cgroups: a subtree of its own, beside the host's processes."""
        return f"{self.cgroup_parent(name)}/{LABS_LEAF}"


def parse_subnet(value: str) -> ipaddress.IPv4Network:
    """A private IPv4 /24 (10/8, 172.16/12 or 192.168/16), given as ``a.b.c.0/24``."""
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise FleetError(f"subnet {value!r} is not a network address: {exc}") from None
    if net.version != 4 or net.prefixlen != 24:
        raise FleetError(f"subnet {value!r} must be an IPv4 /24, e.g. {DEFAULT_SUBNET}")
    if not any(net.subnet_of(private) for private in _PRIVATE_NETS):
        raise FleetError(f"subnet {value!r} is not private (use 10.x.y.0/24, 172.16-31.x.0/24 or 192.168.x.0/24)")
    return net


def parse_prefix(value: str) -> str:
    """A name prefix of 1-10 lowercase letters and digits, starting with a letter."""
    if not PREFIX_PATTERN.fullmatch(value or ""):
        raise FleetError(f"name prefix {value!r} must be 1-10 lowercase letters or digits starting with a "
                         "letter (it becomes interface names, at most 15 characters)")
    return value


def check_count(count: int) -> int:
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_HOSTS:
        raise FleetError(f"count must be between 1 and {MAX_HOSTS} hosts (one /24), got {count!r}")
    return count
