"""Instructor accounts for the web pages: passwords (argon2id), and how many wrong ones a caller may try.

The API keeps its bearer tokens (``controller/instructors.py``); a password
only opens the pages. Passwords are hashed with argon2-cffi's defaults
(argon2id, RFC 9106's low-memory profile) and re-hashed on login when those
defaults move. A generated password is shown once, then only its hash is kept.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from controller import audit
from controller.counters import FailureCounter, LocalCounter, RedisCounter
from controller.errors import Conflict, NotFound, ValidationFailed
from controller.models import ApiToken, Instructor, utcnow

_HASHER = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs the same time as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,119}$")
MIN_PASSWORD = 12
# Wrong logins allowed per (name, address) and window: a sixth try within the minute is refused.
LOGIN_FAILURES = 5
LOGIN_WINDOW = 60.0


def new_password() -> str:
    """A one-time password to read off a terminal: 16 characters, ~95 bits."""
    return secrets.token_urlsafe(12)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def session_key(instructor: Instructor) -> str:
    """What a login session holds besides the id: a new password (or a removal) ends every open session."""
    return hashlib.sha256((instructor.password_hash or "").encode()).hexdigest()[:16]


def _get(session: Session, name: str) -> Instructor | None:
    return session.scalar(select(Instructor).where(Instructor.name == name))


def _check_name(name: str) -> None:
    if not NAME.match(name):
        raise ValidationFailed("an instructor name is 1-120 letters, digits or . _ @ - (starting with a letter "
                               "or digit)", field="name")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed(f"a password has at least {MIN_PASSWORD} characters", field="password")


def add(session: Session, name: str, *, password: str | None = None, actor: str = "cli") -> str:
    """A new instructor (or a removed one back) with a password; returns the password (generated if None)."""
    _check_name(name)
    password = password or new_password()
    _check_password(password)
    instructor = _get(session, name)
    if instructor is not None and instructor.disabled_at is None and instructor.password_hash:
        raise Conflict(f"instructor {name!r} exists; change the password with `labfleet instructor passwd`",
                       field="name")
    if instructor is None:
        instructor = Instructor(name=name)
        session.add(instructor)
    instructor.password_hash = hash_password(password)
    instructor.disabled_at = None
    session.flush()
    audit.record(session, actor=actor, action="instructor.add", target=instructor.id, name=name)
    return password


def ensure_first(session: Session, name: str, *, actor: str = "cli:init") -> str | None:
    """`labfleet init`: a one-time password for ``name`` unless it has one already (then None)."""
    instructor = _get(session, name)
    if instructor is not None and instructor.password_hash and instructor.disabled_at is None:
        return None
    return add(session, name, actor=actor)


def set_password(session: Session, name: str, *, password: str | None = None, actor: str = "cli") -> str:
    """A new password for an existing instructor (generated if None); their open page sessions end."""
    instructor = _get(session, name)
    if instructor is None or instructor.disabled_at is not None:
        raise NotFound(f"no instructor named {name!r}", field="name")
    password = password or new_password()
    _check_password(password)
    instructor.password_hash = hash_password(password)
    audit.record(session, actor=actor, action="instructor.passwd", target=instructor.id, name=name)
    return password


def remove(session: Session, name: str, *, actor: str = "cli") -> int:
    """No more login nor API for ``name``: clears the password, revokes their API tokens (returns how many).

    The row stays, so the audit log's entries keep naming who did what.
    """
    instructor = _get(session, name)
    if instructor is None or instructor.disabled_at is not None:
        raise NotFound(f"no instructor named {name!r}", field="name")
    instructor.password_hash = None
    instructor.disabled_at = utcnow()
    revoked = session.execute(update(ApiToken).where(ApiToken.instructor_id == instructor.id,
                                                     ApiToken.revoked_at.is_(None))
                              .values(revoked_at=utcnow())).rowcount
    audit.record(session, actor=actor, action="instructor.remove", target=instructor.id, name=name,
                 tokens_revoked=revoked)
    return revoked


def listing(session: Session) -> list[Instructor]:
    return list(session.scalars(select(Instructor).order_by(Instructor.name)))


def authenticate(session: Session, name: str, password: str) -> Instructor | None:
    """The instructor whose password this is, or None; always spends one argon2 verification."""
    instructor = _get(session, name) if name else None
    usable = instructor is not None and instructor.disabled_at is None and bool(instructor.password_hash)
    try:
        _HASHER.verify(instructor.password_hash if usable else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if not usable:
        return None
    if _HASHER.check_needs_rehash(instructor.password_hash):
        instructor.password_hash = hash_password(password)
    return instructor


@dataclass
class LoginLimiter:
    """Wrong passwords per (name, client address): shared through Redis when there is one."""

    counter: FailureCounter
    limit: int = LOGIN_FAILURES

    @classmethod
    def from_redis_url(cls, redis_url: str) -> LoginLimiter:
        local = LocalCounter(window=LOGIN_WINDOW, max_keys=10_000)
        if redis_url:
            return cls(RedisCounter(redis_url, window=LOGIN_WINDOW, namespace="web-login", fallback=local))
        return cls(local)

    @staticmethod
    def _key(name: str, address: str) -> str:
        return hashlib.sha256(f"{name.lower()}\0{address}".encode()).hexdigest()[:32]

    def blocked_for(self, name: str, address: str) -> float:
        """Seconds until this name may be tried again from this address; 0 when it may now."""
        count, left = self.counter.count(self._key(name, address))
        return left if count >= self.limit else 0.0

    def failed(self, name: str, address: str) -> None:
        self.counter.hit(self._key(name, address))
