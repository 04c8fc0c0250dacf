"""The fleet's network: one bridge owning .1, a named netns and a veth per host.

Everything goes through iproute2 (``ip``), the same tool an instructor would
use to look at it. Nothing is routed beyond the bridge: no default route in a
host, no forwarding or NAT switched on, so a host can reach the machine (.1)
and its peers and nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path

from controller.fleet.config import FleetConfig
from controller.fleet.errors import FleetError

NETNS_DIR = Path("/run/netns")
HOST_INTERFACE = "eth0"


def ip(*args: str, input: str | None = None) -> str:
    """Run ``ip`` and return its stdout; a failure raises FleetError with ip's own message."""
    result = subprocess.run(["ip", *args], input=input, capture_output=True, text=True)
    if result.returncode != 0:
        raise FleetError(f"ip {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def check_subnet_free(config: FleetConfig, own_bridge: bool = False) -> None:
    """Refuse a /24 that an interface of this machine already uses (another fleet, a LAN).

    With ``own_bridge`` the fleet's bridge is allowed: checked again after making
    it, this catches a fleet that took the same /24 at the same moment.
    """
    for link in json.loads(ip("-json", "-4", "addr", "show") or "[]"):
        if own_bridge and link["ifname"] == config.bridge:
            continue
        for addr in link.get("addr_info", []):
            if ipaddress.ip_address(addr["local"]) in config.subnet:
                raise FleetError(f"subnet {config.subnet} is already used on this machine by interface "
                                 f"{link['ifname']} ({addr['local']}); choose another --subnet")


def create_bridge(config: FleetConfig) -> None:
    """The bridge that joins the hosts; the machine's end of the /24 (.1) is on it."""
    ip("-batch", "-", input="\n".join([
        f"link add {config.bridge} type bridge forward_delay 0 stp_state 0",
        f"addr add {config.bridge_address}/24 dev {config.bridge}",
        f"link set {config.bridge} up",
    ]) + "\n")


def machine_side_commands(config: FleetConfig, index: int) -> list[str]:
    """``ip -batch`` lines, run on the machine, that give host ``index`` a netns and a veth on the bridge."""
    name = config.host_name(index)
    return [
        f"netns add {name}",
        f"link add {name} type veth peer name {HOST_INTERFACE} netns {name}",
        f"link set {name} master {config.bridge} up",
    ]


def host_side_commands(config: FleetConfig, index: int) -> list[str]:
    """``ip -batch`` lines run inside the host's netns (by its init): its address, links up, no route out."""
    return [
        f"addr add {config.host_address(index)}/24 dev {HOST_INTERFACE}",
        f"link set {HOST_INTERFACE} up",
        "link set lo up",
    ]


def create_host_links(config: FleetConfig, indexes: list[int]) -> None:
    """Every host's netns and veth in one ``ip -batch`` (netns creation is not safe to race)."""
    ip("-batch", "-", input="\n".join(line for i in indexes for line in machine_side_commands(config, i)) + "\n")


# -- finding and removing what a fleet made ------------------------------------

def netns_names(config: FleetConfig) -> list[str]:
    """Named network namespaces of this fleet (``<prefix>-<n>`` in /run/netns)."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if config.host_index(n) is not None)


def link_names(config: FleetConfig) -> list[str]:
    """Links on the machine this fleet made: the bridge and the hosts' veth ends."""
    links = json.loads(ip("-json", "link", "show") or "[]")
    return sorted(link["ifname"] for link in links
                  if link["ifname"] == config.bridge or config.host_index(link["ifname"]) is not None)


def netns_inode(name: str) -> int | None:
    """The inode that identifies a named netns, to find the processes inside it."""
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except FileNotFoundError:
        return None


def delete(config: FleetConfig) -> None:
    """Delete the fleet's veths, bridge and named netns in one ``ip -batch``, then check they are gone."""
    links = link_names(config)
    lines = [f"link del {n}" for n in links if n != config.bridge]
    lines += [f"link del {n}" for n in links if n == config.bridge]
    lines += [f"netns del {n}" for n in netns_names(config)]
    if not lines:
        return
    # -force: go on after a line fails (a veth already gone with its netns); what is left is checked below.
    result = subprocess.run(["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n",
                            capture_output=True, text=True)
    left = link_names(config) + netns_names(config)
    if left:
        raise FleetError(f"cannot delete {', '.join(left)}: {result.stderr.strip()}")
