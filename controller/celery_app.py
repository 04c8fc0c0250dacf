"""Celery, bound to the Flask app the way Flask's own Celery example does it.

JSON only (docs/architecture.md: a pickle message from anyone who can reach the
broker would be code execution on the worker). Redis when ``redis_url`` is
set; otherwise kombu's filesystem transport in the data directory, which needs
no service at all, so a one-box demo runs on a bare machine.
"""

from __future__ import annotations

from datetime import timedelta

from celery import Celery, Task
from flask import Flask

from controller.settings import Settings


def celery_config(settings: Settings) -> dict:
    config: dict = {
        "broker_url": settings.broker_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": max(settings.task_time_limit - 30, 1),
        "task_ignore_result": True,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.celery_queue,
        "beat_schedule": {
            "sweep": {"task": "labfleet.sweep", "schedule": timedelta(seconds=settings.sweep_interval),
                      "options": {"expires": settings.sweep_interval * 2}},
            "stuck": {"task": "labfleet.stuck", "schedule": timedelta(seconds=settings.stuck_interval),
                      "options": {"expires": settings.stuck_interval * 2}},
            "rescue-silent": {"task": "labfleet.rescue_silent",
                              "schedule": timedelta(seconds=settings.rescue_check_interval),
                              "options": {"expires": settings.rescue_check_interval * 2}},
        },
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),
    }
    if not settings.redis_url:
        queue = settings.broker_dir / "queue"
        processed = settings.broker_dir / "processed"
        control = settings.broker_dir / "control"  # kombu's default is relative to the cwd
        for folder in (queue, processed, control):
            folder.mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            "data_folder_in": str(queue), "data_folder_out": str(queue),
            "processed_folder": str(processed), "store_processed": False, "control_folder": str(control),
        }
    return config


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    settings: Settings = app.extensions["labfleet"].settings
    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_config(settings))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    import controller.tasks.provision  # noqa: F401
    import controller.tasks.rescue  # noqa: F401
    import controller.tasks.stuck  # noqa: F401
    import controller.tasks.sweep  # noqa: F401  (registers the shared tasks)

    return celery_app
