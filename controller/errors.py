"""The API's errors, and their translation to JSON at the edge, in one place.

Views and services raise these; ``register_error_handlers`` turns every one of
them (and Flask's own HTTP errors) into ``{"error", "detail", "field"}``.
"""

from __future__ import annotations

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException


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


_HTTP_NAMES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        response = jsonify(exc.body())
        response.status_code = exc.status
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="labfleet"'
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = exc.code or 500
        detail = exc.description or exc.name
        if code == 413:
            detail = f"request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        response = jsonify({"error": _HTTP_NAMES.get(code, exc.name.lower().replace(" ", "_")),
                            "detail": detail, "field": None})
        response.status_code = code
        return response
