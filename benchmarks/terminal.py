"""Shared terminal on a local-fleet host: keystroke-to-screen through the browser relay vs a direct SSH
session, and many terminals open at once against the heartbeat p99.

``python -m benchmarks.terminal [--keys 200] [--terminals 50] [--seconds 15]``   (as root, under
``flock /tmp/labfleet-kernel-tests.lock``)

One fresh local fleet host (namespaces, real sshd) is provisioned for real (``labfleet provision
--driver netns`` against a TLS controller: gunicorn on the fleet's bridge and a Celery worker), with
the attendee's SSH key; attendee A is seated on it with an access code.

- latency, same host, same tmux session, same run:
  **relay**: a keystroke sent as a browser sends it (WebSocket, the attendee's signed-in cookie) to
  the controller, relayed to the host's agent, written into the attendee's tmux session (``lab``),
  echoed back the same way; **ssh**: ``ssh -tt class@host`` in a pseudo-terminal of this machine
  (the attendee's login lands in the same tmux session), a keystroke written to it and its echo read
  back. Each: the time from the write until the typed character comes back. Printed: p50/p95 of
  both and the ratio of the p95s (goal, issue 13: <= 2x).
- load: ``--terminals`` more nodes, each with its attendee's WebSocket and a relay open, one
  keystroke a second each for ``--seconds``; their agent ends are this process's own
  ``TerminalService`` (the agent's module) on a bash in a pty — not fleet hosts, which would need
  one provisioned host each. The controller's CPU (web processes and the Celery worker, from /proc)
  and web RSS, and the heartbeat p99 (one agent's heartbeats every 50 ms from a process of its own,
  as the agent sends them) for ``--seconds`` without the terminals and again with them open and
  typing — the host's own agent beats throughout.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fcntl
import html.parser
import http.client
import http.cookiejar
import json
import multiprocessing
import os
import pty
import select
import shutil
import ssl
import struct
import sys
import tempfile
import termios
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from benchmarks.common import TempDirs, children_of, create_enroll_token, percentile, print_header
from node_agent.terminal import TerminalService
from node_agent.websocket import WebSocket

ATTENDEE = "class"
GOAL = 2.0
KEYS = "abcdefghijklmnopqrstuvwxyz"


class _Csrf(html.parser.HTMLParser):
    token = ""

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "input" and values.get("name") == "csrf_token":
            self.token = values.get("value") or ""


def _urlopen(ctl, request, timeout: float = 15):
    return urllib.request.urlopen(request, timeout=timeout, context=ctl.ssl_context())


def _enroll(ctl, name: str) -> dict:
    body = json.dumps({"enrollment_token": create_enroll_token(ctl, 1), "machine_id": uuid.uuid4().hex,
                       "machine_secret": "s", "name": name, "hostname": name, "agent_version": "bench"}).encode()
    request = urllib.request.Request(f"{ctl.url}/api/agent/v1/enroll", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with _urlopen(ctl, request) as response:
        return json.loads(response.read())


def _attendee_cookie(ctl, email: str, code: str) -> str:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar),
                                         urllib.request.HTTPSHandler(context=ctl.ssl_context()))
    parser = _Csrf()
    with opener.open(f"{ctl.url}/attendee/terminal", timeout=10) as response:
        parser.feed(response.read().decode())
    form = urllib.parse.urlencode({"csrf_token": parser.token, "email": email, "code": code}).encode()
    # Over HTTPS the CSRF check also wants the Referer a browser sends.
    opener.open(urllib.request.Request(f"{ctl.url}/attendee/terminal", data=form, method="POST",
                                       headers={"Referer": f"{ctl.url}/attendee/terminal", "Origin": ctl.url}),
                timeout=10)
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def _browser(ctl, email: str, code: str) -> WebSocket:
    cookie = _attendee_cookie(ctl, email, code)
    return WebSocket.connect(ctl.url + "/attendee/terminal/ws", headers={"Cookie": cookie, "Origin": ctl.url},
                             ca_file=ctl.ca_file)


def _open(ctl, node: dict, service: TerminalService) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"{ctl.url}/api/agent/v1/nodes/{node['node_id']}/commands?wait=2&resync=1",
            headers={"Authorization": f"Bearer {node['node_token']}"})
        with _urlopen(ctl, request) as response:
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


def _codes(ctl) -> dict[str, str]:
    return {row["email"]: row["access_code"] for row in
            ctl.api("POST", "/api/v1/attendees/credentials", {})["credentials"] if row["access_code"]}


def seat(ctl, count: int, prefix: str) -> list[tuple[WebSocket, TerminalService]]:
    """``count`` nodes whose agent end is a TerminalService here (bash in a pty), each with its browser."""
    nodes = [_enroll(ctl, f"{prefix}-{i}") for i in range(count)]
    csv = "name,email\n" + "".join(f"A{i},{prefix}{i}@example.org\n" for i in range(count))
    ctl.api("POST", "/api/v1/attendees/import", {"csv": csv})
    for i, node in enumerate(nodes):
        ctl.api("POST", "/api/v1/attendees/assign", {"attendee": f"{prefix}{i}@example.org", "node": node["name"]})
    codes = _codes(ctl)
    seated = []
    for i, node in enumerate(nodes):
        service = TerminalService(
            controller_url=ctl.url, ca_file=ctl.ca_file, attendee_user=os.environ.get("USER", "root"),
            credentials=lambda n=node: (n["node_id"], n["node_token"]),
            argv=["bash", "--norc", "--noprofile", "-i"], tmux_command=lambda args: None)
        email = f"{prefix}{i}@example.org"
        ws = _browser(ctl, email, codes[email])
        _open(ctl, node, service)
        ws.send(json.dumps({"t": "in", "data": "PS1='$ '\r"}))
        _wait_output(ws, b"$ ")
        seated.append((ws, service))
    return seated


def relay_latency(ws: WebSocket, keys: int) -> list[float]:
    out = []
    for i in range(keys):
        key = KEYS[i % 26]
        started = time.perf_counter()
        ws.send(json.dumps({"t": "in", "data": key}))
        _wait_output(ws, key.encode())
        out.append(time.perf_counter() - started)
    ws.send(json.dumps({"t": "in", "data": "\x15"}))  # Ctrl-U: clear the line
    return out


def _read_until(fd: int, needle: bytes, timeout: float) -> None:
    seen, deadline = b"", time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"{needle!r} never came back over SSH; last output {seen[-300:]!r}")
        if select.select([fd], [], [], left)[0]:
            seen += os.read(fd, 65536)


def ssh_latency(host, keys: int) -> list[float]:
    """``ssh -tt class@host`` in a pty of this machine: the attendee's login, in the same tmux session."""
    argv = ["ssh", "-tt", "-i", host.private_key_path, "-o", f"UserKnownHostsFile={host.known_hosts_path}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
            "-o", "ControlPath=none", "-p", str(host.ssh_port), f"{ATTENDEE}@{host.address}"]
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm-256color"
        os.execvp("ssh", argv)
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        os.write(fd, b"echo ssh-ready-$((20+22))\r")
        _read_until(fd, b"ssh-ready-42", 30)
        if termios.tcgetattr(fd)[3] & termios.ECHO:  # ssh puts its terminal in raw mode: no local echo
            raise RuntimeError("the local pty still echoes: the measurement would not cross SSH")
        time.sleep(0.5)
        while select.select([fd], [], [], 0.2)[0]:
            os.read(fd, 65536)
        out = []
        for i in range(keys):
            key = KEYS[i % 26].encode()
            started = time.perf_counter()
            os.write(fd, key)
            _read_until(fd, key, 10)
            out.append(time.perf_counter() - started)
        os.write(fd, b"\x15")
        return out
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)


