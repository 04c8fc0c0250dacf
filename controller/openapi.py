"""The OpenAPI 3.1 document of the controller's HTTP API, served at /api/openapi.json.

Schemas are generated from the same classes the views validate with, so the
document cannot drift from what the server accepts.
"""

from __future__ import annotations

import functools
from typing import Any

from controller.api.pagination import MAX_LIMIT
from controller.api.schemas import CreateEnrollmentTokenRequest, IssueCommandRequest
from controller.provision.schemas import (
    AssignRequest,
    CredentialsRequest,
    ImportAttendeesRequest,
    StartRunRequest,
)
from controller.validation import json_schema
from node_agent import __version__
from node_agent.protocol import (
    AGENT_API,
    COMMAND_KINDS,
    Ack,
    CommandBatch,
    CommandMessage,
    CommandResult,
    EnrollRequest,
    EnrollResponse,
    ErrorBody,
    Heartbeat,
    HeartbeatResponse,
    StateReport,
)

_SCHEMAS = [EnrollRequest, EnrollResponse, Heartbeat, HeartbeatResponse, StateReport, CommandMessage,
            CommandBatch, CommandResult, Ack, ErrorBody, IssueCommandRequest, CreateEnrollmentTokenRequest,
            StartRunRequest, ImportAttendeesRequest, AssignRequest, CredentialsRequest]

# Errors every authenticated operation can answer: bad input, bad or missing token, another node's
# resource, no such thing, too large a body. Operations add theirs.
_COMMON_ERRORS = (400, 401, 403, 404, 413)


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_PAGE_PARAMS = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "items per page"),
    _query("cursor", {"type": "string"}, "the 'next' of the previous page"),
]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _page_of(key: str) -> dict[str, Any]:
    """A list answer: the items under ``key`` and ``next``, the cursor of the next page or null."""
    return {"type": "object", "required": [key, "next"],
            "properties": {key: {"type": "array", "items": {"type": "object"}},
                           "next": {"type": ["string", "null"]}}}


def _op(summary: str, *, body: str | None = None, answer: str | dict | None = None, security: str | None = "node",
        params: list | None = None, errors: tuple[int, ...] = _COMMON_ERRORS, ok: int = 200) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    schema = _ref(answer) if isinstance(answer, str) else answer or {"type": "object"}
    op["responses"][str(ok)] = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    for code in errors:
        op["responses"][str(code)] = {"description": "error", "content": {"application/json": {
            "schema": _ref("ErrorBody")}}}
    op["security"] = [{security: []}] if security else []
    if params:
        op["parameters"] = params
    return op


