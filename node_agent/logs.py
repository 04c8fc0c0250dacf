"""Structured logs on stderr: one JSON object per line (or ``key=value`` text), secrets redacted.

Every record is an *event* (a short dotted name such as ``enroll.retry``) plus
fields. Fields whose key names a secret (``*token*``, ``*secret*``,
``*password*``, ``authorization``) are replaced by ``[redacted]`` at any depth,
so a credential handed to a log call by mistake still never reaches journald.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

REDACTED = "[redacted]"
_SECRET_KEY_PARTS = ("token", "secret", "password", "authorization", "credential")


def redact(value: Any) -> Any:
    """``value`` with every secret-named key's value replaced, recursively."""
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_key(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def is_secret_key(key: str) -> bool:
    """True for keys whose values must never be logged."""
    key = key.lower()
    return any(part in key for part in _SECRET_KEY_PARTS)


class EventLogger:
    """A logger that takes an event name and keyword fields: ``log.info("enrolled", node_id=...)``."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, exc_info: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, exc_info)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={"fields": fields}, exc_info=exc_info, stacklevel=3)


def get_logger(name: str) -> EventLogger:
    return EventLogger(name)


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = redact(getattr(record, "fields", {}) or {})
    if record.exc_info:
        fields["traceback"] = logging.Formatter().formatException(record.exc_info)
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "event", "logger", ...fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": _timestamp(record), "level": record.levelname.lower(), "event": record.getMessage(),
                "logger": record.name}
        line.update(_record_fields(record))
        return json.dumps(line, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``ts level event key=value ...`` for a human at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _record_fields(record)
        tb = fields.pop("traceback", None)
        pairs = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        line = f"{_timestamp(record)} {record.levelname.lower():7} {record.getMessage()} {pairs}".rstrip()
        return f"{line}\n{tb}" if tb else line


def configure(log_format: str = "json", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send the agent's logs (logger ``node_agent``) to ``stream`` (stderr) in ``log_format``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logger = logging.getLogger("node_agent")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
