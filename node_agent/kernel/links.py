"""Network links, addresses, routes and TCP sockets of a network namespace, and an active TCP probe.

Links, addresses and routes come from iproute2's JSON output (``ip -json``): rtnetlink parsed by
the tool every lab VM already has. pyroute2 would parse the same netlink messages in Python, but
the agent is stdlib-only (it runs on attendee VMs with no dependencies), and a hand-written
netlink parser would be a second iproute2 to maintain. TCP sockets come straight from
``/proc/<pid>/net/tcp`` and ``tcp6`` (proc(5)), which show the reading process's namespace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from node_agent.kernel import netns
from node_agent.kernel.procfs import PROC

TCP_LISTEN = 0x0A  # the "st" column of /proc/net/tcp (include/net/tcp_states.h)
IP_TIMEOUT = 10


class LinkError(Exception):
    """iproute2 failed or printed something that is not its JSON; the message names the namespace."""


@dataclass(frozen=True)
class Link:
    """One network interface as ``ip -d -json addr`` shows it."""

    ifname: str
    ifindex: int
    kind: str | None  # linkinfo.info_kind: "veth", "bridge", ...; None for lo and plain devices
    up: bool  # administratively up (the UP flag)
    peer_ifindex: int | None  # veth: the peer's ifindex (in the peer's namespace)
    peer_nsid: int | None  # veth: the peer's namespace as an nsid of *this* namespace; None = same namespace
    addresses: tuple[str, ...]  # "10.11.12.1/24", IPv4 and global IPv6 only


@dataclass(frozen=True)
class Route:
    """One route of the main table: ``dst`` is a network ("default" → 0.0.0.0/0)."""

    dst: str
    dev: str | None
    gateway: str | None


@dataclass
class NetnsView:
    """What one network namespace looks like from the inside."""

    links: list[Link] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    nsids: dict[int, str] = field(default_factory=dict)  # nsid → name in /run/netns

    def link(self, ifname: str) -> Link | None:
        return next((lnk for lnk in self.links if lnk.ifname == ifname), None)

    def route_to(self, address: str) -> Route | None:
        """The most specific route whose destination contains ``address``, or None (unreachable)."""
        ip = ipaddress.ip_address(address)
        best: tuple[int, Route] | None = None
        for route in self.routes:
            net = ipaddress.ip_network("0.0.0.0/0" if route.dst == "default" else route.dst, strict=False)
            if net.version == ip.version and ip in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, route)
        return best[1] if best else None


# --- iproute2 ---------------------------------------------------------------------------------------

def view(name: str | None = None, *, ns_file: Path | None = None) -> NetnsView:
    """Links, addresses, routes and nsids of the named namespace (``ip -n NAME``), of ``ns_file``, or the agent's.

    One ``ip -batch`` run: three commands for the price of one exec (≈2 ms).
    """
    argv = ["ip", "-d", "-json"]
    if name is not None:
        argv += ["-n", name]
    if ns_file is not None:
        argv = ["nsenter", f"--net={ns_file}", *argv]
    argv += ["-batch", "-"]
    where = name or (str(ns_file) if ns_file else "the agent's namespace")
    proc = subprocess.run(argv, input="addr show\nroute show\nnetns list-id\n", capture_output=True,
                          text=True, timeout=IP_TIMEOUT)
    if proc.returncode != 0:
        raise LinkError(f"ip in network namespace {where}: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    docs = _json_documents(proc.stdout, where)
    if len(docs) != 3:
        raise LinkError(f"ip in network namespace {where}: expected 3 JSON documents, got {len(docs)}")
    addrs, routes, ids = docs
    return NetnsView([_link(d) for d in addrs], [_route(d) for d in routes],
                     {int(d["nsid"]): d["name"] for d in ids if "name" in d})


def _json_documents(text: str, where: str) -> list:
    decoder = json.JSONDecoder()
    docs, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return docs
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise LinkError(f"ip in network namespace {where} printed no JSON at offset {pos}: {exc}") from exc
        docs.append(doc)


def _link(d: dict) -> Link:
    kind = (d.get("linkinfo") or {}).get("info_kind")
    addresses = tuple(f"{a['local']}/{a['prefixlen']}" for a in d.get("addr_info", [])
                      if a.get("family") == "inet" or (a.get("family") == "inet6" and a.get("scope") == "global"))
    return Link(ifname=d["ifname"], ifindex=int(d["ifindex"]), kind=kind, up="UP" in d.get("flags", []),
                peer_ifindex=d.get("link_index") if kind == "veth" else None,
                peer_nsid=d.get("link_netnsid") if kind == "veth" else None, addresses=addresses)


def _route(d: dict) -> Route:
    return Route(dst=d.get("dst", "default"), dev=d.get("dev"), gateway=d.get("gateway"))


def delete_link(ifname: str, name: str | None = None) -> bool:
    """``ip [-n NAME] link del IFNAME`` (a veth takes its peer with it). False when there was no such link."""
    argv = ["ip", *(["-n", name] if name else []), "link", "del", ifname]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT)
    if proc.returncode == 0:
        return True
    if "Cannot find device" in proc.stderr or "does not exist" in proc.stderr:
        return False
    raise LinkError(f"{' '.join(argv)}: {proc.stderr.strip()}")


def run_batch(commands: list[str], name: str | None = None) -> None:
    """``ip [-n NAME] -batch -``: many iproute2 commands for one exec; stops at the first that fails.

    ``-n`` is a global option, not allowed on a batch line: one batch per namespace.
    """
    argv = ["ip", *(["-n", name] if name else []), "-batch", "-"]
    proc = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True,
                          timeout=IP_TIMEOUT)
    if proc.returncode != 0:
        where = f"in network namespace {name}" if name else "in the agent's network namespace"
        raise LinkError(f"ip -batch {where} failed: {proc.stderr.strip()}")


# --- procfs ------------------------------------------------------------------------------------------

def dev_names(pid: int | str = "self", proc: Path = PROC) -> list[str]:
    """Interface names in ``/proc/<pid>/net/dev``: the devices of that process's network namespace."""
    lines = (proc / str(pid) / "net" / "dev").read_text().splitlines()[2:]
    return [line.split(":", 1)[0].strip() for line in lines if ":" in line]


