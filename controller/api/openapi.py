"""The OpenAPI 3.1 document of the controller's HTTP API, generated from the routes (served at /api/openapi.json).

Each view says what it takes and answers with ``@documented(...)`` (request
and response models, query parameters, security); the paths, their methods
and path parameters come from ``app.url_map`` and its converters. A route
without a declaration makes building the document fail, naming the route, so
the document lists every route the app serves and cannot fall behind it.
Request schemas come from the classes the views validate with
(controller/validation.py), response schemas from controller/api/responses.py
and the agent protocol's dataclasses.
See docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import http
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic
from flask import Flask

from controller.api.pagination import MAX_LIMIT
from controller.api.responses import ErrorResponse
from controller.validation import model_for
from node_agent import __version__
from node_agent.protocol import COMMAND_KINDS

F = TypeVar("F", bound=Callable[..., Any])

# Errors every authenticated operation can answer: bad input, bad or missing token, another node's
# resource, no such thing, too large a body. ``errors=`` adds an operation's own.
COMMON_ERRORS = (400, 401, 403, 404, 413)
TEXT64 = {"type": "string", "minLength": 1, "maxLength": 64}  # a name-like query parameter
HTML_BLUEPRINT = "pages"  # the web pages' blueprint: only its @documented JSON routes are in the document
TEXT = "text/plain"  # a response model for a plain-text answer (the metrics scrape)
GZIP = "application/gzip"  # a response model for a tar.gz download (a node's diagnostics bundle)
SECURITY_SCHEMES = {
    "node": {"type": "http", "scheme": "bearer", "description": "per-node token from enroll"},
    "instructor": {"type": "http", "scheme": "bearer", "description": "instructor API token"},
    "metrics": {"type": "http", "scheme": "bearer", "description": "LABFLEET_METRICS_TOKEN, unless the address is allowed"},
    # The web pages' JSON routes (controller/pages/): the browser's session cookie, never a bearer token.
    "instructor_session": {
        "type": "apiKey", "in": "cookie", "name": "labfleet_session",
        "description": "an instructor's page session (Flask-Login), from the form at /login. Without it the "
                       "route redirects (302) to /login. Every POST also sends the page's CSRF token "
                       "(its data-csrf) in the X-CSRFToken header; without it or with a wrong one the "
                       "answer is 403 (an HTML page)."},
    "attendee_session": {
        "type": "apiKey", "in": "cookie", "name": "labfleet_session",
        "description": "an attendee's page session, from the access-code form at /attendee/login; it ends "
                       "when the code is reissued. Without it the answer is 401. Every POST also sends the "
                       "page's CSRF token in the X-CSRFToken header (403, an HTML page, without it)."},
}
SESSION_SCHEMES = ("instructor_session", "attendee_session")
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
CSRF_HEADER = {"name": "X-CSRFToken", "in": "header", "required": True, "schema": {"type": "string"},
               "description": "the page's CSRF token (Flask-WTF), as the page's data-csrf attribute gives it"}
HTML = "text/html"
DESCRIPTION = (
    "The controller's JSON API (bearer tokens) and the JSON routes the web pages' scripts call (session "
    "cookie, schemes instructor_session and attendee_session; each POST carries the X-CSRFToken header). "
    "Not here: the pages themselves (HTML for a browser), the room's live stream /room/stream "
    "(Server-Sent Events, text/event-stream) and the terminals' WebSockets (/terminal/{ref}/ws, "
    "/attendee/terminal/ws and the agent's end): none is a JSON request and answer (docs/web.md "
    "describes them). Command arguments by kind: components Args_<kind> (see IssueCommandRequest).")


@dataclass(frozen=True)
class Param:
    """A query parameter: its name, JSON schema and what it does."""

    name: str
    schema: dict[str, Any]
    description: str

    def as_openapi(self) -> dict[str, Any]:
        return {"name": self.name, "in": "query", "required": False, "schema": self.schema,
                "description": self.description}


PAGE_PARAMS = (
    Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "items per page"),
    Param("cursor", {"type": "string"}, "the 'next' of the previous page"),
)


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: dict[int, Any]
    request: type | None = None
    query: tuple[Param, ...] = ()
    security: str | None = "instructor"
    errors: tuple[int, ...] = COMMON_ERRORS
    description: str | None = field(default=None)


def documented(summary: str, *, responses: dict[int, Any], request: type | None = None,
               query: Iterable[Param] = (), paged: bool = False, security: str | None = "instructor",
               errors: Iterable[int] = (), common_errors: bool = True) -> Callable[[F], F]:
    """Declare a view's operation for the OpenAPI document; the view itself is unchanged.

    ``responses`` maps a success status to its model (a pydantic model, a protocol dataclass,
    or ``TEXT``); every status in ``COMMON_ERRORS`` (unless ``common_errors=False``) and in
    ``errors`` answers an ErrorResponse. ``paged`` adds ``limit`` and ``cursor``;
    ``security`` is a scheme of SECURITY_SCHEMES or None for a public operation.
    """
    if security is not None and security not in SECURITY_SCHEMES:
        raise ValueError(f"unknown security scheme {security!r}")
    error_codes = tuple(sorted({*(COMMON_ERRORS if common_errors else ()), *errors}))
    params = (*query, *(PAGE_PARAMS if paged else ()))

    def mark(view: F) -> F:
        view.openapi_operation = Operation(  # type: ignore[attr-defined]
            summary=summary, responses=dict(responses), request=request, query=params, security=security,
            errors=error_codes, description=(view.__doc__ or "").strip() or None)
        return view

    return mark


class Undocumented(LookupError):
    """A route has no ``@documented`` declaration."""


def openapi_document(app: Flask) -> dict[str, Any]:
    """The app's document, built once per app."""
    cached = app.extensions.get("openapi_document")
    if cached is None:
        cached = app.extensions["openapi_document"] = build_document(app)
    return cached


