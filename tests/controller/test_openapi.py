"""The OpenAPI document describes what the server really accepts."""

from __future__ import annotations


def test_openapi_lists_agent_and_instructor_paths_with_schemas(client):
    doc = client.get("/api/openapi.json").json
    assert doc["openapi"].startswith("3.")
    assert "/api/agent/v1/enroll" in doc["paths"]
    assert "/api/agent/v1/nodes/{node_id}/commands" in doc["paths"]
    assert "/api/v1/commands" in doc["paths"]
    heartbeat = doc["components"]["schemas"]["Heartbeat"]
    assert heartbeat["properties"]["seq"]["minimum"] == 0
    assert set(heartbeat["required"]) == {"seq", "digest"}
    assert doc["components"]["schemas"]["Args_ping"]["properties"]["delay_ms"]["maximum"] == 60000


def test_health_is_public(client):
    response = client.get("/api/health")
    assert response.status_code == 200 and response.json["status"] == "ok"
