"""One remote ``/bin/sh`` per host that runs every rescue step's command in turn.

An SSH exec request starts the user's login shell with ``-c``; a bash built to read ``~/.bashrc``
for SSH commands (Debian's) runs it every time, and a host's rc file can be slow (``pyenv init``
took about 115 ms a command on the fleet's machine). So the rescue opens ONE exec channel on the
Fabric connection's transport, running ``exec /bin/sh`` (the rc file is read once, never again),
and writes each step's command to its stdin, followed by a line that prints a per-session random
tag and the command's exit status. The output up to that line is the command's output. The tag is
random so that nothing a command prints (an attendee's log line) can end a step early.
Each command runs in a subshell, stdin from /dev/null, stderr into stdout.
"""

from __future__ import annotations

import secrets
import time

import paramiko


class ShellTimeout(Exception):
    """A command did not finish within its time bound (the shell is closed then)."""


class ShellClosed(Exception):
    """The remote shell ended before a command finished."""


class RemoteShell:
    def __init__(self, transport: paramiko.Transport, *, timeout: float) -> None:
        self._tag = "@@labfleet-rescue-" + secrets.token_hex(8) + "@@"
        self._channel = transport.open_session(timeout=timeout)
        self._channel.set_combine_stderr(True)
        self._channel.exec_command("exec /bin/sh")
        self._buffer = b""

    def run(self, command: str, *, timeout: float) -> tuple[int, str]:
        """Run ``command`` (POSIX sh) and return (exit status, output)."""
        script = f"( {command}\n) </dev/null 2>&1\nprintf '\\n%s %d\\n' '{self._tag}' $?\n"
        self._channel.sendall(script.encode())
        marker = ("\n" + self._tag + " ").encode()
        deadline = time.monotonic() + timeout
        while True:
            at = self._buffer.find(marker)
            if at >= 0:
                end = self._buffer.find(b"\n", at + len(marker))
                if end >= 0:
                    output = self._buffer[:at].decode("utf-8", "replace")
                    code = int(self._buffer[at + len(marker):end].decode() or "255")
                    self._buffer = self._buffer[end + 1:]
                    return code, output
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise ShellTimeout(f"command did not finish within {timeout:.0f} s")
            self._channel.settimeout(remaining)
            try:
                chunk = self._channel.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ShellClosed("the remote shell ended (exit "
                                  f"{self._channel.recv_exit_status() if self._channel.exit_status_ready() else '?'})")
            self._buffer += chunk

    def close(self) -> None:
        try:
            self._channel.close()
        except Exception:  # noqa: BLE001 - closing a dead channel
            pass
