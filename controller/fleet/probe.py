"""Does a host's sshd answer? A TCP connect to its address and the ``SSH-`` banner (RFC 4253, 4.2)."""

from __future__ import annotations

import socket
import time


def sshd_answers(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def wait_for(address: str, port: int, answering: bool, timeout: float) -> bool:
    """Poll until the sshd's answering state is ``answering``; False if ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    while True:
        if sshd_answers(address, port, timeout=0.5) == answering:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
