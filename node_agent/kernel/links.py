"""Network links, addresses, routes and TCP sockets of a network namespace, and an active TCP probe.

Links, addresses and routes come from iproute2's JSON output (``ip -json``): rtnetlink parsed by
the tool every lab VM already has. pyroute2 would parse the same netlink messages in Python, but
the agent is stdlib-only (it runs on attendee VMs with no dependencies), and a hand-written
netlink parser would be a second iproute2 to maintain. TCP sockets come straight from
``/proc/<pid>/net/tcp`` and ``tcp6`` (proc(5)), which show the reading process's namespace.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node_agent.kernel import nsenter
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
    return _parse_view(proc.stdout, where)


def views(names: list[str]) -> dict[str, NetnsView]:
    """``view`` of several named namespaces, the ``ip`` processes running side by side."""
    procs = {name: subprocess.Popen(["ip", "-d", "-json", "-n", name, "-batch", "-"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate("addr show\nroute show\nnetns list-id\n", timeout=IP_TIMEOUT)
        if proc.returncode != 0:
            raise LinkError(f"ip in network namespace {name}: {stderr.strip() or f'exit {proc.returncode}'}")
        out[name] = _parse_view(stdout, name)
    return out


def _parse_view(stdout: str, where: str) -> NetnsView:
    docs = _json_documents(stdout, where)
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


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
_NLMSG_HDR = struct.Struct("=IHHII")
_DIAG_REQ = struct.Struct("=BBBBI48x")  # inet_diag_req_v2 with a zero inet_diag_sockid
_DIAG_MSG_TAIL = struct.Struct("=IIIII")  # expires, rqueue, wqueue, uid, inode (inet_diag_msg after the id)
MAX_DIAG_READS = 1000


def diag_listeners(port: int | None = None) -> list[TcpSocket]:
    """TCP listeners of the *caller's* network namespace from sock_diag(7), as ``ss -lt`` gets them.

    Reading /proc/net/tcp walks the whole established hash table (≈3.5 ms per file here, even in
    an empty namespace); a sock_diag dump with the LISTEN state only walks the listeners.
    """
    out = []
    for family in (socket.AF_INET, socket.AF_INET6):
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(2.0)
            request = _DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN)
            nl.sendto(_NLMSG_HDR.pack(_NLMSG_HDR.size + len(request), SOCK_DIAG_BY_FAMILY,
                                      NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + request, (0, 0))
            out.extend(s for s in _diag_replies(nl, family) if port is None or s.local_port == port)
    return out


def _diag_replies(nl: socket.socket, family: int) -> list[TcpSocket]:
    found = []
    for _ in range(MAX_DIAG_READS):
        data, offset = nl.recv(65536), 0
        while offset + _NLMSG_HDR.size <= len(data):
            length, kind, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, offset)
            if kind == NLMSG_DONE:
                return found
            if kind == NLMSG_ERROR:
                errno_ = -struct.unpack_from("=i", data, offset + _NLMSG_HDR.size)[0]
                raise OSError(errno_, f"sock_diag: {os.strerror(errno_)}")
            msg = data[offset + _NLMSG_HDR.size: offset + length]
            sport = struct.unpack_from(">H", msg, 4)[0]
            raw = msg[8:12] if family == socket.AF_INET else msg[8:24]
            _exp, _rq, _wq, uid, inode = _DIAG_MSG_TAIL.unpack_from(msg, 52)
            found.append(TcpSocket(str(ipaddress.ip_address(raw)), sport, msg[1], uid, inode))
            offset += (length + 3) & ~3
    raise OSError(f"sock_diag: no end of dump after {MAX_DIAG_READS} reads")


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
    answer = nsenter.call([(ns_file, "net")], _connect_json, address, port, timeout, timeout=timeout + 2.0)
    return ProbeResult(**answer)


def _connect_json(address: str, port: int, timeout: float) -> dict[str, Any]:
    return dataclasses.asdict(_connect(address, port, timeout))


@dataclass(frozen=True)
class ServiceProbe:
    """Listeners on the port seen inside the server's namespace, then one connect from the client's."""

    listeners: list[TcpSocket]
    probe: ProbeResult


def _service_probe(client_ns_file: str, address: str, port: int, timeout: float) -> dict[str, Any]:
    # Runs in the forked child, already inside the server's namespace; answers ServiceProbe as JSON.
    found = diag_listeners(port)
    fd = os.open(client_ns_file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        nsenter.setns(fd, "net")
    finally:
        os.close(fd)
    return dataclasses.asdict(ServiceProbe(found, _connect(address, port, timeout)))


def service_probe(server_ns_file: Path, client_ns_file: Path, address: str, port: int,
                  timeout: float = 1.0) -> ServiceProbe:
    """Who listens on ``port`` in the server's namespace, and whether a connect from the client's gets through.

    One forked child for both (it enters the server's namespace, reads the listeners with
    sock_diag, then enters the client's and connects once, bounded by ``timeout``).
    """
    answer = nsenter.call([(server_ns_file, "net")], _service_probe, str(client_ns_file), address, port, timeout,
                          timeout=timeout + 2.0)
    return ServiceProbe([TcpSocket(**row) for row in answer["listeners"]], ProbeResult(**answer["probe"]))
