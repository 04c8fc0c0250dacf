"""Checkers, solvers and resetters of the network namespace labs, ns-net-1 and ns-net-2 (docs/labs.md).

ns-net-1: an attendee process in a new network namespace (made with a user namespace, no sudo)
whose ``/proc/<pid>/net/dev`` lists only ``lo``.

ns-net-2: two named namespaces (``{prefix}vnet0``, ``{prefix}vnet10``), a veth pair between them
with 10.11.12.1/24 and 10.11.13.1/24 and a route each way, a TCP server on :1500 in vnet0, and
an active probe: the agent connects from inside vnet10. The names carry the agent's prefix so
the agent only ever touches namespaces and links it can prove are the lab's, and two attendees
(or two tests) on one host never collide; the instructions show the exact names through the
``{prefix}`` placeholder. The addresses exist only inside the two namespaces: nothing is
added to the host's routing table.

Resets remove what keeps a namespace alive (network_namespaces(7)): processes in it, open fds
on it, nsfs bind mounts of it in any mount namespace. Then ``ip netns del``, then a second scan
proves nothing holds it; what could not be removed is reported.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node_agent.kernel import links, netns, nsinspect, procfs, proctable
from node_agent.kernel.proctable import ProcInfo
from node_agent.labs.attendee_files import excerpt
from node_agent.labs.context import LabContext
from node_agent.labs.model import CheckResult, ResetReport
from node_agent.labs.registry import checker, resetter, solver

IFNAMSIZ = 16  # including the NUL: 15 characters at most
SOLVE_TIMEOUT = 5.0


# --- ns-net-1: a fresh network namespace --------------------------------------------------------

@dataclass(frozen=True)
class IsolatedParams:
    allowed_devices: list[str] = field(default_factory=lambda: ["lo"])  # + tap* if slirp4netns is used
    user_ns: bool = True  # without sudo, a new network namespace needs a new user namespace


def _isolated_candidates(ctx: LabContext, p: IsolatedParams, procs: list[ProcInfo] | None = None) -> list[ProcInfo]:
    return [q for q in (ctx.processes() if procs is None else procs) if q.uid == ctx.attendee.uid
            and ctx.in_new_ns(q, "net") and (not p.user_ns or ctx.in_new_ns(q, "user"))]


def _extra_devices(names: list[str], p: IsolatedParams) -> list[str]:
    return [n for n in names if n not in p.allowed_devices and not n.startswith("tap")]


@checker("net.isolated", IsolatedParams)
def check_isolated(ctx: LabContext, p: IsolatedParams) -> CheckResult:
    """Pass when an attendee process is in a new net (and user) namespace that has only lo."""
    mine = [q for q in ctx.processes() if q.uid == ctx.attendee.uid]
    candidates = _isolated_candidates(ctx, p, mine)
    if not candidates:
        in_net = [q.pid for q in mine if ctx.in_new_ns(q, "net")]
        reason = ("None of your processes is in a new network namespace yet: run "
                  "`unshare --user --map-root-user --net --uts --mount` and keep that shell open.")
        if in_net and p.user_ns:
            reason = (f"Your processes {in_net} are in another network namespace, but not in a new user "
                      "namespace: start a fresh one yourself with `unshare --user --map-root-user --net ...`.")
        return CheckResult.fail(reason, {"looked_at": [q.pid for q in mine], "agent_net_ns": ctx.own_ns.get("net")})
    forged = _forged_net_dev(candidates)
    if forged:
        return forged
    seen = []
    for q in candidates:
        try:
            devices = links.dev_names(q.pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if not proctable.alive(q.pid, q.starttime):
            continue
        evidence = {"pid": q.pid, "starttime": q.starttime, "comm": q.comm, "net_ns": q.ns.get("net"),
                    "user_ns": q.ns.get("user"), "devices": devices}
        if not _extra_devices(devices, p):
            return CheckResult.ok(evidence)
        seen.append(evidence)
    if not seen:
        return CheckResult.fail("Your process in a new network namespace has just exited; start it again.")
    first = seen[0]
    return CheckResult.fail(
        f"Process {first['pid']} ({excerpt(first['comm'])}) is in a new network namespace, but it has more than lo: "
        f"{', '.join(_extra_devices(first['devices'], p))}. A namespace fresh from unshare --net has only lo.",
        {"processes": seen})


def _forged_net_dev(procs: list[ProcInfo]) -> CheckResult | None:
    mounts = procfs.mountinfo("self")
    for q in procs:
        try:
            reasons = nsinspect.forged_proc_files(q.pid, ("net", "net/dev"), mounts=mounts)
        except FileNotFoundError:
            continue
        if reasons:
            return CheckResult.forged(
                f"/proc/{q.pid}/net/dev is not the kernel's: {'; '.join(reasons)}. The check reads the kernel, "
                "so a file mounted over procfs cannot pass it.", {"pid": q.pid, "forged": reasons})
    return None


@solver("net.isolated", IsolatedParams)
def solve_isolated(ctx: LabContext, p: IsolatedParams) -> dict[str, Any]:
    """What the attendee does, kept running as a tracked holder: ``unshare -U -r -n -u -m sleep``."""
    holder = ctx.spawn(["unshare", "--user", "--map-root-user", "--net", "--uts", "--mount", "sleep", "infinity"])
    result = _wait_passing(lambda: check_isolated(ctx, p))
    return {"holder": {"pid": holder.pid, "starttime": holder.starttime}, "check": result.status,
            **({"reason": result.reason} if not result.passed else {})}


@resetter("net.isolated", IsolatedParams)
def reset_isolated(ctx: LabContext, p: IsolatedParams) -> ResetReport:
    """Kill the attendee's processes in a fresh network namespace (the namespace dies with them)."""
    report = ResetReport()
    targets = _isolated_candidates(ctx, p)
    for pid in ctx.kill(targets) if targets else []:
        report.removed.append(f"process {pid} in a new network namespace")
    report.leftovers.extend(f"process {q.pid} ({excerpt(q.comm)}) is still in a new network namespace"
                            for q in _isolated_candidates(ctx, p))
    return report


