"""Shared fixtures: a real controller app on a real database, per test.

``LABFLEET_TEST_DATABASE=postgresql`` runs the suite on PostgreSQL (a fresh
database per test, copied from a migrated template); the default is a fresh
SQLite file per test. Nothing here is a mock.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller import enrollment, events, instructors
from controller.app import create_app
from controller.db import Database
from controller.settings import Settings, settings_for_tests
from tests import attendee_share
from tests.openapi_check import ResponseChecker

PG_ADMIN_URL = os.environ.get("LABFLEET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("LABFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
BACKEND = os.environ.get("LABFLEET_TEST_DATABASE", "sqlite")


@pytest.fixture(scope="session", autouse=True)
def _attendee_share() -> Iterator[None]:
    """The attendee's readable copies (tests/attendee_share.py) go with the session that made them."""
    yield
    attendee_share.remove()


def pytest_report_header(config):
    return f"labfleet database backend: {BACKEND}"


class PostgresDatabases:
    """Creates a migrated template once, then one database per test from it (fast copy)."""

    def __init__(self) -> None:
        from sqlalchemy import create_engine

        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.template = f"labfleet_tpl_{uuid.uuid4().hex[:8]}"
        self._execute(f'CREATE DATABASE "{self.template}"')
        template_db = Database(self._url(self.template))
        template_db.upgrade()
        template_db.dispose()
        self.created: list[str] = []

    def _url(self, name: str) -> str:
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    def _execute(self, sql: str) -> None:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            conn.execute(text(sql))

    def new(self) -> str:
        name = f"labfleet_test_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return self._url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases | None]:
    if BACKEND != "postgresql":
        yield None
        return
    dbs = PostgresDatabases()
    yield dbs
    dbs.close()


@pytest.fixture
def database_url(postgres_databases, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database for this test only."""
    if postgres_databases is None:
        url = f"sqlite:///{tmp_path / 'labfleet.sqlite'}"
        db = Database(url)
        db.upgrade()
        db.dispose()
        yield url
        return
    url = postgres_databases.new()
    yield url
    postgres_databases.drop(url)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return settings_for_tests(tmp_path / "data", database_url=database_url, heartbeat_interval=1.0)


@pytest.fixture
def app(settings: Settings):
    """The controller; every answer it gives in the test must match /api/openapi.json (tests/openapi_check.py)."""
    app = create_app(settings)
    checker = app.extensions["response_checker"] = ResponseChecker.install(app)
    yield app
    state = app.extensions["labfleet"]
    state.heartbeats.close()
    state.db.dispose()
    problems = checker.take_problems()
    assert not problems, "answers off /api/openapi.json:\n" + "\n".join(problems)


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class Seed:
    """Credentials made directly in the database, as ``labfleet init`` would."""

    api_token: str
    app: object

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}

    def enrollment_token(self, *, ttl: float = 600, uses: int = 1) -> str:
        db = self.app.extensions["labfleet"].db
        with db.session() as session:
            _, token = enrollment.create_token(session, event=events.get_or_create(session),
                                               created_by="instructor:test", ttl=ttl, uses=uses)
        return token


@pytest.fixture
def seed(app) -> Seed:
    with app.extensions["labfleet"].db.session() as session:
        events.get_or_create(session)
        _, token = instructors.create_with_token(session, name="test-instructor")
    return Seed(api_token=token, app=app)


@dataclass
class EnrolledNode:
    id: str
    name: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def enroll(client, seed):
    """Enroll a node over the real HTTP API; returns its id, name and node token."""

    def _enroll(name: str, machine_id: str | None = None, secret: str = "machine-secret") -> EnrolledNode:
        response = client.post("/api/agent/v1/enroll", json={
            "enrollment_token": seed.enrollment_token(), "machine_id": machine_id or uuid.uuid4().hex,
            "machine_secret": secret, "name": name, "hostname": name, "agent_version": "test",
        })
        assert response.status_code == 200, response.json
        body = response.json
        return EnrolledNode(body["node_id"], body["name"], body["node_token"])

    return _enroll
