"""Shared terminal: keystroke-to-screen latency through the relay, and many terminals open at once.

``python -m benchmarks.terminal [--keys 200] [--terminals 50]``

- latency: a keystroke sent as a browser sends it (WebSocket, signed-in attendee cookie) to a real
  controller (gunicorn), relayed to the agent's TerminalService (its own WebSocket), written to an
  interactive bash in a pty, echoed back the same way; against the floor measured in the same run:
  the same bash in a pty written and read directly (what any terminal costs without labfleet).
  Printed: p50/p95 of both and the ratio of the p95s.
- load: ``--terminals`` nodes, each with its attendee's browser and relay open, one keystroke a
  second each; the web process's CPU and RSS (from /proc) before and during.

No root, no fleet host: the shell is this machine's own account (docs/benchmarks.md says what the
SSH comparison of the issue would add).
"""

from __future__ import annotations

import argparse
import html.parser
import http.cookiejar
import json
import os
import pty
import select
import time
import urllib.parse
import urllib.request
import uuid

from benchmarks.common import bench_controller, children_of, create_enroll_token, percentile
from node_agent.terminal import TerminalService
from node_agent.websocket import WebSocket


class _Csrf(html.parser.HTMLParser):
    token = ""

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "input" and values.get("name") == "csrf_token":
            self.token = values.get("value") or ""


def _enroll(ctl, name: str) -> dict:
    body = json.dumps({"enrollment_token": create_enroll_token(ctl, 1), "machine_id": uuid.uuid4().hex,
                       "machine_secret": "s", "name": name, "hostname": name, "agent_version": "bench"}).encode()
    request = urllib.request.Request(f"{ctl.url}/api/agent/v1/enroll", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _attendee_cookie(ctl, email: str, code: str) -> str:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    parser = _Csrf()
    with opener.open(f"{ctl.url}/attendee/terminal", timeout=10) as response:
        parser.feed(response.read().decode())
    form = urllib.parse.urlencode({"csrf_token": parser.token, "email": email, "code": code}).encode()
    opener.open(urllib.request.Request(f"{ctl.url}/attendee/terminal", data=form, method="POST"), timeout=10)
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def _open(ctl, node: dict, service: TerminalService) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"{ctl.url}/api/agent/v1/nodes/{node['node_id']}/commands?wait=2&resync=1",
            headers={"Authorization": f"Bearer {node['node_token']}"})
        with urllib.request.urlopen(request, timeout=15) as response:
            for command in json.loads(response.read())["commands"]:
                if command["kind"] == "terminal.open":
                    service.open(command["args"]["session"])
                    return
    raise RuntimeError("terminal.open never reached the agent")


def _wait_output(ws: WebSocket, needle: bytes, timeout: float = 10.0) -> None:
    seen = b""
    ws.sock.settimeout(timeout)
    while needle not in seen:
        message = ws.recv()
        if message is None:
            raise RuntimeError("closed")
        if isinstance(message, bytes):
            seen += message


def seat(ctl, count: int, prefix: str) -> list[tuple[WebSocket, TerminalService]]:
    nodes = [_enroll(ctl, f"{prefix}-{i}") for i in range(count)]
    csv = "name,email\n" + "".join(f"A{i},{prefix}{i}@example.org\n" for i in range(count))
    ctl.api("POST", "/api/v1/attendees/import", {"csv": csv})
    for i, node in enumerate(nodes):
        ctl.api("POST", "/api/v1/attendees/assign", {"attendee": f"{prefix}{i}@example.org", "node": node["name"]})
    codes = {row["email"]: row["access_code"] for row in
             ctl.api("POST", "/api/v1/attendees/credentials", {})["credentials"] if row["access_code"]}
    seated = []
    for i, node in enumerate(nodes):
        service = TerminalService(
            controller_url=ctl.url, ca_file=None, attendee_user=os.environ.get("USER", "root"),
            credentials=lambda n=node: (n["node_id"], n["node_token"]),
            argv=["bash", "--norc", "--noprofile", "-i"], tmux_command=lambda args: None)
        email = f"{prefix}{i}@example.org"
        cookie = _attendee_cookie(ctl, email, codes[email])
        ws = WebSocket.connect(ctl.url + "/attendee/terminal/ws", headers={"Cookie": cookie, "Origin": ctl.url})
        _open(ctl, node, service)
        ws.send(json.dumps({"t": "in", "data": "PS1='$ '\r"}))
        _wait_output(ws, b"$ ")
        seated.append((ws, service))
    return seated


