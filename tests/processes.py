"""Real controller, worker and agent processes for end-to-end tests, stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    give_up = time.monotonic() + timeout
    last = None
    while time.monotonic() < give_up:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}")


@dataclass
class Proc:
    """One child process with its log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                      cwd=REPO, start_new_session=True)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the process and everything in its session (gunicorn and celery fork workers)."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10) -> int | None:
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Controller:
    """A controller (web + optional worker) on a free loopback port, with its own data dir.

    ``tls`` (the default): ``init`` makes the data dir's room CA and certificate, ``serve`` listens
    with them, and every client here (health, API, agents given ``ca_file``) pins that CA, as in a room.
    ``tls=False`` is plain HTTP (``init --no-tls``): agents then need ``insecure_http=True``.
    """

    data_dir: Path
    database_url: str
    redis_url: str
    port: int = field(default_factory=free_port)
    heartbeat_interval: float = 1.0
    sweep_interval: float = 0.5
    extra_env: dict[str, str] = field(default_factory=dict)
    tls: bool = True
    web: Proc | None = None
    worker: Proc | None = None
    api_token: str = ""
    enrollment_token: str = ""

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path | None:
        """The CA agents and the CLI pin: the room CA ``labfleet init`` made, or LABFLEET_TLS_CA; None without TLS."""
        if not self.tls:
            return None
        operators = self.extra_env.get("LABFLEET_TLS_CA")
        return Path(operators) if operators else self.data_dir / "tls" / "ca.crt"

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABFLEET_")}
        env.update({
            "LABFLEET_DATA_DIR": str(self.data_dir), "LABFLEET_DATABASE_URL": self.database_url,
            "LABFLEET_REDIS_URL": self.redis_url, "LABFLEET_PORT": str(self.port),
            "LABFLEET_HEARTBEAT_INTERVAL": str(self.heartbeat_interval),
            "LABFLEET_SWEEP_INTERVAL": str(self.sweep_interval), "LABFLEET_SECRET_KEY": "e2e-secret",
            "LABFLEET_REDELIVER_AFTER": "5", "LABFLEET_WEB_THREADS": "64",
            **self.extra_env,
        })
        return env

    def init(self, *, enroll_uses: int = 50, extra_args: tuple[str, ...] = ()) -> str:
        """``labfleet init``; returns what it printed."""
        argv = [sys.executable, "-m", "controller.cli.main", "init", "--enroll-uses", str(enroll_uses), *extra_args]
        out = subprocess.run(argv + ([] if self.tls else ["--no-tls"]), env=self.env(), cwd=REPO,
                             capture_output=True, text=True, timeout=60, check=True)
        creds = json.loads((self.data_dir / "cli.json").read_text())
        self.api_token = creds["token"]
        line = next(line for line in out.stdout.splitlines() if line.startswith("Enrollment token"))
        self.enrollment_token = line.rsplit(" ", 1)[1]
        return out.stdout

    def start_web(self) -> None:
        self.web = Proc("web", [sys.executable, "-m", "controller.cli.main", "serve"], self.env(),
                        self.data_dir / "web.log").start()
        try:
            wait_until(self.healthy, timeout=30, what=f"controller health on {self.url}")
        except BaseException:
            self.web.stop()  # a fixture that fails here never reaches its own teardown
            raise

    def start_worker(self, *, beat: bool = True) -> None:
        argv = [sys.executable, "-m", "controller.cli.main", "worker", "--concurrency", "1"]
        argv.append("--beat" if beat else "--no-beat")
        self.worker = Proc("worker", argv, self.env(), self.data_dir / "worker.log").start()

    def healthy(self) -> bool:
        if self.web is not None and not self.web.alive():
            raise AssertionError(f"controller exited:\n{self.web.log()[-3000:]}")
        try:
            with urllib.request.urlopen(self.url + "/api/health", timeout=1, context=self.ssl_context()):
                return True
        except OSError:
            return False

    def api(self, method: str, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.api_token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30, context=self.ssl_context()) as response:
            return json.loads(response.read())

    def nodes(self) -> dict[str, dict]:
        return {n["name"]: n for n in self.api("GET", "/api/v1/nodes")["nodes"]}

    def stop(self) -> None:
        for proc in (self.worker, self.web):
            if proc is not None:
                proc.stop()


@dataclass
class Agent:
    name: str
    state_dir: Path
    proc: Proc | None = None

    def start(self, controller_url: str, enroll_token: str, *, max_backoff: float = 2.0,
              config_file: Path | None = None, ca_file: Path | None = None, insecure_http: bool = False) -> Agent:
        """``ca_file``: the CA to pin (a TLS controller's ``ca_file``); ``insecure_http`` for an http:// one."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABFLEET_")}
        env["LABFLEET_AGENT_ENROLL_TOKEN"] = enroll_token
        argv = [sys.executable, "-m", "node_agent", "run", "--controller", controller_url, "--state-dir",
                str(self.state_dir), "--name", self.name, "--max-backoff", str(max_backoff),
                "--log-format", "text"]
        if config_file is not None:
            argv += ["--config", str(config_file)]
        if ca_file is not None:
            argv += ["--ca-file", str(ca_file)]
        if insecure_http:
            argv.append("--insecure-http")
        self.proc = Proc(self.name, argv, env, self.state_dir.parent / f"{self.name}.log").start()
        return self

    def executed_ids(self) -> list[str]:
        path = self.state_dir / "executed.log"
        return path.read_text().split() if path.exists() else []
