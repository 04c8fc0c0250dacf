"""Request bodies validated against the protocol, before anything touches the database.

The protocol messages are standard dataclasses (``node_agent/protocol.py``);
here each becomes a strict pydantic model with the length and range limits
carried in the dataclass field metadata. Errors name the field.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Annotated, Any, TypeVar

import pydantic
from flask import request

from controller.errors import MalformedBody, ValidationFailed

T = TypeVar("T")


@functools.cache
def model_for(cls: type) -> type[pydantic.BaseModel]:
    """A strict pydantic model mirroring a protocol dataclass (cached)."""
    config = dict(getattr(cls, "__pydantic_config__", {"strict": True}))
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        default: Any = ...
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = pydantic.Field(default_factory=f.default_factory)
        hint = hints[f.name]
        if f.metadata:
            hint = Annotated[hint, pydantic.Field(**dict(f.metadata))]
        fields[f.name] = (hint, default)
    return pydantic.create_model(cls.__name__, __config__=pydantic.ConfigDict(**config), **fields)


def parse(cls: type[T], data: Any, *, prefix: str = "") -> T:
    """Validate decoded JSON as ``cls``; raise ValidationFailed naming the first bad field."""
    try:
        model = model_for(cls).model_validate(data)
    except pydantic.ValidationError as exc:
        raise _failure(exc, prefix) from None
    # The model's own attribute dict: a shallow copy is all a flat protocol message needs.
    return cls(**model.__dict__)


def parse_body(cls: type[T]) -> T:
    """The request's JSON body as ``cls``, or a 400 that says what is wrong."""
    if not request.is_json:
        raise MalformedBody("body must be JSON (Content-Type: application/json)")
    data = request.get_json(silent=True)
    if data is None:
        raise MalformedBody("body is not valid JSON")
    return parse(cls, data)


def _failure(exc: pydantic.ValidationError, prefix: str) -> ValidationFailed:
    first = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in first["loc"])
    field = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or None)
    return ValidationFailed(f"{field or 'body'}: {first['msg']}", field=field)


def json_schema(cls: type) -> dict[str, Any]:
    return model_for(cls).model_json_schema(ref_template="#/components/schemas/{model}")
