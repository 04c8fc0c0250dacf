"""A Debian 12 VM under QEMU for the tests: the cached image, one boot per test module, SSH on loopback.

The image (``scripts/vm-image.sh``) is built once per machine and cached under
``LABFLEET_VM_CACHE`` (default ``/var/cache/labfleet/vm``), keyed by a hash of
its recipe. Each boot writes to a qcow2 overlay of it, so the cached image is
never changed. The guest is on QEMU's user-mode network with ``restrict=on``:
it reaches nothing outside QEMU except the two forwards set here — its sshd on
``127.0.0.1:<ssh_port>`` of this machine, and ``10.0.2.100:8300`` inside the
guest to ``127.0.0.1:<controller_port>`` here (a ``nc`` per connection).
Root's key is made per session and passed as a public key on the kernel
command line; a unit in the image installs it before sshd starts.
TCG by default (``LABFLEET_VM_ACCEL=kvm`` on a machine where KVM guests run).
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import REPO, Proc, free_port, wait_until

CONTROLLER_ADDRESS = "10.0.2.100"  # the controller as the guest sees it (a guestfwd)
CONTROLLER_GUEST_PORT = 8300


def image_dir() -> Path:
    """The cached image's folder, built now if this machine has none for the current recipe."""
    cache = os.environ.get("LABFLEET_VM_CACHE", "/var/cache/labfleet/vm")
    done = subprocess.run(["bash", str(REPO / "scripts" / "vm-image.sh"), cache], capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, f"vm-image.sh failed:\n{done.stderr[-4000:]}"
    return Path(done.stdout.strip().splitlines()[-1])


@dataclass
class DebianVM:
    """One boot of the image; ``stop`` ends QEMU by its PID."""

    image: Path
    work: Path
    controller_port: int
    ssh_port: int = field(default_factory=free_port)
    memory_mb: int = 2048
    cpus: int = 2
    proc: Proc | None = None

    @property
    def key(self) -> Path:
        return self.work / "root.key"

    @property
    def known_hosts(self) -> Path:
        return self.work / "known_hosts"

    @property
    def console(self) -> Path:
        return self.work / "console.log"

    def start(self) -> DebianVM:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labfleet-vm-test", "-f",
                        str(self.key)], check=True, capture_output=True, timeout=30)
        public = base64.b64encode(self.key.with_suffix(".key.pub").read_bytes().strip()).decode()
        overlay = self.work / "disk.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(self.image / "rootfs.img"),
                        str(overlay)], check=True, capture_output=True, timeout=60)
        accel = os.environ.get("LABFLEET_VM_ACCEL", "tcg")
        netdev = (f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,"
                  f"guestfwd=tcp:{CONTROLLER_ADDRESS}:{CONTROLLER_GUEST_PORT}-cmd:nc 127.0.0.1 {self.controller_port}")
        argv = ["qemu-system-x86_64", "-machine", f"q35,accel={accel}", "-cpu", "max", "-smp", str(self.cpus),
                "-m", str(self.memory_mb), "-nographic", "-monitor", "none", "-serial", f"file:{self.console}",
                "-kernel", str(self.image / "vmlinuz"), "-initrd", str(self.image / "initrd.img"),
                "-append", f"root=/dev/vda rw console=ttyS0 labfleet.ssh_key={public}",
                "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe",
                "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"]
        self.proc = Proc("qemu", argv, dict(os.environ), self.work / "qemu.log").start()
        try:
            wait_until(self.ssh_ready, timeout=300, interval=2, what="the VM's sshd")
        except BaseException:
            self.stop()
            raise
        return self

    def ssh_ready(self) -> bool:
        if self.proc is not None and not self.proc.alive():
            raise AssertionError(f"QEMU exited:\n{self.proc.log()[-2000:]}\n{self.console_tail()}")
        try:
            return self.ssh("true", timeout=30).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def ssh(self, command: str, *, user: str = "root", timeout: float = 120,
            key: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-i", str(key or self.key), "-o", f"UserKnownHostsFile={self.known_hosts}",
             "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
             "-o", "ControlMaster=no", "-p", str(self.ssh_port), f"{user}@127.0.0.1", command],
            capture_output=True, text=True, timeout=timeout)

    def ssh_ok(self, command: str, **kwargs) -> str:
        done = self.ssh(command, **kwargs)
        assert done.returncode == 0, f"VM: {command!r} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr}"
        return done.stdout

    def console_tail(self) -> str:
        return self.console.read_text(errors="replace")[-3000:] if self.console.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=10)
