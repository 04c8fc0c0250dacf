"""The Alembic history builds exactly the schema the models describe, on either backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from controller.db import Database, alembic_config
from controller.models import Base


def test_migrations_match_the_models(database_url):
    db = Database(database_url)
    try:
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        db.dispose()
    assert diff == [], "models changed without a migration in controller/migrations/versions"


def test_upgrading_twice_changes_nothing(database_url):
    db = Database(database_url)
    try:
        db.upgrade()  # already at head (the fixture migrated it): a no-op, not an error
        with db.engine.connect() as connection:
            head = ScriptDirectory.from_config(alembic_config(db.engine)).get_current_head()
            assert MigrationContext.configure(connection).get_current_revision() == head
    finally:
        db.dispose()
