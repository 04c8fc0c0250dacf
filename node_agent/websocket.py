"""A small WebSocket client (RFC 6455) on the standard library, for the terminal relay.

The agent keeps to Python's standard library (README: its dependencies), so the
one connection it opens for a shared terminal is this: an HTTP/1.1 upgrade over
a plain or TLS socket (the same pinned context as every other request, see
tls.py), then masked frames out and unmasked frames in. Only what the relay
needs: text and binary messages, ping/pong, close; no extensions, no
fragmentation on send (received fragments are joined).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading
from pathlib import Path
from urllib.parse import urlsplit

from node_agent.tls import client_context

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 1 << 20  # what the controller may send in one message (a keystroke burst, a resize)


class WebSocketError(OSError):
    pass


class WebSocketRefused(WebSocketError):
    """The controller answered the upgrade with an HTTP status (401, 403, 404, ...)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the controller refused the terminal connection: HTTP {status}")
        self.status = status


class WebSocket:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._buffer = b""

    @classmethod
    def connect(cls, url: str, *, headers: dict[str, str], ca_file: Path | None = None,
                timeout: float = 10.0) -> WebSocket:
        parts = urlsplit(url)
        secure = parts.scheme in ("https", "wss")
        port = parts.port or (443 if secure else 80)
        host = parts.hostname or ""
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: socket.socket = raw
        try:
            if secure:
                sock = client_context(ca_file).wrap_socket(raw, server_hostname=host)
            key = base64.b64encode(os.urandom(16)).decode()
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Upgrade: websocket",
                     "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            ws = cls(sock)
            head = ws._read_until(b"\r\n\r\n", limit=16384)
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            fields = status_line.split(" ", 2)
            status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
            if status != 101:
                raise WebSocketRefused(status)
            answer = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
            expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            if answer.get("sec-websocket-accept") != expected:
                raise WebSocketError("the controller's WebSocket handshake did not match")
            sock.settimeout(None)
            return ws
        except BaseException:
            sock.close()
            raise

    # -- sending -------------------------------------------------------------------

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            self._frame(OP_TEXT, data.encode())
        else:
            self._frame(OP_BINARY, data)

    def _frame(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        mask = os.urandom(4)
        masked = _xor(payload, mask)
        with self._send_lock:
            self.sock.sendall(head + mask + masked)

    def close(self) -> None:
        try:
            self._frame(OP_CLOSE, struct.pack("!H", 1000))
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # -- receiving -----------------------------------------------------------------

    def recv(self) -> bytes | str | None:
        """The next message (str for text, bytes for binary); None once the other side closed."""
        parts: list[bytes] = []
        kind = OP_BINARY
        while True:
            first, second = self._read_exact(2)
            opcode, fin = first & 0x0F, first & 0x80
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._read_exact(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read_exact(8))
            if length > MAX_MESSAGE:
                raise WebSocketError(f"message of {length} bytes is too large")
            mask = self._read_exact(4) if second & 0x80 else b""
            payload = self._read_exact(length)
            if mask:
                payload = _xor(payload, mask)
            if opcode == OP_CLOSE:
                return None
            if opcode == OP_PING:
                self._frame(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode != OP_CONT:
                kind = opcode
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                return data.decode() if kind == OP_TEXT else data

    def _read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WebSocketError("the controller closed the terminal connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _read_until(self, marker: bytes, limit: int) -> bytes:
        while marker not in self._buffer:
            if len(self._buffer) > limit:
                raise WebSocketError("the controller's handshake answer is too long")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise WebSocketError("the controller closed the connection during the handshake")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(marker)
        return head


def _xor(payload: bytes, mask: bytes) -> bytes:
    """RFC 6455 masking, as one big-integer XOR (fast enough for a terminal's screenfuls)."""
    if not payload:
        return b""
    key = (mask * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(len(payload), "big")
