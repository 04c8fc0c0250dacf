"""Instructor accounts and their API tokens."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.models import ApiToken, Instructor
from controller.tokens import API_TOKEN_PREFIX, hash_token, new_token


def create_with_token(session: Session, *, name: str, label: str = "cli") -> tuple[Instructor, str]:
    """Create the instructor if missing and give them a new API token (returned once, in clear)."""
    instructor = session.scalar(select(Instructor).where(Instructor.name == name))
    if instructor is None:
        instructor = Instructor(name=name)
        session.add(instructor)
        session.flush()
    token = new_token(API_TOKEN_PREFIX)
    session.add(ApiToken(instructor_id=instructor.id, token_hash=hash_token(token), label=label))
    session.flush()
    return instructor, token