def _wait_passing(check) -> CheckResult:
    """Poll a check until it passes (a holder needs a moment to set itself up), bounded."""
    deadline = time.monotonic() + SOLVE_TIMEOUT
    while True:
        result = check()
        if result.passed or time.monotonic() > deadline:
            return result
        time.sleep(0.005)


# --- ns-net-2: two named namespaces, a veth, a server, a probe ----------------------------------

@dataclass(frozen=True)
class PairParams:
    """The lab's names and addresses; ``{prefix}`` is the agent's lab prefix."""

    server_ns: str = "{prefix}vnet0"
    client_ns: str = "{prefix}vnet10"
    server_veth: str = "{prefix}veth0"
    client_veth: str = "{prefix}veth10"
    server_address: str = "10.11.12.1/24"
    client_address: str = "10.11.13.1/24"
    port: int = 1500
    probe_timeout: float = 1.0


@dataclass(frozen=True)
class Pair:
    """PairParams with the prefix filled in and every value validated."""

    server_ns: str
    client_ns: str
    server_veth: str
    client_veth: str
    server_if: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    client_if: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    port: int
    probe_timeout: float

    @property
    def names(self) -> tuple[str, str]:
        return self.server_ns, self.client_ns

    def path(self, name: str) -> Path:
        return netns.NETNS_RUN_DIR / name


class LabFileError(ValueError):
    """A value of the lab file that cannot work (a name too long for an interface, a bad address)."""


def _checked(fn):
    """A checker whose lab values are wrong fails with the key named, for the instructor to fix."""
    def check(ctx: LabContext, p: PairParams) -> CheckResult:
        try:
            return fn(ctx, p)
        except LabFileError as exc:
            return CheckResult.fail(f"The lab file is wrong, tell the instructor: {exc}.")
    check.__name__, check.__doc__ = fn.__name__, fn.__doc__
    return check


