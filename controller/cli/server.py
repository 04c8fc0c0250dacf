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
            "proc_name": "labfleet-web",
            # One controller per data dir, several per machine in tests: no shared control socket.
            "control_socket_disable": True,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def _dispose_inherited_pool(server, worker) -> None:
    # Connections opened before the fork must not be shared with the parent.
    worker.app.application.extensions["labfleet.db"].engine.dispose(close=False)


def run_worker(app: Flask, *, beat: bool, concurrency: int, loglevel: str) -> None:
    celery_app = app.extensions["celery"]
    argv = ["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}", "--without-gossip",
            "--without-mingle"]
    if beat:
        argv.append("--beat")
    celery_app.worker_main(argv)
