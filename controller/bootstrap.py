"""First-time setup of a controller's data directory (``labfleet init``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controller import db as db_module
from controller import enrollment, events, instructors
from controller.cli.client import Credentials
from controller.settings import Settings


@dataclass
class Initialized:
    settings: Settings
    database: str
    api_token: str
    enrollment_token: str
    credentials_path: Path


def initialize(settings: Settings, *, instructor: str, enroll_uses: int) -> Initialized:
    """Migrate the database, create the default event, an instructor API token and an enrollment token.

    Running it again is safe: it adds a new API token and enrollment token and
    keeps everything else.
    """
    settings.ensure_data_dir()
    settings.load_secret_key()
    database = db_module.database_for(settings)
    try:
        database.upgrade()
        with database.session() as session:
            event = events.get_or_create(session)
            _, api_token = instructors.create_with_token(session, name=instructor)
            _, enroll_token = enrollment.create_token(
                session, event=event, created_by=f"instructor:{instructor}", ttl=settings.enrollment_token_ttl,
                label="init", uses=enroll_uses,
            )
    finally:
        database.dispose()
    path = Credentials(url=settings.base_url, token=api_token).save(settings.data_dir)
    shown_url = database.engine.url.render_as_string(hide_password=True)
    return Initialized(settings, shown_url, api_token, enroll_token, path)
