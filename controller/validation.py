"""Request bodies validated against the protocol, before anything touches the database.

The protocol messages are standard dataclasses (``node_agent/protocol.py``);
here each becomes a strict pydantic model with the length and range limits
carried in the dataclass field metadata. Errors name the field.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from typing import Annotated, Any, TypeVar

import pydantic

from controller.errors import MalformedBody, ValidationFailed

T = TypeVar("T")

# Deeper than any message of the protocol needs (a state snapshot is about 6 levels); Python's
# decoder recurses per level and the database's JSON encoder again on the way in.
MAX_JSON_DEPTH = 32


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
        hint = _nested(hints[f.name])
        if f.metadata:
            hint = Annotated[hint, pydantic.Field(**dict(f.metadata))]
        fields[f.name] = (hint, default)
    return pydantic.create_model(cls.__name__, __config__=pydantic.ConfigDict(**config), **fields)


def _nested(hint: Any) -> Any:
    """A protocol dataclass inside a message (or a list of them) is validated by its own strict model.

    Pydantic's strict mode would otherwise want dataclass instances there, not JSON objects.
    """
    if dataclasses.is_dataclass(hint):
        return model_for(hint)
    if typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        return list[model_for(typing.get_args(hint)[0])]
    return hint


def parse(cls: type[T], data: Any, *, prefix: str = "") -> T:
    """Validate decoded JSON as ``cls``; raise ValidationFailed naming the first bad field."""
    try:
        model = model_for(cls).model_validate(data)
    except pydantic.ValidationError as exc:
        raise _failure(exc, prefix) from None
    return _as_dataclass(cls, model)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # Deriving them again on every request was a measurable share of a heartbeat's CPU.
    return typing.get_type_hints(cls)


def _as_dataclass(cls: type[T], model: pydantic.BaseModel) -> T:
    hints = _hints(cls)
    values = {}
    for name, value in model.__dict__.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, pydantic.BaseModel):
            value = _as_dataclass(hint, value)
        elif typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            value = [_as_dataclass(typing.get_args(hint)[0], item) for item in value]
        values[name] = value
    return cls(**values)


def decode_json(raw: bytes) -> Any:
    """JSON the database can store as given, or a 400 naming where it is not.

    Refused: nesting deeper than MAX_JSON_DEPTH (the decoder's recursion is a
    500 otherwise), NaN and infinities (PostgreSQL's JSON has neither), and
    NUL characters (PostgreSQL's text cannot hold them).
    """
    try:
        data = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise MalformedBody(f"body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except _NotFinite:
        data = json.loads(raw, parse_constant=_mark, parse_float=_mark_float)
    except ValueError:
        raise MalformedBody("body is not valid JSON") from None
    check_storable(data)
    return data


class _NotFinite(ValueError):
    pass


class _Marked:
    """A NaN or infinite number, kept in place so the check can name where it was."""


def _no_constant(name: str) -> Any:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _mark(name: str) -> _Marked:
    return _Marked()


def _mark_float(text: str) -> float | _Marked:
    value = float(text)
    return value if math.isfinite(value) else _Marked()


def check_storable(data: Any) -> None:
    """Walk decoded JSON without recursion; raise ValidationFailed at the first value we cannot keep."""
    stack: list[tuple[Any, tuple, int]] = [(data, (), 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _unstorable(path[:1], f"nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise _unstorable(path + (key.replace("\x00", ""),), "a key holds a NUL character")
                stack.append((item, path + (key,), depth + 1))
        elif isinstance(value, list):
            stack.extend((item, path + (i,), depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            if "\x00" in value:
                raise _unstorable(path, "text may not hold a NUL character")
        elif isinstance(value, _Marked):
            raise _unstorable(path, "NaN and infinite numbers are not JSON")


def _unstorable(path: tuple, why: str) -> ValidationFailed:
    # The first few levels name the field well enough; a 32-level path would be noise.
    shown = path[:4]
    field = ".".join(str(part) for part in shown) or None
    return ValidationFailed(f"{field or 'body'}: {why}", field=field)


def _failure(exc: pydantic.ValidationError, prefix: str) -> ValidationFailed:
    first = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in first["loc"])
    field = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or None)
    return ValidationFailed(f"{field or 'body'}: {first['msg']}", field=field)


def json_schema(cls: type) -> dict[str, Any]:
    return model_for(cls).model_json_schema(ref_template="#/components/schemas/{model}")