def _metrics_op() -> dict[str, Any]:
    op = _op("Prometheus metrics (the scrape token, or an allowed address)", security="metrics", errors=(401, 403))
    op["responses"]["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
    return op


def _instructor(summary: str, **kwargs: Any) -> dict[str, Any]:
    return _op(summary, security="instructor", **kwargs)


def _listing(summary: str, key: str, *extra: dict[str, Any], path: list | None = None) -> dict[str, Any]:
    return _instructor(summary, answer=_page_of(key), params=[*(path or []), *extra, *_PAGE_PARAMS])


@functools.cache
def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for cls in _SCHEMAS:
        schema = json_schema(cls)
        schemas.update(schema.pop("$defs", {}))
        schemas[cls.__name__] = schema
    for kind, args in COMMAND_KINDS.items():
        schemas[f"Args_{kind}"] = json_schema(args)
    node_id = _path_param("node_id")
    node_ref, run_id = _path_param("node_ref"), _path_param("run_id")
    wait = _query("wait", {"type": "number", "minimum": 0},
                  "seconds to hold the request open when no command is waiting")
    resync = _query("resync", {"type": "integer", "enum": [0, 1]},
                    "1 after a lost connection: offer every command without a result again")
    text64 = {"type": "string", "minLength": 1, "maxLength": 64}
    paths = {
        "/api/health": {"get": _op("Liveness and database check", security=None, errors=())},
        "/metrics": {"get": _metrics_op()},
        f"{AGENT_API}/enroll": {"post": _op("Trade a one-time enrollment token for a node token",
                                            body="EnrollRequest", answer="EnrollResponse", security=None,
                                            errors=(400, 401, 409, 413, 429))},
        f"{AGENT_API}/nodes/{{node_id}}/heartbeat": {"post": _op(
            "Heartbeat with the state digest", body="Heartbeat", answer="HeartbeatResponse", params=[node_id])},
        f"{AGENT_API}/nodes/{{node_id}}/state": {"put": _op(
            "Full state snapshot", body="StateReport", answer="Ack", params=[node_id])},
        f"{AGENT_API}/nodes/{{node_id}}/commands": {"get": _op(
            "Long-poll for commands", answer="CommandBatch", params=[node_id, wait, resync],
            errors=(*_COMMON_ERRORS, 429))},
        f"{AGENT_API}/nodes/{{node_id}}/results": {"post": _op(
            "Post a command's result (idempotent)", body="CommandResult", answer="Ack", params=[node_id])},
        "/api/v1/whoami": {"get": _instructor("The caller's instructor name")},
        "/api/v1/nodes": {"get": _listing("List nodes, by name", "nodes")},
        "/api/v1/nodes/{node_ref}": {"get": _instructor("One node with its state snapshot", params=[node_ref])},
        "/api/v1/nodes/{node_ref}/revoke": {"post": _instructor("Revoke a node's token", params=[node_ref],
                                                                errors=(*_COMMON_ERRORS, 409))},
        "/api/v1/commands": {"post": _instructor("Issue a command to nodes", body="IssueCommandRequest", ok=201)},
        "/api/v1/commands/{command_id}": {"get": _instructor("One command and its result",
                                                             params=[_path_param("command_id")])},
        "/api/v1/batches/{batch_id}": {"get": _listing(
            "A command batch's counts and a page of its commands (summary=1: the counts only)", "commands",
            _query("summary", {"type": "integer", "enum": [0, 1]}, "1: only the counts"),
            path=[_path_param("batch_id")])},
        "/api/v1/enroll-tokens": {
            "get": _listing("List enrollment tokens, newest first", "tokens"),
            "post": _instructor("Create an enrollment token", body="CreateEnrollmentTokenRequest", ok=201),
        },
        "/api/v1/enroll-tokens/{token_id}/revoke": {"post": _instructor("Revoke an enrollment token",
                                                                        params=[_path_param("token_id")])},
        "/api/v1/audit": {"get": _listing("Audit entries, newest first", "entries",
                                          _query("action", text64, "only this action, e.g. command.issue"))},
        "/api/v1/progress": {"get": _listing("Lab progress per node and step", "progress",
                                             _query("lab", text64, "only this lab"),
                                             _query("node", text64, "only this node (name or id)"))},
        "/api/v1/provision-runs": {
            "get": _listing("Provisioning runs, newest first", "runs"),
            "post": _instructor("Start a provisioning run", body="StartRunRequest", ok=201,
                                errors=(*_COMMON_ERRORS, 409, 503)),
        },
        "/api/v1/provision-runs/{run_id}": {"get": _instructor("One run with its hosts", params=[run_id])},
        "/api/v1/provision-runs/{run_id}/events": {"get": _listing(
            "A run's events in order", "events",
            _query("after", {"type": "integer", "minimum": 0, "maximum": 2**31}, "events after this seq"),
            _query("host", text64, "only this host"), path=[run_id])},
        "/api/v1/provision-runs/{run_id}/cancel": {"post": _instructor("Cancel a run", params=[run_id],
                                                                       errors=(*_COMMON_ERRORS, 409))},
        "/api/v1/attendees/import": {"post": _instructor("Import attendees from CSV", body="ImportAttendeesRequest",
                                                         ok=201, errors=(*_COMMON_ERRORS, 409))},
        "/api/v1/attendees": {"get": _listing("Attendees, by name", "attendees")},
        "/api/v1/attendees/assign": {"post": _instructor("Assign attendees to nodes", body="AssignRequest",
                                                         errors=(*_COMMON_ERRORS, 409))},
        "/api/v1/attendees/credentials": {"post": _instructor("Issue attendee access codes",
                                                              body="CredentialsRequest")},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "labfleet controller", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "node": {"type": "http", "scheme": "bearer", "description": "per-node token from enroll"},
                "instructor": {"type": "http", "scheme": "bearer", "description": "instructor API token"},
                "metrics": {"type": "http", "scheme": "bearer",
                            "description": "LABFLEET_METRICS_TOKEN, unless the address is allowed"},
            },
        },
    }