def heartbeats(base_url: str, ca_file: str | None, node_id: str, token: str, seconds: float,
               interval: float = 0.05) -> list[float]:
    """One agent's heartbeats on a kept-alive connection, every ``interval``: each one's latency."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=10, context=ssl.create_default_context(cafile=ca_file))
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    path = f"/api/agent/v1/nodes/{node_id}/heartbeat"
    out: list[float] = []
    seq = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and seq < 100_000:
        seq += 1
        started = time.perf_counter()
        conn.request("POST", path, body=json.dumps({"seq": seq, "digest": ""}), headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"heartbeat answered {response.status}")
        if seq > 1:  # the first one pays the TLS handshake
            out.append(time.perf_counter() - started)
        time.sleep(max(0.0, interval - (time.perf_counter() - started)))
    conn.close()
    return out


def _controller_usage(ctl) -> tuple[float, int]:
    """CPU seconds of the web processes and the Celery worker, and the web processes' RSS in bytes."""
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    cpu, rss = 0.0, 0
    web = [ctl.web.pid, *children_of(ctl.web.pid)]
    worker = getattr(ctl, "worker", None)
    others = [worker.pid, *children_of(worker.pid)] if worker is not None else []
    for pid in web + others:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / ticks
            if pid in web:
                rss += int(open(f"/proc/{pid}/statm").read().split()[1]) * page
        except OSError:
            continue
    return cpu, rss


def _ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:.2f} ms"