def is_page(app: Flask, rule) -> bool:
    """A rule of the web pages that is no JSON operation: an HTML page, the live stream, a WebSocket, a download.

    The pages' JSON routes carry ``@documented`` like the API's and are operations; a page route answering
    JSON without it is caught by tests/openapi_check.py.
    """
    if not rule.endpoint.startswith(HTML_BLUEPRINT + "."):
        return False
    return getattr(rule, "websocket", False) or not hasattr(app.view_functions[rule.endpoint], "openapi_operation")


def api_routes(app: Flask):
    """(rule, method) for every operation: every rule but ``static`` and the pages' non-JSON ones, every method but HEAD/OPTIONS."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static" or is_page(app, rule):
            # The pages (controller/pages/) answer HTML, an event stream or a WebSocket to a browser
            # session: not JSON operations (docs/web.md describes them).
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule, method


def openapi_path(rule) -> str:
    """``/nodes/<node_id>`` or ``/x/<int:n>`` as OpenAPI writes it: ``/nodes/{node_id}``."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>:]+)>", r"{\1}", rule.rule)


def build_document(app: Flask) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    missing = []
    for rule, method in api_routes(app):
        operation = getattr(app.view_functions[rule.endpoint], "openapi_operation", None)
        if operation is None:
            missing.append(f"{method} {rule.rule} ({rule.endpoint})")
            continue
        paths.setdefault(openapi_path(rule), {})[method.lower()] = _operation(operation, rule, method, schemas)
    if missing:
        raise Undocumented("routes without @documented (controller/api/openapi.py): " + ", ".join(missing))
    for kind, args in sorted(COMMAND_KINDS.items()):
        _add_schema(schemas, f"Args_{kind}", _model_schema(args, schemas))
    return {
        "openapi": "3.1.0",
        "info": {"title": "labfleet controller", "version": __version__,
                 "description": DESCRIPTION},
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": SECURITY_SCHEMES},
    }


def _operation(op: Operation, rule, method: str, schemas: dict[str, Any]) -> dict[str, Any]:
    where = f"{rule.rule} ({rule.endpoint})"
    doc: dict[str, Any] = {"operationId": rule.endpoint.replace(".", "_"), "summary": op.summary,
                           "tags": [rule.endpoint.split(".", 1)[0]]}
    if op.description:
        doc["description"] = op.description
    params = [_path_param(name, converter, where) for name, converter in rule._converters.items()]
    params += [p.as_openapi() for p in op.query]
    csrf = op.security in SESSION_SCHEMES and method in STATE_CHANGING
    if csrf:
        params.append(CSRF_HEADER)
    if params:
        doc["parameters"] = params
    if op.request is not None:
        doc["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": _ref(op.request, schemas)}}}
    responses: dict[str, Any] = {}
    for status, model in sorted(op.responses.items()):
        if model == TEXT:
            content = {TEXT: {"schema": {"type": "string"}}}
        elif model == GZIP:
            content = {GZIP: {"schema": {"type": "string", "contentMediaType": GZIP}}}
        else:
            content = {"application/json": {"schema": _ref(model, schemas)}}
        responses[str(status)] = {"description": http.HTTPStatus(status).phrase, "content": content}
    for status in op.errors:
        responses[str(status)] = {"description": http.HTTPStatus(status).phrase,
                                  "content": {"application/json": {"schema": _ref(ErrorResponse, schemas)}}}
    if op.security == "instructor_session":
        responses["302"] = {"description": "not signed in: to the login page (Location: /login?next=...)"}
    if csrf:
        forbidden = responses.setdefault("403", {"description": http.HTTPStatus(403).phrase, "content": {}})
        forbidden["description"] += "; a missing or wrong X-CSRFToken answers the pages' HTML error page"
        forbidden["content"][HTML] = {"schema": {"type": "string"}}
    doc["responses"] = responses
    doc["security"] = [{op.security: []}] if op.security else []
    return doc


# Werkzeug's converters as JSON schemas; another converter must be added here before a route may use it.
_CONVERTERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "UnicodeConverter": lambda c: {"type": "string", "minLength": 1},
    "PathConverter": lambda c: {"type": "string", "minLength": 1},
    "IntegerConverter": lambda c: {"type": "integer", "minimum": 0},
    "FloatConverter": lambda c: {"type": "number", "minimum": 0},
    "UUIDConverter": lambda c: {"type": "string", "format": "uuid"},
    "AnyConverter": lambda c: {"type": "string", "enum": sorted(c.items)},
}


def _path_param(name: str, converter: Any, where: str) -> dict[str, Any]:
    kind = type(converter).__name__
    if kind not in _CONVERTERS:
        raise Undocumented(f"{where}: no schema for the URL converter {kind} of <{name}>")
    return {"name": name, "in": "path", "required": True, "schema": _CONVERTERS[kind](converter)}


def _model_schema(model: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    if dataclasses.is_dataclass(model):
        model = model_for(model)
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        raise TypeError(f"not a pydantic model or dataclass: {model!r}")
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        _add_schema(schemas, name, sub)
    return schema


def _ref(model: Any, schemas: dict[str, Any]) -> dict[str, str]:
    _add_schema(schemas, model.__name__, _model_schema(model, schemas))
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _add_schema(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    if schemas.get(name, schema) != schema:
        raise ValueError(f"two different schemas are both called {name!r}: rename one of the models")
    schemas[name] = schema
