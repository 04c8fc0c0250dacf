"""First-time setup of a controller's data directory (``labfleet init``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from controller import db as db_module
from controller import enrollment, events, instructors, tls, web_accounts
from controller.credentials import Credentials
from controller.settings import Settings


@dataclass
class Initialized:
    settings: Settings
    database: str
    api_token: str
    enrollment_token: str
    credentials_path: Path
    # None: no certificate was made (--no-tls, or the operator's own LABFLEET_TLS_CERT / LABFLEET_TLS_CA).
    tls: tls.Issued | None = None
    # The first instructor's one-time password for the web pages; None when they have one already.
    web_password: str | None = None


def initialize(settings: Settings, *, instructor: str, enroll_uses: int, make_tls: bool = True,
               tls_names: Iterable[str] = ()) -> Initialized:
    """Migrate the database, create the default event, an instructor API token and an enrollment token,
    and (unless told not to) the room's CA and the controller's certificate.

    Running it again is safe: it adds a new API token and enrollment token, keeps
    the CA, re-issues the server certificate only if a name is missing, and keeps
    everything else.
    """
    settings.ensure_data_dir()
    settings.load_secret_key()
    issued = tls.ensure_certificates(settings, tls_names) if make_tls else None
    database = db_module.database_for(settings)
    try:
        database.upgrade()
        with database.session() as session:
            event = events.get_or_create(session)
            _, api_token = instructors.create_with_token(session, name=instructor)
            web_password = web_accounts.ensure_first(session, instructor)
            _, enroll_token = enrollment.create_token(
                session, event=event, created_by=f"instructor:{instructor}", ttl=settings.enrollment_token_ttl,
                label="init", uses=enroll_uses,
            )
    finally:
        database.dispose()
    path = Credentials(url=_cli_url(settings), token=api_token).save(settings.data_dir)
    shown_url = database.engine.url.render_as_string(hide_password=True)
    return Initialized(settings, shown_url, api_token, enroll_token, path, issued, web_password)


def _cli_url(settings: Settings) -> str:
    # A controller listening on every address is reached by the CLI on its own machine over loopback,
    # a name its certificate always has (0.0.0.0 is not an address a certificate can be for).
    if not settings.public_url and settings.host in ("0.0.0.0", "::"):
        return settings.base_url.replace(f"//{settings.host}:", "//127.0.0.1:", 1)
    return settings.base_url
