"""Reading the request: its JSON body as a schema's dataclass, and its path and query text checked."""

from __future__ import annotations

from typing import TypeVar

from flask import request

from controller.errors import MalformedBody, ValidationFailed
from controller.validation import decode_json, parse

T = TypeVar("T")


def parse_body(cls: type[T]) -> T:
    """The request's JSON body as ``cls``, or a 400 that says what is wrong."""
    if not request.is_json:
        raise MalformedBody("body must be JSON (Content-Type: application/json)")
    return parse(cls, decode_json(request.get_data(cache=True)))


def check_request_text() -> None:
    """Path and query parameters go into SQL as text: a NUL is a 500 on PostgreSQL, so it is a 400 here.

    Installed as a ``before_request`` hook, so no view can forget it.
    """
    params = [*(request.view_args or {}).items(), *request.args.items(multi=True)]
    for name, value in params:
        if isinstance(value, str) and "\x00" in value:
            raise ValidationFailed(f"{name}: may not hold a NUL character", field=name)
