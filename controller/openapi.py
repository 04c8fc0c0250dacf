"""The OpenAPI 3.1 document of the controller's HTTP API, served at /api/openapi.json.

Schemas are generated from the same classes the views validate with, so the
document cannot drift from what the server accepts.
"""

from __future__ import annotations

import functools
from typing import Any

from controller.api.schemas import CreateEnrollmentTokenRequest, IssueCommandRequest
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
            CommandBatch, CommandResult, Ack, ErrorBody, IssueCommandRequest, CreateEnrollmentTokenRequest]

_NODE_ID = {"name": "node_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(summary: str, *, body: str | None = None, answer: str | None = None, security: str | None = "node",
        params: list | None = None, errors: tuple[int, ...] = (400, 401, 403, 413)) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    op["responses"]["200"] = {"description": "OK", "content": {"application/json": {
        "schema": _ref(answer) if answer else {"type": "object"}}}}
    for code in errors:
        op["responses"][str(code)] = {"description": "error", "content": {"application/json": {
            "schema": _ref("ErrorBody")}}}
    op["security"] = [{security: []}] if security else []
    if params:
        op["parameters"] = params
    return op


@functools.cache
def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for cls in _SCHEMAS:
        schema = json_schema(cls)
        schemas.update(schema.pop("$defs", {}))
        schemas[cls.__name__] = schema
    for kind, args in COMMAND_KINDS.items():
        schemas[f"Args_{kind}"] = json_schema(args)
    wait = {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0},
            "description": "seconds to hold the request open when no command is waiting"}
    resync = {"name": "resync", "in": "query", "schema": {"type": "integer", "enum": [0, 1]},
              "description": "1 after a lost connection: offer every command without a result again"}
    paths = {
        "/api/health": {"get": _op("Liveness and database check", security=None, errors=())},
        "/metrics": {"get": _op("Prometheus metrics", security=None, errors=())},
        f"{AGENT_API}/enroll": {"post": _op("Trade a one-time enrollment token for a node token",
                                            body="EnrollRequest", answer="EnrollResponse", security=None,
                                            errors=(400, 401, 409, 413))},
        f"{AGENT_API}/nodes/{{node_id}}/heartbeat": {"post": _op(
            "Heartbeat with the state digest", body="Heartbeat", answer="HeartbeatResponse", params=[_NODE_ID])},
        f"{AGENT_API}/nodes/{{node_id}}/state": {"put": _op(
            "Full state snapshot", body="StateReport", answer="Ack", params=[_NODE_ID])},
        f"{AGENT_API}/nodes/{{node_id}}/commands": {"get": _op(
            "Long-poll for commands", answer="CommandBatch", params=[_NODE_ID, wait, resync])},
        f"{AGENT_API}/nodes/{{node_id}}/results": {"post": _op(
            "Post a command's result (idempotent)", body="CommandResult", answer="Ack", params=[_NODE_ID],
            errors=(400, 401, 403, 404, 413))},
        "/api/v1/nodes": {"get": _op("List nodes", security="instructor")},
        "/api/v1/nodes/{node_ref}": {"get": _op("One node with its state snapshot", security="instructor")},
        "/api/v1/nodes/{node_ref}/revoke": {"post": _op("Revoke a node's token", security="instructor")},
        "/api/v1/commands": {"post": _op("Issue a command to nodes", body="IssueCommandRequest",
                                         security="instructor", errors=(400, 401, 404, 413))},
        "/api/v1/commands/{command_id}": {"get": _op("One command and its result", security="instructor")},
        "/api/v1/batches/{batch_id}": {"get": _op("Progress of a command batch", security="instructor")},
        "/api/v1/enroll-tokens": {
            "get": _op("List enrollment tokens", security="instructor"),
            "post": _op("Create an enrollment token", body="CreateEnrollmentTokenRequest", security="instructor"),
        },
        "/api/v1/enroll-tokens/{token_id}/revoke": {"post": _op("Revoke an enrollment token",
                                                                security="instructor")},
        "/api/v1/audit": {"get": _op("Recent audit entries", security="instructor")},
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
            },
        },
    }
