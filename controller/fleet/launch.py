"""Starting one host: its upper layer seeded, its cgroups, its init (``hostinit.py``) running.

The init is started in two steps so that it is in the host's cgroups before
it forks anything: stage 0 starts and blocks reading its config from stdin,
this side writes stage 0's PID into the host's cgroups, then sends the
config. Stage 0 forks PID 1 of the host (which inherits the cgroups), prints
its PID and exits; PID 1 is then adopted by the machine's init and outlives
the command that started it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from controller.fleet import cgroups, keys, network, rootfs
from controller.fleet.config import FleetConfig
from controller.fleet.errors import FleetError
from controller.fleet.host import FleetHost
from controller.fleet.processes import starttime
from controller.fleet.product_paths import PRODUCT_PATHS

HOSTINIT = Path(__file__).with_name("hostinit.py")
INIT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def seed(config: FleetConfig, host: FleetHost, index: int, all_hosts: list[tuple[str, str]],
         client_public_key: str) -> str:
    """Write the host's own files into its upper layer; returns its host public key."""
    host_dir = config.host_dir(host.name)
    upper = host_dir / "upper"
    rootfs.prepare(upper, host_dir / "work", host_dir / "root")
    for path in PRODUCT_PATHS:  # a host starts like a fresh VM, never with this machine's agent state
        rootfs.whiteout(upper, path)
    for path, content in rootfs.fresh_root_dotfiles().items():  # nor with this machine's root shell set-up
        rootfs.write(upper, path, content)
    key_path = host_dir / "ssh_host_ed25519_key"
    keys.generate(key_path, f"root@{host.name}")
    rootfs.write(upper, rootfs.HOST_KEY, key_path.read_text(), 0o600)
    rootfs.write(upper, rootfs.HOST_KEY + ".pub", keys.public_key(key_path) + "\n")
    rootfs.write(upper, rootfs.AUTHORIZED_KEYS, client_public_key + "\n")
    rootfs.write(upper, rootfs.SSHD_CONFIG, rootfs.sshd_config(host.address, host.ssh_port))
    rootfs.write(upper, "/etc/hostname", host.name + "\n")
    rootfs.write(upper, "/etc/hosts", rootfs.etc_hosts([("labfleet-controller", config.bridge_address),
                                                        *all_hosts]))
    return keys.public_key(key_path)


def start_init(config: FleetConfig, host: FleetHost, index: int) -> tuple[int, int]:
    """Start the host's PID 1; returns its PID and start time as the machine sees them."""
    host_dir = config.host_dir(host.name)
    leaves = cgroups.create(config, host.name)
    stage0 = subprocess.Popen([sys.executable, "-I", str(HOSTINIT)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=INIT_ENV, text=True,
                              start_new_session=True, cwd="/")
    try:
        cgroups.attach(leaves, stage0.pid)
        out, err = stage0.communicate(json.dumps(_init_config(config, host, index, host_dir)), timeout=30)
    except BaseException:
        stage0.kill()
        stage0.wait()
        raise
    if stage0.returncode != 0 or not out.strip().isdigit():
        raise FleetError(f"host {host.name}: its init did not start: {err.strip() or out.strip()}")
    pid = int(out.strip())
    start = starttime(pid)
    if start is None:
        log = host_dir / "init.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise FleetError(f"host {host.name}: its init exited at once; {log}:\n{tail}")
    return pid, start


def _init_config(config: FleetConfig, host: FleetHost, index: int, host_dir: Path) -> dict:
    return {
        "hostname": host.name,
        "netns": host.netns,
        "network": network.host_side_commands(config, index),
        "root": str(host_dir / "root"),
        "upper": str(host_dir / "upper"),
        "work": str(host_dir / "work"),
        "log": str(host_dir / "init.log"),
        "hide": [str(config.state_dir)],
        "sshd_config": rootfs.SSHD_CONFIG,
    }
