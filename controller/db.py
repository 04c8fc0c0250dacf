"""The database's life: engine, sessions, schema migrations.

SQLite (WAL) is the one-box default; PostgreSQL when ``database_url`` says so.
The schema is created and upgraded only through Alembic, once, by
``labfleet db upgrade`` (or ``labfleet init``); ``serve`` and ``worker`` refuse an old one
(``controller/migrations``), never with ``create_all``, so a room's PostgreSQL
and a laptop's SQLite file follow the same history.
See docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from controller.settings import Settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class SchemaOutOfDate(RuntimeError):
    """The database's schema is not the one this code was written for."""


class Database:
    """An engine and its session factory, built once per process from settings."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20, sqlite_pool: int = 100) -> None:
        self.url = url
        if url.startswith("sqlite"):
            # SQLite connections are files, not server sessions: keep enough open that a fan-out
            # waking hundreds of long-polls reuses them instead of reopening one per request.
            self.engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=sqlite_pool,
                max_overflow=1000,
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=3600,
                                        pool_timeout=60)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success, rolled back on error, always closed."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (``labfleet db upgrade``, ``labfleet init``)."""
        alembic_command.upgrade(alembic_config(self.engine), "head")

    def schema_revisions(self) -> tuple[set[str], set[str]]:
        """(the revisions the database is at, the newest this code knows)."""
        script = ScriptDirectory.from_config(alembic_config(self.engine))
        with self.engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
        return current, set(script.get_heads())

    def require_current_schema(self) -> None:
        """Refuse to serve on a schema older (or newer) than this code's: migrations run once, by
        ``labfleet db upgrade``, not by every ``serve`` and ``worker`` racing at start."""
        current, head = self.schema_revisions()
        if current != head:
            shown = self.engine.url.render_as_string(hide_password=True)
            at = ", ".join(sorted(current)) or "empty (no labfleet tables)"
            raise SchemaOutOfDate(
                f"the database {shown} is at schema revision {at}; this labfleet needs {', '.join(sorted(head))}. "
                "Run `labfleet db upgrade` once (with the same settings), then start serve and the workers.")

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the web process read while the worker writes; NORMAL is durable
    # across application crashes, which is what we need (the OS stays up).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def database_for(settings: Settings) -> Database:
    if not settings.database_url:
        settings.ensure_data_dir()
    return Database(settings.sqlalchemy_url, pool_size=settings.db_pool_size,
                    max_overflow=settings.db_max_overflow, sqlite_pool=settings.web_threads)