def relay_latency(ws: WebSocket, keys: int) -> list[float]:
    out = []
    for i in range(keys):
        key = "abcdefghijklmnopqrstuvwxyz"[i % 26]
        started = time.perf_counter()
        ws.send(json.dumps({"t": "in", "data": key}))
        _wait_output(ws, key.encode())
        out.append(time.perf_counter() - started)
    ws.send(json.dumps({"t": "in", "data": "\x15"}))  # Ctrl-U: clear the line
    return out


def direct_latency(keys: int) -> list[float]:
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
    try:
        os.write(fd, b"PS1='$ '\r")
        time.sleep(0.5)
        while select.select([fd], [], [], 0.1)[0]:
            os.read(fd, 65536)
        out = []
        for i in range(keys):
            key = "abcdefghijklmnopqrstuvwxyz"[i % 26].encode()
            started = time.perf_counter()
            os.write(fd, key)
            seen = b""
            while key not in seen:
                select.select([fd], [], [], 5)
                seen += os.read(fd, 65536)
            out.append(time.perf_counter() - started)
        return out
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)


def _web_usage(ctl) -> tuple[float, int]:
    """CPU seconds and RSS bytes of the web processes (gunicorn master and workers)."""
    pids = [ctl.web.pid, *children_of(ctl.web.pid)]
    cpu, rss = 0.0, 0
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / ticks
            rss += int(open(f"/proc/{pid}/statm").read().split()[1]) * page
        except OSError:
            continue
    return cpu, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--terminals", type=int, default=50)
    args = parser.parse_args()
    with bench_controller() as ctl:
        (ws, service), = seat(ctl, 1, "one")
        relay = relay_latency(ws, args.keys)
        direct = direct_latency(args.keys)
        p95_relay, p95_direct = percentile(relay, 95), percentile(direct, 95)
        print(f"keystroke→screen through the relay: p50 {percentile(relay, 50) * 1000:.2f} ms, "
              f"p95 {p95_relay * 1000:.2f} ms")
        print(f"keystroke→screen, the same bash in a pty directly: p50 {percentile(direct, 50) * 1000:.2f} ms, "
              f"p95 {p95_direct * 1000:.2f} ms")
        print(f"ratio of the p95s: {p95_relay / p95_direct:.1f}x")
        ws.close()
        service.close_all()

        cpu0, rss0 = _web_usage(ctl)
        t0 = time.monotonic()
        seated = seat(ctl, args.terminals, "load")
        for _ in range(10):  # ten seconds of one keystroke a second per terminal
            for ws, _service in seated:
                ws.send(json.dumps({"t": "in", "data": "x"}))
            for ws, _service in seated:
                _wait_output(ws, b"x")
            time.sleep(1)
        cpu1, rss1 = _web_usage(ctl)
        elapsed = time.monotonic() - t0
        print(f"{args.terminals} terminals open (seat + 10 s of a keystroke/s each): web CPU "
              f"{(cpu1 - cpu0) / elapsed * 100:.1f} % of a core over {elapsed:.0f} s, RSS {rss0 / 2**20:.0f} MiB "
              f"→ {rss1 / 2**20:.0f} MiB")
        for ws, service in seated:
            ws.close()
            service.close_all()


if __name__ == "__main__":
    main()
