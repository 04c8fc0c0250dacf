"""The periodic sweep task (scheduled by Celery beat every ``sweep_interval``)."""

from __future__ import annotations

from celery import shared_task

from controller import sweep as sweep_service
from controller.runtime.app_state import app_state


@shared_task(name="labfleet.sweep", ignore_result=True)
def sweep() -> dict:
    state = app_state()
    with state.db.session() as session:
        report = sweep_service.sweep(session, missed_heartbeats=state.settings.offline_after_missed)
    return report.as_dict()