def _pair(ctx: LabContext, p: PairParams) -> Pair:
    def name(key: str, limit: int) -> str:
        value = getattr(p, key).replace("{prefix}", ctx.prefix)
        if not value or "/" in value or len(value) >= limit or value in (".", ".."):
            raise LabFileError(f"{key}: {value!r} is not a usable name (plain, at most {limit - 1} characters)")
        return value

    def iface(key: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        try:
            return ipaddress.ip_interface(getattr(p, key))
        except ValueError as exc:
            raise LabFileError(f"{key}: {getattr(p, key)!r} is not an address/prefix such as 10.11.12.1/24") from exc

    if not 0 < p.port < 65536:
        raise LabFileError(f"port: {p.port} is not a TCP port")
    return Pair(name("server_ns", 256), name("client_ns", 256), name("server_veth", IFNAMSIZ),
                name("client_veth", IFNAMSIZ), iface("server_address"), iface("client_address"), p.port,
                min(max(p.probe_timeout, 0.05), 5.0))


def _named(pair: Pair) -> dict[str, int | None]:
    return {n: netns.netns_inode_of(pair.path(n)) for n in pair.names}


def _owned(ctx: LabContext, pair: Pair, report: ResetReport | None = None) -> dict[int, str]:
    """The lab's namespaces the agent may empty: ``{inode: name}``.

    A name in /run/netns is only a bind mount: a root attendee (or a mistake) can put *any*
    namespace under the lab's name, the host's own included. Processes in an owned namespace
    count as the lab's (``ctx.kill`` accepts them), so a namespace is owned only when it is not
    the agent's own and no name outside the lab's refers to it (another agent's lab, a fleet
    host). Names that fail this are still unmounted by ``ip netns del``; nothing inside is touched.
    """
    own = ctx.own_ns.get("net")
    others = {e.inode for e in netns.named_netns() if e.name not in pair.names and e.inode is not None}
    owned = {}
    for name, inode in _named(pair).items():
        if inode is None:
            continue
        if inode == own or inode in others:
            if report is not None:
                whose = "the agent's own network namespace" if inode == own else "a namespace also named outside the lab"
                report.leftovers.append(f"{name} was {whose} (inode {inode}): only its name was removed, "
                                        "no process in it was touched")
            continue
        owned[inode] = name
    ctx.owned_netns.update(owned)
    return owned


def _check_named(ctx: LabContext, pair: Pair) -> tuple[CheckResult | None, dict[str, Any]]:
    inodes = _named(pair)
    evidence: dict[str, Any] = {"netns": inodes}
    missing = [n for n, i in inodes.items() if i is None]
    if missing:
        return CheckResult.fail(
            f"Network namespace {' and '.join(missing)} does not exist yet: `sudo ip netns add {missing[0]}`.",
            evidence), evidence
    if inodes[pair.server_ns] == inodes[pair.client_ns]:
        return CheckResult.fail(f"{pair.server_ns} and {pair.client_ns} are the same namespace "
                                f"(inode {inodes[pair.server_ns]}): create two.", evidence), evidence
    host = [n for n, i in inodes.items() if i == ctx.own_ns.get("net")]
    if host:
        return CheckResult.fail(f"{host[0]} is the host's own network namespace, not a new one: "
                                f"`sudo ip netns del {host[0]}` and `sudo ip netns add {host[0]}`.", evidence), evidence
    others = [e.name for e in netns.named_netns() if e.name not in pair.names and e.inode in inodes.values()]
    if others:
        return CheckResult.fail(f"{' and '.join(pair.names)} must be namespaces of their own, but one is also "
                                f"named {others[0]}: create new ones with `sudo ip netns add`.", evidence), evidence
    return None, evidence


@checker("net.named_pair", PairParams)
@_checked
def check_named_pair(ctx: LabContext, p: PairParams) -> CheckResult:
    """Both named network namespaces exist in /run/netns, distinct and not the host's."""
    failed, evidence = _check_named(ctx, _pair(ctx, p))
    return failed or CheckResult.ok(evidence)


def _check_veth(ctx: LabContext, pair: Pair) -> tuple[CheckResult | None, dict[str, Any]]:
    failed, evidence = _check_named(ctx, pair)
    if failed:
        return failed, evidence
    both = links.views([pair.server_ns, pair.client_ns])
    server, client = both[pair.server_ns], both[pair.client_ns]
    evidence["links"] = {pair.server_ns: _links_evidence(server), pair.client_ns: _links_evidence(client)}
    for view, ns, veth, other_view, other_ns, other_veth, iface in (
            (server, pair.server_ns, pair.server_veth, client, pair.client_ns, pair.client_veth, pair.server_if),
            (client, pair.client_ns, pair.client_veth, server, pair.server_ns, pair.server_veth, pair.client_if)):
        reason = _veth_end(view, ns, veth, other_view, other_ns, other_veth, iface)
        if reason:
            return CheckResult.fail(reason, evidence), evidence
    for view, ns, veth, target in ((server, pair.server_ns, pair.server_veth, pair.client_if),
                                   (client, pair.client_ns, pair.client_veth, pair.server_if)):
        route = view.route_to(str(target.ip))
        if route is None:
            return CheckResult.fail(
                f"{ns} has no route to {target.ip}: `sudo ip -n {ns} route add {target.network} dev {veth}`.",
                evidence), evidence
    evidence["routes"] = {pair.server_ns: [r.dst for r in server.routes], pair.client_ns: [r.dst for r in client.routes]}
    return None, evidence


def _links_evidence(view: links.NetnsView) -> list[dict[str, Any]]:
    return [{"ifname": lnk.ifname, "ifindex": lnk.ifindex, "kind": lnk.kind, "up": lnk.up,
             "peer_ifindex": lnk.peer_ifindex, "peer_netns": view.nsids.get(lnk.peer_nsid) if lnk.peer_nsid is not None
             else None, "addresses": list(lnk.addresses)} for lnk in view.links]


def _veth_end(view: links.NetnsView, ns: str, veth: str, other_view: links.NetnsView, other_ns: str,
              other_veth: str, iface) -> str | None:
    """Why one end of the pair is not right yet, or None."""
    end, peer = view.link(veth), other_view.link(other_veth)
    if end is None:
        names = ", ".join(lnk.ifname for lnk in view.links)
        return (f"{ns} has no interface {veth} (it has: {names}): create the pair with `sudo ip -n {ns} link add "
                f"{veth} type veth peer name {other_veth} netns {other_ns}` (or move it there with `ip link set`).")
    if end.kind != "veth":
        return f"{veth} in {ns} is a {end.kind or 'plain'} device, not a veth: delete it and create a veth pair."
    if peer is None or end.peer_nsid is None or view.nsids.get(end.peer_nsid) != other_ns \
            or end.peer_ifindex != peer.ifindex:
        return (f"The peer of {veth} is not {other_veth} in {other_ns}: both ends of one veth pair must be in the two "
                "namespaces.")
    if not end.up:
        return f"{veth} in {ns} is down: `sudo ip -n {ns} link set {veth} up`."
    if str(iface) not in end.addresses:
        has = ", ".join(end.addresses) or "none"
        return f"{veth} in {ns} does not have {iface} (it has: {has}): `sudo ip -n {ns} addr add {iface} dev {veth}`."
    return None


@checker("net.veth_pair", PairParams)
@_checked
def check_veth_pair(ctx: LabContext, p: PairParams) -> CheckResult:
    """Both namespaces, a veth pair between them with the lab's addresses, up, and a route each way."""
    failed, evidence = _check_veth(ctx, _pair(ctx, p))
    return failed or CheckResult.ok(evidence)


@checker("net.service", PairParams)
@_checked
def check_service(ctx: LabContext, p: PairParams) -> CheckResult:
    """All of the above, a process in the server namespace listening on the port, and a probe that connects."""
    pair = _pair(ctx, p)
    failed, evidence = _check_veth(ctx, pair)
    if failed:
        return failed
    seen = links.service_probe(pair.path(pair.server_ns), pair.path(pair.client_ns), str(pair.server_if.ip),
                               pair.port, pair.probe_timeout)
    listener = _listener(seen.listeners, evidence["netns"][pair.server_ns])
    probe = seen.probe
    evidence["listener"] = listener
    evidence["probe"] = {"from": pair.client_ns, "to": f"{pair.server_if.ip}:{pair.port}",
                         "connected": probe.connected, "error": probe.error, "ms": round(probe.elapsed_ms, 3)}
    if listener.get("pid") is None:
        return CheckResult.fail(_no_listener_reason(pair, listener), evidence)
    if not probe.connected:
        bound = listener.get("addresses", [])
        hint = (f" The server listens on {', '.join(bound)} only: let it listen on {pair.server_if.ip} or all addresses."
                if bound and not any(a in ("0.0.0.0", "::", str(pair.server_if.ip)) for a in bound) else "")
        return CheckResult.fail(f"A process in {pair.server_ns} listens on {pair.port}, but connecting from "
                                f"{pair.client_ns} to {pair.server_if.ip}:{pair.port} failed ({probe.error}).{hint}",
                                evidence)
    return CheckResult.ok(evidence)


def _listener(sockets: list[links.TcpSocket], server_inode: int) -> dict[str, Any]:
    """The process in the server namespace that owns a listening socket (sock_diag's inode → its fd)."""
    out: dict[str, Any] = {"pid": None, "sockets": [f"{s.local_address}:{s.local_port}" for s in sockets]}
    if not sockets:
        return out
    members = netns.pids_in_netns(server_inode, threads=False)
    out["netns_members"] = members[:20]
    owners = links.socket_owners({s.inode for s in sockets}, members)
    for s in sockets:
        if owners.get(s.inode):
            pid = owners[s.inode][0]
            info = proctable.read(pid, full=False)
            return {**out, "pid": pid, "starttime": info.starttime if info else None,
                    "comm": info.comm if info else None, "socket_inode": s.inode,
                    "addresses": sorted({x.local_address for x in sockets})}
    return out


def _no_listener_reason(pair: Pair, listener: dict[str, Any]) -> str:
    reason = (f"No process in {pair.server_ns} listens on TCP port {pair.port}: start the server inside it, e.g. "
              f"`sudo ip netns exec {pair.server_ns} nc -lk {pair.port}`.")
    if listener["sockets"]:
        reason += (f" A socket listens there ({', '.join(listener['sockets'])}) but no process in {pair.server_ns} "
                   "holds it.")
    if links.diag_listeners(pair.port):  # the agent's own namespace: the host's
        reason += (f" A server listens on {pair.port} in the host's network namespace: that one is outside the "
                   f"lab's namespaces and does not count.")
    return reason


# -- solvers --

@solver("net.named_pair", PairParams)
def solve_named_pair(ctx: LabContext, p: PairParams) -> dict[str, Any]:
    """``ip netns add`` both names (only the missing ones), in one ``ip -batch``."""
    pair = _pair(ctx, p)
    missing = [n for n, i in _named(pair).items() if i is None]
    if missing:
        links.run_batch([f"netns add {n}" for n in missing])
    return {"added": missing, "netns": _named(pair)}


@solver("net.veth_pair", PairParams)
def solve_veth_pair(ctx: LabContext, p: PairParams) -> dict[str, Any]:
    """The recipe with ``ip -batch``, one per namespace: the veth is created in place, never on the host."""
    pair = _pair(ctx, p)
    removed = _remove_links(pair)
    s, c = pair.server_ns, pair.client_ns
    links.run_batch([f"link add {pair.server_veth} type veth peer name {pair.client_veth} netns {c}",
                     f"addr add {pair.server_if} dev {pair.server_veth}", f"link set {pair.server_veth} up",
                     f"route replace {pair.client_if.network} dev {pair.server_veth}"], s)
    links.run_batch([f"addr add {pair.client_if} dev {pair.client_veth}", f"link set {pair.client_veth} up",
                     f"route replace {pair.server_if.network} dev {pair.client_veth}"], c)
    return {"replaced": removed, "veth": [f"{s}/{pair.server_veth}", f"{c}/{pair.client_veth}"]}


@solver("net.service", PairParams)
def solve_service(ctx: LabContext, p: PairParams) -> dict[str, Any]:
    """A server on the port inside the server namespace, kept as a tracked holder."""
    pair = _pair(ctx, p)
    if shutil.which("nc"):
        argv = ["nc", "-lk", str(pair.port)]
    else:
        argv = ["python3", "-m", "http.server", str(pair.port), "--bind", str(pair.server_if.ip)]
    holder = ctx.spawn(argv, netns=pair.server_ns)
    result = _wait_passing(lambda: check_service(ctx, p))
    return {"holder": {"pid": holder.pid, "starttime": holder.starttime, "argv": argv}, "check": result.status,
            **({"reason": result.reason} if not result.passed else {})}


# -- resetters --

def _remove_links(pair: Pair) -> list[str]:
    """Delete the lab's veths wherever they are: in the lab namespaces, or left on the host by the classic recipe."""
    removed = []
    for ns, veth in ((pair.server_ns, pair.server_veth), (pair.client_ns, pair.client_veth)):
        if netns.netns_inode_of(pair.path(ns)) is not None and links.delete_link(veth, ns):
            removed.append(f"veth {veth} in {ns} (and its peer)")
    for veth in (pair.server_veth, pair.client_veth):
        if Path("/sys/class/net", veth).exists() and links.delete_link(veth):
            removed.append(f"veth {veth} on the host")
    return removed


def _kill(ctx: LabContext, pids: list[int], what: str, report: ResetReport) -> None:
    infos = [i for i in (proctable.read(pid) for pid in sorted(set(pids))) if i is not None]
    members = ctx.lab_cgroup_members()
    ours = [i for i in infos if _is_ours(ctx, i, members)]
    report.leftovers.extend(f"process {i.pid} ({excerpt(i.comm)}, uid {i.uid}) {what}, and it is not the lab's: "
                            "the agent leaves it alone" for i in infos if i not in ours)
    if ours:
        report.removed.extend(f"process {pid} {what}" for pid in ctx.kill(ours))


def _is_ours(ctx: LabContext, info: ProcInfo, members: set[int]) -> bool:
    """``ctx.is_lab_process``, but a process counts as the lab's by its network namespace only when that
    namespace is one of the lab's own, never the agent's (belt and braces: see ``_owned``)."""
    if not ctx.is_lab_process(info, members):
        return False
    if info.uid == ctx.attendee.uid or info.pid in members or info.key in {h.key for h in ctx.holders()}:
        return True
    net = info.ns.get("net")
    return net is not None and net != ctx.own_ns.get("net") and net in ctx.owned_netns


@resetter("net.service", PairParams)
def reset_service(ctx: LabContext, p: PairParams) -> ResetReport:
    """Kill every process in the lab's namespaces (the server, shells the attendee left there), named or not.

    It runs first of the lab's resets, while the lab's veths still mark a namespace whose name the
    attendee already deleted.
    """
    pair = _pair(ctx, p)
    report = ResetReport()
    _kill_members(ctx, pair, _owned(ctx, pair), report)
    return report


def _kill_members(ctx: LabContext, pair: Pair, names: dict[int, str], report: ResetReport,
                  others: dict[int, list[int]] | None = None) -> dict[int, netns.Holders]:
    """One pass over /proc (pids, and nsfs mounts unless ``others`` is given): kill the members of the
    lab's namespaces, named or recognised by their veths; returns what the pass saw."""
    seen: dict[int, list[int]] = {} if others is None else others
    # Leaders only here: the full pass after ``ip netns del`` looks at threads too.
    found = netns.scan_holders(set(names), threads=False, fds=False, mounts=others is not None, others=seen)
    for inode, label in _unnamed_lab_netns(ctx, pair, seen, set(names)).items():
        names[inode] = label
        found[inode] = netns.Holders(inode, pids=seen[inode])
    for inode, held in found.items():
        _kill(ctx, held.pids, f"in network namespace {names[inode]}", report)
    return found


@resetter("net.veth_pair", PairParams)
def reset_veth_pair(ctx: LabContext, p: PairParams) -> ResetReport:
    """Delete the lab's veths that would outlive its namespaces: ends left on the host (the classic recipe).

    The pair inside the lab's namespaces goes with them (step ``namespaces``): deleting a netdev
    waits for RCU grace periods (tens of ms), a namespace's devices are freed after it, off the
    reset's path.
    """
    pair = _pair(ctx, p)
    removed = []
    for veth in (pair.server_veth, pair.client_veth):
        if os.path.exists(f"/sys/class/net/{veth}") and links.delete_link(veth):
            removed.append(f"veth {veth} on the host")
    return ResetReport(removed=removed)


@resetter("net.named_pair", PairParams)
def reset_named_pair(ctx: LabContext, p: PairParams) -> ResetReport:
    """Remove both namespaces and everything that would keep them alive; prove it with a full scan.

    Pass one (processes and nsfs mounts) kills the members, ``ip netns del`` removes the names
    (and, by the unlink, their copies in other mount namespaces), the other nsfs mounts are
    unmounted where they are; pass two (with every open fd) finds what is left, and only when it
    had to act does a third pass report what could not be removed.
    """
    pair = _pair(ctx, p)
    report = ResetReport()
    inodes = _owned(ctx, pair, report)
    first = _kill_members(ctx, pair, inodes, report, others={})
    for name in pair.names:
        try:
            if netns.delete_named(name):
                report.removed.append(f"network namespace {name}")
        except netns.NetnsError as exc:
            report.leftovers.append(str(exc))
    for inode, held in first.items():
        names = {str(netns.NETNS_RUN_DIR / n) for n in pair.names}
        _unmount(ctx, inodes[inode], [m for m in held.mounts if m.mount_point not in names], report)
    if inodes:
        _remove_remaining(ctx, inodes, report)
    report.merge(reset_veth_pair(ctx, p))
    report.leftovers = list(dict.fromkeys(report.leftovers))
    return report


def _unnamed_lab_netns(ctx: LabContext, pair: Pair, seen: dict[int, list[int]], known: set[int]) -> dict[int, str]:
    """Lab namespaces whose name is already gone (the attendee ran ``ip netns del``) but a process keeps alive.

    ``seen`` is what a scan met: ``{net inode: member pids}``. A lab namespace is recognised by one
    of the lab's own veth names (they carry the lab prefix) in ``/proc/<pid>/net/dev`` of one
    member; never the agent's own namespace or one with a name (a fleet host, another lab).
    """
    skip = {ctx.own_ns.get("net"), *known, *(e.inode for e in netns.named_netns())}
    found: dict[int, str] = {}
    for inode, members in seen.items():
        if inode in skip:
            continue
        try:
            devices = [d for d in links.dev_names(members[0]) if d in (pair.server_veth, pair.client_veth)]
        except OSError:
            continue
        if devices:
            found[inode] = f"an unnamed network namespace with {', '.join(devices)}"
    ctx.owned_netns.update(found)
    return found


def _unmount(ctx: LabContext, name: str, mounts: list[netns.MountHolder], report: ResetReport) -> None:
    """Unmount nsfs mounts of a lab namespace where they are; a locked one ends its mount namespace."""
    for mount in mounts:
        try:
            netns.umount_in_mount_ns(mount.pid, mount.mount_point)
            report.removed.append(f"nsfs mount of {name} at {mount.mount_point} (mount namespace {mount.mnt_ns})")
        except (OSError, netns.NetnsError, TimeoutError) as exc:
            # Locked in a mount namespace of a less privileged user namespace: end that mount
            # namespace if (and only if) every process in it is the lab's; never the agent's own.
            if mount.mnt_ns == ctx.own_ns.get("mnt"):
                report.leftovers.append(f"nsfs mount of {name} at {mount.mount_point} on the host: {exc}")
                continue
            members = [pid for pid in proctable.pids() if netns.ns_inode(pid, "mnt") == mount.mnt_ns]
            _kill(ctx, members, f"kept an nsfs mount of {name} in mount namespace {mount.mnt_ns}", report)


def _remove_remaining(ctx: LabContext, inodes: dict[int, str], report: ResetReport) -> None:
    """After ``ip netns del``: a full scan (fds included); remove late holders, and if it had to, scan again."""
    acted = False
    for inode, held in netns.scan_holders(set(inodes)).items():
        name = inodes[inode]
        if held:
            acted = True
        _unmount(ctx, name, held.mounts, report)
        _kill(ctx, held.pids, f"in network namespace {name}", report)
        _kill(ctx, [h.pid for h in held.fds], f"held an fd on network namespace {name}", report)
    if acted:
        for inode, held in netns.scan_holders(set(inodes)).items():
            report.leftovers.extend(f"{line} (was {inodes[inode]})" for line in held.describe())
