"""One database session per request: opened on first use, closed (rolled back on error) at teardown."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from controller.db import Database


def init_app(app: Flask, database: Database) -> None:
    app.extensions["labfleet.db"] = database
    app.teardown_appcontext(_close_request_session)


def get_db() -> Database:
    return current_app.extensions["labfleet.db"]


def get_session() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = get_db().sessions()
    return g.db_session


def release_session() -> None:
    """Close the request's session early (before a long-poll wait holds the thread)."""
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def _close_request_session(exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is None:
        return
    if exc is not None:
        session.rollback()
    session.close()