def run(ctl, host, args, pool) -> None:
    from tests.processes import wait_until
    from tests.provision.conftest import labfleet

    started = time.monotonic()
    done = labfleet(ctl, "provision", "--driver", "netns", timeout=900)
    if done.returncode != 0:
        raise RuntimeError("provision failed:\n" + done.stdout[-3000:] + done.stderr[-2000:])
    wait_until(lambda: ctl.nodes().get(host.name, {}).get("state") == "online", timeout=120,
               what="the provisioned agent online")
    print(f"provisioned {host.name} in {time.monotonic() - started:.0f} s", flush=True)
    ctl.api("POST", "/api/v1/attendees/import", {"csv": "name,email\nAttendee,attendee@example.org\n"})
    ctl.api("POST", "/api/v1/attendees/assign", {"attendee": "attendee@example.org", "node": host.name})
    code = _codes(ctl)["attendee@example.org"]

    ws = _browser(ctl, "attendee@example.org", code)
    time.sleep(2)  # the agent's terminal.open, the tmux session's first screen
    ws.send(json.dumps({"t": "in", "data": "echo relay-ready-$((20+22))\r"}))
    _wait_output(ws, b"relay-ready-42", timeout=30)
    time.sleep(0.5)
    relay = relay_latency(ws, args.keys)
    ws.close()
    time.sleep(1)  # the relay ends: the SSH login is then the session's only client, as the browser was
    direct = ssh_latency(host, args.keys)
    ratio = percentile(relay, 95) / percentile(direct, 95)
    print(f"keystroke→screen through the browser relay (WebSocket → controller → agent → tmux): "
          f"p50 {_ms(relay, 50)}, p95 {_ms(relay, 95)}", flush=True)
    print(f"keystroke→screen over ssh -tt {ATTENDEE}@{host.name} (same host, same tmux session): "
          f"p50 {_ms(direct, 50)}, p95 {_ms(direct, 95)}", flush=True)
    print(f"ratio of the p95s: {ratio:.2f}x (goal <= {GOAL:.0f}x: {'MET' if ratio <= GOAL else 'NOT MET'})",
          flush=True)

    beat = _enroll(ctl, "heartbeat-probe")
    beat_args = (ctl.url, str(ctl.ca_file) if ctl.ca_file else None, beat["node_id"], beat["node_token"],
                 args.seconds)
    cpu0, rss0 = _controller_usage(ctl)
    t0 = time.monotonic()
    quiet = pool.submit(heartbeats, *beat_args).result(timeout=args.seconds + 120)
    cpu_quiet = (_controller_usage(ctl)[0] - cpu0) / (time.monotonic() - t0) * 100

    t_seat = time.monotonic()
    seated = seat(ctl, args.terminals, "load")
    seat_seconds = time.monotonic() - t_seat
    cpu1, rss1 = _controller_usage(ctl)
    t1 = time.monotonic()
    busy_future = pool.submit(heartbeats, *beat_args)
    ticks = 0
    while time.monotonic() - t1 < args.seconds and ticks < 3600:  # one keystroke a second per terminal
        ticks += 1
        tick = time.monotonic()
        for ws_load, _service in seated:
            ws_load.send(json.dumps({"t": "in", "data": "x"}))
        for ws_load, _service in seated:
            _wait_output(ws_load, b"x")
        time.sleep(max(0.0, 1 - (time.monotonic() - tick)))
    busy = busy_future.result(timeout=args.seconds + 120)
    cpu2, rss2 = _controller_usage(ctl)
    cpu_busy = (cpu2 - cpu1) / (time.monotonic() - t1) * 100
    print(f"controller CPU (web + Celery worker): {cpu_quiet:.1f} % of a core without terminals, "
          f"{cpu_busy:.1f} % with {args.terminals} open and typing (one keystroke/s each); "
          f"seating them took {seat_seconds:.0f} s", flush=True)
    print(f"controller web RSS: {rss0 / 2**20:.0f} MiB without terminals → {rss2 / 2**20:.0f} MiB with "
          f"{args.terminals} open", flush=True)
    print(f"heartbeat latency ({len(quiet)} / {len(busy)} beats): without terminals p50 {_ms(quiet, 50)}, "
          f"p99 {_ms(quiet, 99)}; with {args.terminals} open p50 {_ms(busy, 50)}, p99 {_ms(busy, 99)}; "
          f"p99 ratio {percentile(busy, 99) / percentile(quiet, 99):.2f}x", flush=True)
    for ws_load, service in seated:
        ws_load.close()
        service.close_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--terminals", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0, help="heartbeat window, without and with the load")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("fleet hosts need root", file=sys.stderr)
        return 2
    print_header("labfleet benchmark: shared terminal", args)
    from tests.fleet.conftest import new_fleet
    from tests.provision.conftest import provisioning_controller

    root = Path(tempfile.mkdtemp(prefix="lf-bench-terminal-"))
    fleet = new_fleet(root / "fleet")
    pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        (host,) = fleet.up(1)
        attendee_key = Path(host.private_key_path + ".pub").read_text().strip()
        env = {"LABFLEET_PROVISION_EXTRA_VARS": json.dumps({"labfleet_attendee_ssh_keys": [attendee_key]})}
        with provisioning_controller(TempDirs(root), f"sqlite:///{root / 'labfleet.sqlite'}",
                                     queue_prefix="lfbenchterm", fleet=fleet, extra_env=env) as ctl:
            run(ctl, host, args, pool)
    finally:
        pool.shutdown()
        fleet.down()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
