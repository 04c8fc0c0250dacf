"""Who may try an enrollment token, after how many failures: per address and per token prefix.

A room enrolls from behind one NAT address, so successes are never limited,
and one attendee's mistakes must not lock the room out:

- Per token prefix (the first 10 characters, ``lfe_`` and 6 random ones), all
  addresses together: after ``per_prefix`` failures in the window that prefix
  is refused (429, field ``enrollment_token``). Guessing the rest of one token,
  from however many addresses, gets that many tries per window.
- Per address: after ``per_address`` failures in the window the address is
  refused (429), except for a prefix that belongs to a live enrollment token:
  a scanner trying made-up tokens is stopped, while the room next to it,
  holding the real token, keeps enrolling (and is bounded by the prefix rule).

Counts live in Redis when it is configured (every web process sees them), else
in the process; both expire with their window and are bounded in number.
See docs/security.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from controller.errors import TooManyRequests
from controller.ratelimit import FailureCounter, LocalCounter, RedisCounter
from controller.settings import Settings

PREFIX_CHARS = 10  # what EnrollmentToken.prefix stores and the instructor sees in `enroll-token list`
WINDOW_SECONDS = 60.0


def token_prefix(token: str) -> str:
    return token[:PREFIX_CHARS]


class EnrollGuard:
    def __init__(self, counter: FailureCounter, *, per_address: int, per_prefix: int) -> None:
        self.counter = counter
        self._per_address = per_address
        self._per_prefix = per_prefix

    @classmethod
    def from_settings(cls, settings: Settings) -> EnrollGuard:
        local = LocalCounter(window=WINDOW_SECONDS, max_keys=settings.enroll_limiter_max_keys)
        counter: FailureCounter = local
        if settings.redis_url:
            counter = RedisCounter(settings.redis_url, window=WINDOW_SECONDS, namespace=_namespace(settings),
                                   fallback=local)
        return cls(counter, per_address=settings.enroll_failures_per_minute,
                   per_prefix=settings.enroll_failures_per_prefix)

    def check(self, address: str, token: str, *, prefix_is_live: Callable[[str], bool]) -> None:
        """Raise 429 if this address or this token's prefix has used up its failures."""
        prefix = token_prefix(token)
        failures, retry = self.counter.count(_prefix_key(prefix))
        if failures >= self._per_prefix:
            raise TooManyRequests(f"enrollment_token: too many failed enrollments with a token starting "
                                  f"{prefix!r}; retry in {retry:.0f}s", field="enrollment_token")
        failures, retry = self.counter.count(_address_key(address))
        if failures >= self._per_address and not prefix_is_live(prefix):
            raise TooManyRequests(f"too many failed enrollments from {address}; retry in {retry:.0f}s")

    def failed(self, address: str, token: str) -> None:
        self.counter.hit(_address_key(address))
        self.counter.hit(_prefix_key(token_prefix(token)))


def _address_key(address: str) -> str:
    return f"addr:{address}"


def _prefix_key(prefix: str) -> str:
    # Hashed: a key is bounded in length and never holds what a caller typed.
    return "prefix:" + hashlib.sha256(prefix.encode()).hexdigest()[:32]


def _namespace(settings: Settings) -> str:
    """Controllers sharing one Redis (tests side by side, two events) count apart: one per database."""
    from sqlalchemy.engine import make_url

    database = make_url(settings.sqlalchemy_url).set(password=None).render_as_string(hide_password=True)
    return "enroll-" + hashlib.sha256(database.encode()).hexdigest()[:16]
