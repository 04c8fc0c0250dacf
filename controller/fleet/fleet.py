"""The fleet as a whole: ``up``, ``down``, ``hosts``, ``status`` and sshd control."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from controller.fleet import cgroups, keys, launch, mounts, network, probe, processes, registry, rootfs
from controller.fleet.config import (
    DEFAULT_PREFIX,
    DEFAULT_STATE_DIR,
    DEFAULT_SUBNET,
    FleetConfig,
    check_count,
)
from controller.fleet.errors import FleetError
from controller.fleet.host import FleetHost
from controller.fleet.registry import FleetState, HostRecord

SSHD_TIMEOUT = 15.0
PARALLEL = 8


@dataclass(frozen=True)
class HostStatus:
    """What ``fleet list`` shows for one host."""

    host: FleetHost
    pid: int | None
    running: bool
    sshd_answers: bool

    def to_dict(self) -> dict[str, object]:
        return {**self.host.to_dict(), "pid": self.pid, "state": "running" if self.running else "stopped",
                "sshd_answers": self.sshd_answers}


class Fleet:
    """Lab hosts made of namespaces on this machine (see the package docstring)."""

    def __init__(self, state_dir: str | Path = DEFAULT_STATE_DIR, subnet: str = DEFAULT_SUBNET,
                 prefix: str = DEFAULT_PREFIX) -> None:
        self.config = FleetConfig.build(state_dir, subnet, prefix)

    @classmethod
    def from_state(cls, state_dir: str | Path = DEFAULT_STATE_DIR, subnet: str = DEFAULT_SUBNET,
                   prefix: str = DEFAULT_PREFIX) -> Fleet:
        """The fleet recorded in ``state_dir`` if there is one, else one with the given subnet and prefix."""
        try:
            state = registry.load(FleetConfig.build(state_dir).state_file)
        except FleetError:
            state = None
        if state is not None:
            subnet, prefix = state.subnet, state.prefix
        return cls(state_dir, subnet, prefix)

    @property
    def bridge_address(self) -> str:
        return self.config.bridge_address

    # -- reading -----------------------------------------------------------

    def hosts(self) -> list[FleetHost]:
        state = registry.load(self.config.state_file)
        return [record.host for record in state.hosts] if state else []

    def status(self) -> list[HostStatus]:
        state = registry.load(self.config.state_file)
        if not state:
            return []

        def one(record: HostRecord) -> HostStatus:
            running = processes.is_same(record.pid, record.starttime)
            answers = running and self._bridge_present() and probe.sshd_answers(record.host.address,
                                                                                 record.host.ssh_port)
            return HostStatus(record.host, record.pid, running, answers)

        with ThreadPoolExecutor(PARALLEL) as pool:
            return list(pool.map(one, state.hosts))

    def _bridge_present(self) -> bool:
        """Probe hosts only while their bridge exists: without it their addresses would be routed off the machine."""
        return os.path.exists(f"/sys/class/net/{self.config.bridge}")

    # -- up ------------------------------------------------------------------

    def up(self, count: int) -> list[FleetHost]:
        """Create ``count`` hosts and return once every one's sshd answers; on failure, remove them all."""
        check_count(count)
        cfg = self.config
        with registry.locked(cfg.lock_file):
            self._refuse_existing()
            network.check_subnet_free(cfg)
            client_public_key = keys.ensure_client_key(cfg.private_key)
            state = FleetState(cfg.prefix, str(cfg.subnet), [HostRecord(self._host(i), i) for i in range(1, count + 1)])
            registry.save(cfg.state_file, state)  # intent first: a crash below leaves a record
            try:
                self._make(state, client_public_key)
            except BaseException:
                self._teardown(cfg, state)
                raise
        return [record.host for record in state.hosts]

    def _host(self, index: int) -> FleetHost:
        name = self.config.host_name(index)
        return FleetHost(name=name, address=self.config.host_address(index), ssh_port=22,
                         private_key_path=str(self.config.private_key),
                         known_hosts_path=str(self.config.known_hosts),
                         cgroup_parent=self.config.cgroup_parent(name), netns=name,
                         lab_cgroup_parent=self.config.lab_cgroup_parent(name))

    def _refuse_existing(self) -> None:
        cfg = self.config
        state = registry.load(cfg.state_file)
        if state and state.hosts:
            raise FleetError(f"{cfg.state_file} already records a fleet (prefix {state.prefix!r}, "
                             f"{len(state.hosts)} hosts); run `labfleet fleet down` first")
        leftovers = network.netns_names(cfg) + network.link_names(cfg) + [g.name for g in cgroups.host_groups(cfg)]
        if leftovers:
            raise FleetError(f"names of fleet prefix {cfg.prefix!r} already exist on this machine "
                             f"({', '.join(sorted(set(leftovers)))}); run `labfleet fleet down "
                             f"--name-prefix {cfg.prefix}` or choose another --name-prefix")

    def _make(self, state: FleetState, client_public_key: str) -> None:
        cfg = self.config
        network.create_bridge(cfg)
        network.check_subnet_free(cfg, own_bridge=True)
        network.create_host_links(cfg, [r.index for r in state.hosts])
        names = [(r.host.name, r.host.address) for r in state.hosts]
        with ThreadPoolExecutor(min(PARALLEL, len(state.hosts))) as pool:
            host_keys = list(pool.map(lambda r: launch.seed(cfg, r.host, r.index, names, client_public_key),
                                      state.hosts))
            keys.write_known_hosts(cfg.known_hosts, [(n, a, k) for (n, a), k in zip(names, host_keys, strict=True)])
            started = list(pool.map(lambda r: launch.start_init(cfg, r.host, r.index), state.hosts))
            for record, (pid, start) in zip(state.hosts, started, strict=True):
                record.pid, record.starttime = pid, start
            registry.save(cfg.state_file, state)
            answering = list(pool.map(lambda r: probe.wait_for(r.host.address, r.host.ssh_port, True,
                                                               SSHD_TIMEOUT), state.hosts))
        silent = [r.host.name for r, ok in zip(state.hosts, answering, strict=True) if not ok]
        if silent:
            log = cfg.host_dir(silent[0]) / "init.log"
            tail = log.read_text()[-1500:] if log.exists() else "(no log)"
            raise FleetError(f"sshd of {', '.join(silent)} did not answer within {SSHD_TIMEOUT:.0f} s; "
                             f"{log}:\n{tail}")

    # -- down ----------------------------------------------------------------

    def down(self) -> None:
        """Remove every host, link, bridge, mount, cgroup and process of this fleet; idempotent.

        Works from the state file and, for what a crash left unrecorded, by
        scanning for the fleet's names. Keeps the client key pair for the next ``up``.
        """
        with registry.locked(self.config.lock_file):
            try:
                state = registry.load(self.config.state_file)
            except FleetError:
                state = None
            configs = [self.config]
            if state and state.prefix != self.config.prefix:
                configs.append(FleetConfig.build(self.config.state_dir, state.subnet, state.prefix))
            for cfg in configs:
                self._teardown(cfg, state)

    def _teardown(self, cfg: FleetConfig, state: FleetState | None) -> None:
        recorded = [(r.pid, r.starttime) for r in (state.hosts if state else [])]
        for pid, start in recorded:
            processes.signal_verified(pid, start, signal.SIGKILL)
        groups = cgroups.host_groups(cfg)
        inodes = {inode for ns in network.netns_names(cfg) if (inode := network.netns_inode(ns))}
        victims = processes.in_netns(inodes) if inodes else []
        victims += [pid for group in groups for pid in cgroups.pids(group)]
        processes.kill_all(victims)
        stubborn = processes.wait_gone(victims + [pid for pid, _ in recorded if pid])
        if stubborn:
            raise FleetError(f"processes {stubborn} of fleet {cfg.prefix!r} did not exit after SIGKILL")
        host_dirs = self._host_dirs(cfg)
        mounts.detach_under(host_dirs)
        network.delete(cfg)
        cgroups.remove(groups)
        for host_dir in host_dirs:
            rootfs.remove_tree(host_dir)
        for path in (cfg.state_file, cfg.known_hosts, cfg.state_dir / "hosts"):
            try:
                path.rmdir() if path.name == "hosts" else path.unlink()
            except (FileNotFoundError, OSError):
                pass

    def _host_dirs(self, cfg: FleetConfig) -> list[Path]:
        hosts_dir = cfg.state_dir / "hosts"
        if not hosts_dir.is_dir():
            return []
        return sorted(p for p in hosts_dir.iterdir() if cfg.host_index(p.name) is not None)

    # -- sshd control --------------------------------------------------------

    def stop_sshd(self, name: str) -> None:
        """Stop one host's sshd (and its sessions); returns once its port refuses connections."""
        record = self._signal_init(name, signal.SIGUSR1)
        if not probe.wait_for(record.host.address, record.host.ssh_port, False, SSHD_TIMEOUT):
            raise FleetError(f"sshd of host {name} still answers {SSHD_TIMEOUT:.0f} s after it was told to stop")

    def start_sshd(self, name: str) -> None:
        """Start one host's sshd again; returns once it answers."""
        record = self._signal_init(name, signal.SIGUSR2)
        if not probe.wait_for(record.host.address, record.host.ssh_port, True, SSHD_TIMEOUT):
            raise FleetError(f"sshd of host {name} does not answer {SSHD_TIMEOUT:.0f} s after it was started; "
                             f"see {self.config.host_dir(name) / 'init.log'}")

    def _signal_init(self, name: str, sig: int) -> HostRecord:
        with registry.locked(self.config.lock_file):
            state = registry.load(self.config.state_file)
            if state is None:
                raise FleetError(f"no fleet recorded in {self.config.state_file}; run `labfleet fleet up` first")
            record = state.record(name)
            if not self._bridge_present():
                raise FleetError(f"bridge {self.config.bridge} of the fleet is gone; run `labfleet fleet down`")
            if not processes.signal_verified(record.pid, record.starttime, sig):
                raise FleetError(f"host {name} is not running (its init, pid {record.pid}, is gone); "
                                 "run `labfleet fleet down` and `up` again")
            return record
