"""Numbers from a request's query string, bounded, with a 400 that names the parameter."""

from __future__ import annotations

from flask import request

from controller.errors import ValidationFailed


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name}: expected an integer", field=name) from None
    return _bounded(name, value, low, high)


def seconds_arg(name: str, *, default: float, low: float, high: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationFailed(f"{name}: expected a number of seconds, got {raw!r}", field=name) from None
    return _bounded(name, value, low, high)


def _bounded(name: str, value, low, high):
    if not low <= value <= high:
        shown = (f"{low:g}", f"{high:g}") if isinstance(low, float) else (str(low), str(high))
        raise ValidationFailed(f"{name}: must be between {shown[0]} and {shown[1]}", field=name)
    return value
