"""The built-in checkers, solvers and resetters that lab files name by ``kind``.

Each is registered with its parameter dataclass; ``decode_params`` turns a lab
file's TOML table into that dataclass, refusing unknown keys and wrong types
with the key named, so a typo in a lab file fails at load, not mid-workshop.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROLES = ("check", "solve", "reset")


@dataclass(frozen=True)
class Builtin:
    role: str
    kind: str
    params_type: type
    fn: Callable[..., Any]


REGISTRY: dict[str, dict[str, Builtin]] = {role: {} for role in ROLES}


def _register(role: str, kind: str, params_type: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if not dataclasses.is_dataclass(params_type):
        raise TypeError(f"{role} {kind}: parameters must be a dataclass, got {params_type!r}")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if kind in REGISTRY[role]:
            raise ValueError(f"{role} kind {kind!r} is registered twice")
        REGISTRY[role][kind] = Builtin(role, kind, params_type, fn)
        return fn

    return register


def checker(kind: str, params_type: type):
    """Register ``fn(ctx, params) -> CheckResult`` as the checker ``kind``."""
    return _register("check", kind, params_type)


def solver(kind: str, params_type: type):
    """Register ``fn(ctx, params) -> dict`` (evidence of what it did) as the solver ``kind``."""
    return _register("solve", kind, params_type)


def resetter(kind: str, params_type: type):
    """Register ``fn(ctx, params) -> ResetReport`` as the resetter ``kind``."""
    return _register("reset", kind, params_type)


def lookup(role: str, kind: str) -> Builtin | None:
    _load_builtins()
    return REGISTRY[role].get(kind)


def kinds(role: str) -> list[str]:
    _load_builtins()
    return sorted(REGISTRY[role])


_loaded = False


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from node_agent.labs import builtins

        builtins.load_all()


class ParamError(ValueError):
    """A parameter table that does not fit the dataclass: ``key`` is the offending key."""

    def __init__(self, key: str, expected: str, got: Any = None) -> None:
        self.key, self.expected, self.got = key, expected, got
        super().__init__(f"{key}: expected {expected}" + ("" if got is None else f", got {got!r}"))


def decode_params(params_type: type, table: dict[str, Any]) -> Any:
    """``params_type(**table)`` with every key and type checked."""
    hints = typing.get_type_hints(params_type)
    fields = {f.name: f for f in dataclasses.fields(params_type)}
    for key in table:
        if key not in fields:
            raise ParamError(key, f"one of {', '.join(sorted(fields)) or '(no parameters)'}", "unknown key")
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in table:
            if required:
                raise ParamError(name, f"a value of type {_type_name(hints[name])}", "missing")
            continue
        _check_type(name, hints[name], table[name])
    return params_type(**table)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_type(key: str, tp: Any, value: Any) -> None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return
        for option in options:
            if option is type(None):
                continue
            try:
                _check_type(key, option, value)
                return
            except ParamError:
                pass
        raise ParamError(key, _type_name(tp), value)
    if origin in (list, tuple):
        (item_type, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ParamError(key, f"a list of {_type_name(item_type)}", value)
        for i, item in enumerate(value):
            _check_type(f"{key}[{i}]", item_type, item)
        return
    if tp is Any:
        return
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is dict or origin is dict:
        ok = isinstance(value, dict)
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise ParamError(key, _type_name(tp), value)
