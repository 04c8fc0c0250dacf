"""Running the controller's processes: the web app under gunicorn, the Celery worker."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from controller.settings import Settings


class GunicornServer(BaseApplication):
    """gunicorn with threaded workers: each long-poll holds a thread, idle keep-alives do not."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.application = app
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "bind": f"{s.host}:{s.port}",
            "workers": s.web_processes,
            "worker_class": "gthread",
            "threads": s.web_threads,
            # Longer than the longest long-poll, so agents keep their connection.
            "keepalive": int(s.poll_wait_max) + 20,
            "timeout": 60,
            "graceful_timeout": 5,
            "backlog": 2048,
            "worker_connections": 4096,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": s.log_level.lower(),
            "post_fork": _dispose_inherited_pool,
            "child_exit": _worker_exited,
            "proc_name": "labfleet-web",
            # One controller per data dir, several per machine in tests: no shared control socket.
            "control_socket_disable": True,
            # gunicorn's own X-Forwarded-Proto trust (127.0.0.1 by default) follows LABFLEET_TRUSTED_PROXIES
            # too: one rule for every forwarding header (controller/api/proxies.py).
            "forwarded_allow_ips": ",".join(str(n) for n in s.trusted_proxy_networks),
        }
        if s.serves_tls:
            options.update(_tls_options(s))
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def _tls_options(settings: Settings) -> dict[str, Any]:
    """gunicorn's certfile/keyfile, and a context of our own: TLS 1.2+ only, built once per process.

    Loading the files here first makes a missing or mismatched key a one-line error before gunicorn starts.
    """
    from controller.tls import server_context

    cert, key = settings.tls_cert_file, settings.tls_key_file
    assert cert is not None and key is not None
    server_context(cert, key)
    built: list = []

    def ssl_context(config, default_factory):
        if not built:  # gunicorn asks for a context per connection; the files are read once per worker
            built.append(server_context(cert, key))
        return built[0]

    return {"certfile": str(cert), "keyfile": str(key), "ssl_context": ssl_context}


def _dispose_inherited_pool(server, worker) -> None:
    # Connections opened before the fork must not be shared with the parent.
    worker.app.application.extensions["labfleet.db"].engine.dispose(close=False)


def _worker_exited(server, worker) -> None:
    from controller.runtime.metrics import worker_exited

    worker_exited(worker.pid)


def run_worker(app: Flask, *, beat: bool, concurrency: int, loglevel: str) -> None:
    celery_app = app.extensions["celery"]
    argv = ["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}", "--without-gossip",
            "--without-mingle"]
    if beat:
        argv.append("--beat")
    celery_app.worker_main(argv)
