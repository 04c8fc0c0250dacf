"""SSH rescue tasks (JSON arguments only): run one stored rescue, and the beat's silent-agent check.

``labfleet.rescue`` is idempotent: a run no longer pending is left alone, so a
redelivered task never rescues twice. ``labfleet.rescue_silent`` (every
``rescue_check_interval`` seconds, when ``rescue_silent_after`` > 0) makes a
rescue of the nodes silent past that threshold that were not tried within
``rescue_retry_after`` seconds, and queues it.
"""

from __future__ import annotations

import math

from celery import shared_task

from controller.rescue import service
from controller.runtime.app_state import app_state


@shared_task(name="labfleet.rescue", ignore_result=True)
def rescue(run_id: str) -> dict:
    return service.run(app_state(), run_id)


@shared_task(name="labfleet.rescue_silent", ignore_result=True)
def rescue_silent() -> dict:
    state = app_state()
    settings = state.settings
    if settings.rescue_silent_after <= 0:
        return {"disabled": True}
    with state.db.session() as session:
        run = service.auto_rescue(session, silent_after=settings.rescue_silent_after,
                                  retry_after=settings.rescue_retry_after)
        run_id = run.id if run else None
        count = len(service.host_rows(session, run_id)) if run_id else 0
    if run_id:
        enqueue(run_id, host_count=count)
    return {"rescue": run_id}


def enqueue(run_id: str, *, host_count: int) -> None:
    """Queue a run; Celery's time limit covers its hosts in waves of ``rescue_parallel``."""
    settings = app_state().settings
    waves = math.ceil(max(host_count, 1) / settings.rescue_parallel)
    limit = int(waves * settings.rescue_host_timeout + 60)
    rescue.apply_async(args=[run_id], time_limit=limit + 30, soft_time_limit=limit)
