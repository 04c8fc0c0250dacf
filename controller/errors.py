"""The errors services and views raise, each with the HTTP status it stands for.

controller/api/errors.py turns every one of them (and Flask's own HTTP errors) into
``{"error", "detail", "field"}`` at the edge.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error the caller can act on; ``status`` is the HTTP status."""

    status = 400
    error = "bad_request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def body(self) -> dict:
        return {"error": self.error, "detail": self.detail, "field": self.field}


class ValidationFailed(ApiError):
    """The body or a parameter does not match the schema."""

    error = "validation_failed"


class MalformedBody(ApiError):
    """The body is not JSON at all."""

    error = "malformed_body"


class Unauthenticated(ApiError):
    """No credentials, or credentials nobody issued (or that were revoked)."""

    status = 401
    error = "unauthenticated"


class Forbidden(ApiError):
    """Valid credentials that do not allow this action on this resource."""

    status = 403
    error = "forbidden"


class NotFound(ApiError):
    status = 404
    error = "not_found"


class Conflict(ApiError):
    status = 409
    error = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    error = "payload_too_large"


class TooManyRequests(ApiError):
    status = 429
    error = "too_many_requests"