@dataclass(frozen=True)
class TcpSocket:
    """One row of /proc/<pid>/net/tcp or tcp6."""

    local_address: str
    local_port: int
    state: int
    uid: int
    inode: int


def tcp_sockets(pid: int | str = "self", proc: Path = PROC) -> list[TcpSocket]:
    """IPv4 and IPv6 TCP sockets of ``pid``'s network namespace."""
    out = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / str(pid) / "net" / table).read_text().splitlines()[1:]
        except FileNotFoundError:  # tcp6 is missing when IPv6 is disabled
            continue
        for line in lines:
            fields = line.split()
            addr, port = fields[1].split(":")
            out.append(TcpSocket(_hex_address(addr), int(port, 16), int(fields[3], 16), int(fields[7]), int(fields[9])))
    return out


def _hex_address(hexaddr: str) -> str:
    # The kernel prints each 32-bit word of the address in host byte order (little endian here).
    raw = bytes.fromhex(hexaddr)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listeners(pid: int | str, port: int | None = None, proc: Path = PROC) -> list[TcpSocket]:
    """TCP sockets in state LISTEN (0A) in ``pid``'s network namespace, optionally on ``port``."""
    return [s for s in tcp_sockets(pid, proc) if s.state == TCP_LISTEN and (port is None or s.local_port == port)]


def socket_owners(inodes: set[int], pids: list[int], proc: Path = PROC) -> dict[int, list[int]]:
    """Which of ``pids`` hold an fd on each socket inode (``/proc/<pid>/fd/*`` → ``socket:[inode]``)."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    owners: dict[int, list[int]] = {i: [] for i in inodes}
    for pid in pids:
        fd_dir = proc / str(pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for fd in fds:
            try:
                inode = wanted.get(os.readlink(fd_dir / fd))
            except OSError:
                continue
            if inode is not None and pid not in owners[inode]:
                owners[inode].append(pid)
    return owners


# --- active probe ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeResult:
    """One TCP connect attempt from inside a namespace."""

    connected: bool
    address: str
    port: int
    error: str | None
    elapsed_ms: float


def _connect(address: str, port: int, timeout: float) -> ProbeResult:
    # A plain socket and connect(2): create_connection's getaddrinfo() costs milliseconds even for a literal.
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    start = time.perf_counter()
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect((address, port))
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return ProbeResult(False, address, port, reason, (time.perf_counter() - start) * 1000)
    return ProbeResult(True, address, port, None, (time.perf_counter() - start) * 1000)


def probe_tcp(ns_file: Path, address: str, port: int, timeout: float = 1.0) -> ProbeResult:
    """Connect once to ``address:port`` from inside the namespace of ``ns_file``, within ``timeout`` seconds.

    One SYN (and the kernel's own retries) for at most ``timeout``; never a loop of attempts.
    """
    return netns.run_in_netns(ns_file, _connect, address, port, timeout, timeout=timeout + 2.0)
