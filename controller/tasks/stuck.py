"""The stuck-detection pass (scheduled by Celery beat every ``stuck_interval`` seconds)."""

from __future__ import annotations

from pathlib import Path

from celery import shared_task

from controller.runtime.app_state import app_state
from controller.stuck import store
from controller.stuck.labs import DEFAULT_LABS_DIR
from controller.stuck.rules import Rules


@shared_task(name="labfleet.stuck", ignore_result=True)
def stuck() -> dict:
    state = app_state()
    settings = state.settings
    with state.db.session() as session:
        report = store.run_pass(session, Rules.from_setting(settings.stuck_rules),
                                labs_dir=Path(settings.labs_dir) if settings.labs_dir else DEFAULT_LABS_DIR)
        session.commit()
    return report.as_dict()
