"""Every error, ours (controller/errors.py) and Flask's own, as ``{"error", "detail", "field"}`` JSON."""

from __future__ import annotations

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from controller.errors import ApiError

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
