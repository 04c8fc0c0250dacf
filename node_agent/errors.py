"""The exceptions the agent raises on purpose. The daemon and the CLI decide what each means."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigurationError(AgentError):
    """A setting is missing or invalid; the message names the key and what was expected."""


class ControllerUnavailable(AgentError):
    """The controller cannot answer now (network error, 5xx, 429, garbled answer): retry with backoff."""


class RequestRejected(AgentError):
    """The controller refused a request (4xx); carries its ErrorBody: error, detail, field."""

    def __init__(self, status: int, error: str, detail: str, field: str | None = None) -> None:
        where = f" (field {field})" if field else ""
        super().__init__(f"controller answered {status} {error}: {detail}{where}")
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field


class Unauthorized(RequestRejected):
    """The node token was refused (401/403): re-enroll if an enrollment token is configured."""


class EnrollmentRefused(RequestRejected):
    """The controller refused to enroll this machine (unknown, used, expired token; identity conflict)."""


class CommandError(AgentError):
    """A command could not do what was asked; the message becomes the result's error."""
