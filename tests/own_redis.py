"""A redis-server of the test's own, on a spare loopback port in a temporary folder, killed by PID.

Tests that restart Redis or cut its connections use this one, never the shared server the
rest of the suite uses. ``HalfOpenProxy`` sits between a client and it and can stop relaying
bytes on the connections it holds without closing them: what a NAT that forgot a connection,
or a Redis host that vanished, looks like to the client.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.processes import free_port, wait_until

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class OwnRedis:
    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        log = open(self.folder / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_until(self.answers, timeout=10, interval=0.05, what=f"own redis-server on port {self.port}")
        return self

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL by PID: a crash, not a shutdown (nothing saved, every connection reset)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()


class HalfOpenProxy:
    """A TCP relay to ``port``; ``freeze()`` stops relaying on the connections open now, keeping them open."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._generation = 0
        self._frozen: set[int] = set()
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> None:
        self._frozen.update(range(self._generation + 1))
        self._generation += 1

    def close(self) -> None:
        self._closed = True
        for s in [self._server, *self._sockets]:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                return
            self._sockets += [client, upstream]
            generation = self._generation
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, generation), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, generation: int) -> None:
        source.settimeout(0.1)
        while not self._closed:
            if generation in self._frozen:
                time.sleep(0.1)  # hold the socket, move nothing: half-open
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            if generation in self._frozen:
                continue  # arrived as it froze: lost on the way, as on a dead link
            try:
                sink.sendall(data)
            except OSError:
                return
