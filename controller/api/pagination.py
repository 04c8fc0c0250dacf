"""One way to page every list of the instructor API: ``?limit=`` and an opaque ``?cursor=``.

Keyset paging: the cursor holds the sort key of the last row sent, and the
next page starts after it, so rows added while a client pages (audit entries,
nodes enrolling) never shift a page or repeat a row. Every answer carries
``next``: the cursor of the following page, or null on the last one.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import request
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from controller.api.query_args import int_arg
from controller.errors import ValidationFailed

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_CURSOR_CHARS = 2048


@dataclass(frozen=True)
class Key:
    """One column of a page's sort order; the last key of an order must be unique."""

    column: Any
    descending: bool = False

    def ordering(self):
        return self.column.desc() if self.descending else self.column.asc()

    def after(self, value):
        return self.column < value if self.descending else self.column > value


@dataclass
class Page:
    items: list[Any]
    next: str | None

    def body(self, name: str, **extra: Any) -> dict[str, Any]:
        return {**extra, name: self.items, "next": self.next}


def page(session: Session, query: Select, keys: Sequence[Key], *, default_limit: int = DEFAULT_LIMIT) -> Page:
    """The page of ``query`` the request asks for (``limit``, ``cursor``), in ``keys`` order.

    Items are what the query selects: the entity for a one-entity select,
    else the row.
    """
    limit = int_arg("limit", default_limit, 1, MAX_LIMIT)
    width = len(query.column_descriptions)
    query = query.add_columns(*(key.column for key in keys))
    cursor = request.args.get("cursor")
    if cursor:
        query = query.where(_after(keys, _decode(cursor, keys)))
    rows = session.execute(query.order_by(*(key.ordering() for key in keys)).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [row[0] if width == 1 else tuple(row[:width]) for row in rows]
    return Page(items, _encode(rows[-1][width:]) if more else None)


def _after(keys: Sequence[Key], values: list[Any]):
    """Rows past ``values`` in the keys' order (each key ascending or descending on its own)."""
    alternatives = []
    for i, key in enumerate(keys):
        equal = [keys[j].column == values[j] for j in range(i)]
        alternatives.append(and_(*equal, key.after(values[i])))
    return or_(*alternatives)


def _encode(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(cursor: str, keys: Sequence[Key]) -> list[Any]:
    bad = ValidationFailed("cursor: not a cursor this list gave out (pass its 'next' as it was)", field="cursor")
    if len(cursor) > MAX_CURSOR_CHARS:
        raise bad
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(values, list) or len(values) != len(keys):
        raise bad
    decoded = []
    for key, value in zip(keys, values, strict=True):
        column_type = key.column.type
        # A TypeDecorator (UTCDateTime) says "object"; the type it wraps says what comes back.
        python_type = getattr(column_type, "impl_instance", column_type).python_type
        decoded.append(_typed(python_type, value, bad))
    return decoded


def _typed(expected: type, value: Any, bad: ValidationFailed) -> Any:
    """A cursor value of the column's type, or the 400: a forged cursor must not reach SQL as a 500."""
    if expected is datetime and isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise bad from None
        if value.tzinfo is None:
            raise bad
        return value
    if expected is int and type(value) is int and -(2**63) <= value < 2**63:
        return value
    if expected is str and isinstance(value, str) and "\x00" not in value:
        return value
    raise bad
