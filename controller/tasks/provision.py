"""The provisioning task: run one stored ProvisionRun (JSON argument: its id, nothing else).

Idempotent: a run already finished is left alone, so a task redelivered after a
worker died does not provision twice; a run that was still running is run
again from its start, which Ansible's idempotence makes safe.
"""

from __future__ import annotations

from celery import shared_task

from controller.provision.execute import execute
from controller.runtime.app_state import app_state


@shared_task(name="labfleet.provision", ignore_result=True)
def provision(run_id: str) -> dict:
    return execute(app_state(), run_id).as_dict()


def enqueue(run_id: str, *, time_limit: int) -> None:
    """Queue the run with room beyond the provisioning time limit (ansible-runner enforces that one and
    stops Ansible cleanly; Celery's limits are the backstop, not the short default of other tasks)."""
    provision.apply_async(args=[run_id], time_limit=time_limit + 300, soft_time_limit=time_limit + 240)
