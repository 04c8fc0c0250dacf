"""Schemathesis over /api/openapi.json: no operation answers 5xx, or anything its document does not say.

The real WSGI app in process (no network at all), on a real database, with a
real instructor token and an enrolled node's token, so generated requests get
past authentication and reach validation, the services and the database.
Bounded: a fixed number of generated examples per operation, no shrinking
beyond Hypothesis' default, no example database written to the repository.
"""

from __future__ import annotations

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from controller import enrollment, events, instructors
from controller.api.openapi import build_document
from controller.app import create_app, register_api
from controller.settings import settings_for_tests

EXAMPLES_PER_OPERATION = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def fuzz_target(tmp_path, database_url):
    # A short long-poll ceiling: a generated ?wait= must not hold the test for 25 s.
    app = create_app(settings_for_tests(tmp_path / "data", database_url=database_url, poll_wait_max=0.05))
    with app.extensions["labfleet"].db.session() as session:
        event = events.get_or_create(session)
        _, instructor_token = instructors.create_with_token(session, name="fuzz")
        _, enroll_token = enrollment.create_token(session, event=event, created_by="t", ttl=600, uses=5)
    client = app.test_client()
    enrolled = client.post("/api/agent/v1/enroll", json={
        "enrollment_token": enroll_token, "machine_id": "fuzz-machine", "machine_secret": "fuzz-secret",
        "name": "fuzz-vm"}).json
    yield app, instructor_token, enrolled
    app.extensions["labfleet"].heartbeats.close()
    app.extensions["labfleet"].db.dispose()


# The document the app serves at /api/openapi.json: generated from the same blueprints (create_app registers
# them with register_api too), built here without a database because the cases are made at collection.
schema = schemathesis.openapi.from_dict(build_document(register_api(Flask(__name__))))


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_no_operation_answers_5xx_or_off_its_document(case, fuzz_target):
    app, instructor_token, node = fuzz_target
    security = case.operation.definition.raw.get("security") or []
    schemes = {name for requirement in security for name in requirement}
    headers = {}
    if "node" in schemes:
        # The node's own id and token: past authentication, into validation and the database.
        case.path_parameters = {**(case.path_parameters or {}), "node_id": node["node_id"]}
        headers["Authorization"] = f"Bearer {node['node_token']}"
    elif "instructor" in schemes:
        headers["Authorization"] = f"Bearer {instructor_token}"
    case.call_and_validate(app=app, headers=headers, checks=CHECKS)
