"""/api/openapi.json is generated from the routes, is a valid OpenAPI 3.1 document, and says what the server answers.

Every ``app`` fixture checks each answer against it (tests/openapi_check.py);
the walkthrough here makes every operation answer at least once, as a room
would use them, so no documented route goes unchecked.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from flask import Blueprint, Flask, Response, jsonify
from openapi_spec_validator import validate

from controller import attendees, web_accounts
from controller.api.openapi import Undocumented, api_routes, build_document, documented, openapi_path
from controller.api.responses import WhoAmI
from controller.app import register_api
from controller.models import StuckFlag, utcnow
from tests.openapi_check import ResponseChecker


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("key") / "room.key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labfleet-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path.read_text()


def test_the_served_document_is_valid_openapi(client):
    doc = client.get("/api/openapi.json").json
    validate(doc)  # openapi-spec-validator: raises, saying where, on an invalid document
    assert doc["openapi"] == "3.1.0"


def test_every_route_and_method_of_the_app_is_documented_with_its_path_parameters(app, client):
    build_document(app)  # raises Undocumented naming every route without @documented
    assert app.extensions["response_checker"].active
    doc = client.get("/api/openapi.json").json
    routes = list(api_routes(app))
    operations = [(path, method) for path, ops in doc["paths"].items() for method in ops]
    assert len(operations) == len(routes) == 63  # 44 of the API, 19 JSON routes of the pages
    # Only the pages' HTML, event stream and WebSockets (and a static folder, if any) stay out.
    left_out = {rule.endpoint for rule in app.url_map.iter_rules()} - {rule.endpoint for rule, _ in routes}
    assert left_out and all(e == "static" or e.startswith("pages.") for e in left_out), left_out
    assert {"pages.room", "pages.room_stream", "pages.terminal_ws", "pages.attendee.page"} <= left_out
    assert {path for path, ops in doc["paths"].items() for op in ops.values() if op["tags"] == ["pages"]} == {
        "/matrix/data", "/bulk", "/bulk/labs", "/bulk/{batch_id}", "/nodes/{node_id}/live",
        "/nodes/{node_id}/actions", "/attendee/progress", "/attendee/actions", "/attendee/commands/{command_id}",
        "/attendee/terminal/status", "/attendee/help", "/attendee/messages/{message_id}/read", "/provisioning/state", "/provisioning/runs", "/provisioning/runs/{run_id}",
        "/provisioning/runs/{run_id}/cancel", "/provisioning/attendees/import", "/provisioning/attendees/assign",
        "/provisioning/inventory/check"}
    for rule, method in routes:
        operation = doc["paths"][openapi_path(rule)][method.lower()]
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(rule.arguments), rule.rule
        assert operation["responses"], rule.rule


def test_request_and_response_schemas_come_from_the_models(client):
    doc = client.get("/api/openapi.json").json
    schemas = doc["components"]["schemas"]
    heartbeat = schemas["Heartbeat"]
    assert heartbeat["properties"]["seq"]["minimum"] == 0
    assert set(heartbeat["required"]) == {"seq", "digest"}
    assert schemas["Args_ping"]["properties"]["delay_ms"]["maximum"] == 60000
    poll = doc["paths"]["/api/agent/v1/nodes/{node_id}/commands"]["get"]
    assert poll["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CommandBatch"}
    assert {p["name"] for p in poll["parameters"]} == {"node_id", "wait", "resync"}
    nodes = doc["paths"]["/api/v1/nodes"]["get"]
    assert {p["name"] for p in nodes["parameters"]} == {"limit", "cursor"}
    assert schemas["NodePage"]["properties"]["nodes"]["items"] == {"$ref": "#/components/schemas/NodeView"}
    error = schemas["ErrorResponse"]
    assert set(error["required"]) == {"error", "detail", "field"} and error["additionalProperties"] is False
    assert doc["paths"]["/api/v1/audit"]["get"]["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"}


def test_a_route_without_a_declaration_fails_the_build_naming_it():
    app = register_api(Flask(__name__))
    extra = Blueprint("extra", __name__)
    extra.add_url_rule("/api/v1/forgotten/<int:n>", "forgotten", lambda n: jsonify({}), methods=["GET", "DELETE"])
    app.register_blueprint(extra)
    with pytest.raises(Undocumented) as raised:
        build_document(app)
    assert "DELETE /api/v1/forgotten/<int:n> (extra.forgotten)" in str(raised.value)
    assert "GET /api/v1/forgotten/<int:n> (extra.forgotten)" in str(raised.value)


def test_a_documented_route_builds_with_its_converter_as_a_typed_path_parameter():
    app = register_api(Flask(__name__))
    extra = Blueprint("extra", __name__)

    @extra.get("/api/v1/things/<int:n>")
    @documented("A thing", responses={200: WhoAmI})
    def thing(n: int):
        return jsonify({})

    app.register_blueprint(extra)
    operation = build_document(app)["paths"]["/api/v1/things/{n}"]["get"]
    assert operation["parameters"][0] == {"name": "n", "in": "path", "required": True,
                                          "schema": {"type": "integer", "minimum": 0}}


def test_the_checker_fails_an_answer_off_its_schema_or_with_an_undocumented_status(client):
    doc = client.get("/api/openapi.json").json
    checker = ResponseChecker(doc)

    def answer(body, status=200):
        return Response(json.dumps(body), status=status, mimetype="application/json")

    checker.check("GET", "/api/v1/whoami", answer({"kind": "instructor", "name": "a"}))
    assert checker.take_problems() == []
    checker.check("GET", "/api/v1/whoami", answer({"kind": "instructor", "name": "a", "secret": "x"}))
    assert "additional properties" in checker.take_problems()[0].lower()
    checker.check("GET", "/api/v1/whoami", answer({"error": "teapot", "detail": "", "field": None}, 418))
    assert "GET /api/v1/whoami -> 418: status not documented" in checker.take_problems()[0]
    checker.check("GET", "/api/v1/whoami", answer({"error": "bad_request", "detail": "x"}, 400))
    assert "'field' is a required property" in checker.take_problems()[0]


def test_every_operation_answers_what_the_document_says(app, client, seed, enroll, ssh_key):
    """A room's day through every route: each answer must match the schema of its route and status."""
    checker: ResponseChecker = app.extensions["response_checker"]
    admin = seed.auth

    def call(method: str, path: str, status: int, **kwargs):
        response = client.open(path, method=method, **kwargs)
        assert response.status_code == status, (method, path, response.get_data(as_text=True)[:500])
        problems = checker.take_problems()
        assert not problems, problems
        return response

    call("GET", "/api/health", 200)
    call("GET", "/metrics", 200)
    call("GET", "/api/openapi.json", 200)
    assert call("GET", "/api/health?probe=%00", 400).json["field"] == "probe"  # NUL: refused before any view

    # A node joins, reports and runs a command.
    node = enroll("walk-1")
    agent = "/api/agent/v1/nodes/" + node.id
    call("POST", "/api/agent/v1/enroll", 401, json={"enrollment_token": "lf_et_nothing", "machine_id": "m",
                                                     "machine_secret": "s", "name": "walk-2"})
    assert call("POST", f"{agent}/heartbeat", 200, json={"seq": 1, "digest": "d1"}, headers=node.auth
                ).json["send_state"] is True
    call("PUT", f"{agent}/state", 200, json={"digest": "d1", "state": {"hostname": "walk-1"}}, headers=node.auth)
    call("GET", "/api/v1/whoami", 200, headers=admin)
    call("GET", "/api/v1/nodes", 200, headers=admin)
    call("GET", "/api/v1/nodes/walk-1", 200, headers=admin)
    issued = call("POST", "/api/v1/commands", 201, json={"kind": "ping", "nodes": ["walk-1"]}, headers=admin).json
    (command,) = call("GET", f"{agent}/commands?wait=0", 200, headers=node.auth).json["commands"]
    call("POST", f"{agent}/results", 200, json={"command_id": command["id"], "ok": True, "output": {"pong": True},
                                                "duration_ms": 3.5}, headers=node.auth)
    assert call("GET", f"/api/v1/commands/{command['id']}", 200, headers=admin).json["result"]["ok"] is True
    assert call("GET", f"/api/v1/batches/{issued['batch_id']}", 200, headers=admin).json["done"] == 1
    call("GET", f"/api/v1/batches/{issued['batch_id']}?summary=1", 200, headers=admin)

    # Enrollment tokens, the audit trail, lab progress.
    token = call("POST", "/api/v1/enroll-tokens", 201, json={"label": "spare", "uses": 2}, headers=admin).json
    call("GET", "/api/v1/enroll-tokens", 200, headers=admin)
    call("POST", f"/api/v1/enroll-tokens/{token['id']}/revoke", 200, headers=admin)
    call("GET", "/api/v1/audit?action=command.issue", 200, headers=admin)
    call("GET", "/api/v1/progress", 200, headers=admin)

    # The help queue: the node raises its hand (again: an update), an instructor claims, replies, resolves;
    # a stuck flag (written as the stuck pass would) becomes a raised hand.
    hand = call("POST", f"{agent}/help", 201, json={"message": "no PID 1 in my namespace"}, headers=node.auth).json
    call("POST", f"{agent}/help", 200, json={"message": "still no PID 1"}, headers=node.auth)
    call("GET", "/api/v1/help", 200, headers=admin)
    call("POST", f"/api/v1/help/{hand['id']}/claim", 200, headers=admin)
    call("POST", f"/api/v1/help/{hand['id']}/reply", 200, json={"text": "coming to you"}, headers=admin)
    call("POST", f"/api/v1/help/{hand['id']}/resolve", 200, headers=admin)
    with app.extensions["labfleet"].db.session() as session:
        session.add(StuckFlag(node_id=node.id, lab="ns-pid", step="ns-pid-1",
                              reasons=[{"rule": "same_failure", "text": "failed 3 times in a row"}],
                              hint=None, since=utcnow(), evaluated_at=utcnow()))
        session.commit()
    call("GET", "/api/v1/stuck", 200, headers=admin)
    assert call("POST", "/api/v1/stuck/walk-1/raise", 201, headers=admin).json["source"] == "stuck"

    # Messages: the instructor sends one to the room, lists what was sent; the node reads its unread ones.
    call("POST", "/api/v1/messages", 201, json={"all": True, "text": "break until 11:00"}, headers=admin)
    call("GET", "/api/v1/messages", 200, headers=admin)
    call("GET", f"{agent}/messages", 200, headers=node.auth)

    # Provisioning (the run stays pending: no worker here) and attendees.
    inventory = {"path": "room.yml", "content": "defaults: {user: root, private_key: keys/room.key}\n"
                 "hosts:\n  - {name: lab-1, address: 192.0.2.11}\n", "keys": {"keys/room.key": ssh_key}}
    run = call("POST", "/api/v1/provision-runs", 201, json={"driver": "static", "inventory": inventory},
               headers=admin).json
    call("GET", "/api/v1/provision-runs", 200, headers=admin)
    call("GET", f"/api/v1/provision-runs/{run['id']}", 200, headers=admin)
    call("GET", f"/api/v1/provision-runs/{run['id']}/events", 200, headers=admin)
    call("POST", f"/api/v1/provision-runs/{run['id']}/cancel", 200, headers=admin)
    csv = "name,email\nAda,ada@example.org\nBob,bob@example.org\nAda,ada@example.org\n"
    assert call("POST", "/api/v1/attendees/import", 201, json={"csv": csv}, headers=admin).json["created"] == 2
    call("GET", "/api/v1/attendees", 200, headers=admin)
    call("POST", "/api/v1/attendees/assign", 200, json={}, headers=admin)
    call("POST", "/api/v1/attendees/credentials", 200, json={}, headers=admin)
    # SSH rescue (queued: no worker here) and the diagnostics bundle of a node without an SSH record.
    rescue = call("POST", "/api/v1/rescue", 202, json={"nodes": ["walk-1"]}, headers=admin).json
    call("GET", "/api/v1/rescue", 200, headers=admin)
    assert call("GET", f"/api/v1/rescue/{rescue['id']}", 200, headers=admin).json["hosts"][0]["state"] == "pending"
    call("GET", f"/api/v1/rescue/{rescue['id']}/hosts/walk-1", 200, headers=admin)
    assert call("POST", "/api/v1/rescue", 400, json={}, headers=admin).json["field"] == "nodes"
    assert call("POST", "/api/v1/rescue", 400, json={"silent": True}, headers=admin).json["field"] == "silent"
    call("POST", "/api/v1/nodes/walk-1/revoke", 200, headers=admin)
    bundle = call("GET", "/api/v1/nodes/walk-1/diagnostics", 200, headers=admin)  # revoked: not asked, no SSH
    assert bundle.mimetype == "application/gzip" and bundle.data[:2] == b"\x1f\x8b"

    # Errors: each body names what is wrong, in the documented shape.
    assert call("POST", "/api/v1/commands", 400, json={"kind": 5}, headers=admin).json["field"] == "kind"
    assert call("GET", "/api/v1/nodes?limit=0", 400, headers=admin).json["field"] == "limit"
    call("GET", "/api/v1/nodes", 401)
    call("GET", "/api/v1/nodes/nobody", 404, headers=admin)
    call("POST", "/api/v1/provision-runs", 409, json={"retry_failed": True, "playbook": "teardown"}, headers=admin)

    documented_ops = {(method.upper(), path) for path, ops in app.extensions["openapi_document"]["paths"].items()
                      for method, op in ops.items() if op["tags"] != ["pages"]}  # the pages': the next test
    answered_ok = {(method, path) for method, path, status in checker.seen if status < 300}
    assert documented_ops - answered_ok == set()


def test_every_operation_the_document_says_needs_a_token_refuses_a_caller_without_one(app, client):
    """The documented security is the real one: no token, a 401 in the documented error shape."""
    checker: ResponseChecker = app.extensions["response_checker"]
    doc = client.get("/api/openapi.json").json
    guarded = 0
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            schemes = {name for requirement in operation["security"] for name in requirement}
            if not schemes & {"node", "instructor"}:
                continue
            url = path.replace("{", "").replace("}", "")  # every path parameter becomes its own name
            response = client.open(url, method=method.upper(), json={} if "requestBody" in operation else None)
            assert response.status_code == 401, (method, path, response.json)
            assert response.json["error"] == "unauthenticated"
            guarded += 1
    assert not checker.take_problems()
    assert guarded == 40  # all but health, the document, metrics (its own scheme) and enroll


PAGE_PASSWORD = "a long page password"


def _csrf(client, path: str) -> str:
    return re.search(r'data-csrf="([^"]+)"', client.get(path).text).group(1)


def test_the_pages_json_routes_answer_what_the_document_says(app, client, seed, enroll, ssh_key):
    """The room's and the attendee's scripts: every JSON route they call, with its session and CSRF header."""
    checker: ResponseChecker = app.extensions["response_checker"]
    db = app.extensions["labfleet"].db

    def call(who, method: str, path: str, status: int, **kwargs):
        response = who.open(path, method=method, **kwargs)
        assert response.status_code == status, (method, path, response.get_data(as_text=True)[:500])
        problems = checker.take_problems()
        assert not problems, problems
        return response

    node = enroll("page-1")
    agent = "/api/agent/v1/nodes/" + node.id
    call(client, "PUT", f"{agent}/state", 200, headers=node.auth, json={"digest": "d1", "state": {
        "hostname": "page-1", "labs": {"catalog": {"web-lab": ["one", "two"]}, "progress": {}}}})
    with db.session() as session:
        web_accounts.add(session, "ada", password=PAGE_PASSWORD)
        attendees.import_csv(session, text="name,email\nGrace,grace@example.org\n", source="t.csv", actor="test")
        attendees.assign_one(session, email="grace@example.org", node_ref="page-1", actor="test")
        (sheet,) = attendees.issue_credentials(session, actor="test")
        session.commit()

    # The instructor's scripts: the matrix, the bulk action and its results, the node page.
    outsider = app.test_client()
    assert call(outsider, "GET", "/matrix/data", 302).headers["Location"].startswith("/login")
    instructor = app.test_client()
    login_form = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', instructor.get("/login").text)
    instructor.post("/login", data={"name": "ada", "password": PAGE_PASSWORD, "csrf_token": login_form.group(1)})
    csrf = {"X-CSRFToken": _csrf(instructor, "/matrix")}
    matrix = call(instructor, "GET", "/matrix/data", 200).json
    assert matrix["catalog"] == [["web-lab", ["one", "two"]]] and matrix["rows"][0]["attendee"] == "Grace"
    assert call(instructor, "GET", "/bulk/labs", 200).json["catalog"] == [["web-lab", ["one", "two"]]]
    body = {"kind": "lab.check", "lab": "web-lab", "step": "", "nodes": [node.id]}
    call(instructor, "POST", "/bulk", 403, json=body)  # no CSRF header: the pages' HTML refusal
    assert call(instructor, "POST", "/bulk", 400, json={**body, "nodes": []}, headers=csrf).json["field"] == "nodes"
    batch = call(instructor, "POST", "/bulk", 201, json=body, headers=csrf).json["batch_id"]
    (command,) = call(client, "GET", f"{agent}/commands?wait=0", 200, headers=node.auth).json["commands"]
    call(client, "POST", f"{agent}/results", 200, headers=node.auth, json={
        "command_id": command["id"], "ok": True, "duration_ms": 2.0,
        "output": {"lab": "web-lab", "steps": [{"step": "one", "status": "failed", "reason": "no PID 1"}]}})
    assert call(instructor, "GET", f"/bulk/{batch}", 200).json["commands"][0]["summary"] == "one: failed"
    live = call(instructor, "GET", f"/nodes/{node.id}/live", 200).json
    assert live["attendee"] == "Grace" and live["commands"][0]["kind"] == "lab.check"
    call(instructor, "GET", "/nodes/nobody/live", 404)
    call(instructor, "POST", f"/nodes/{node.id}/actions", 201, json={"kind": "inspect"},
         headers={"X-CSRFToken": _csrf(instructor, f"/nodes/{node.id}")})
    assert call(instructor, "POST", f"/nodes/{node.id}/actions", 400, json={"kind": "rm"}, headers=csrf
                ).json["field"] == "kind"

    # The provisioning page: an inventory checked, a run started (pending: no worker here) and cancelled,
    # attendees imported and assigned, the page's polled state.
    inventory = {"path": "room.yml", "content": "defaults: {user: root, private_key: keys/room.key}\n"
                 "hosts:\n  - {name: lab-1, address: 192.0.2.11}\n", "keys": {"keys/room.key": ssh_key}}
    run_body = {"driver": "static", "inventory": inventory}
    assert call(instructor, "POST", "/provisioning/inventory/check", 200, json=run_body, headers=csrf
                ).json == {"hosts": ["lab-1"]}
    run = call(instructor, "POST", "/provisioning/runs", 201, json=run_body, headers=csrf).json
    call(instructor, "GET", f"/provisioning/runs/{run['id']}", 200)
    call(instructor, "POST", f"/provisioning/runs/{run['id']}/cancel", 200, headers=csrf)
    call(instructor, "POST", "/provisioning/attendees/import", 201, headers=csrf,
         json={"csv": "name,email\nAlan,alan@example.org\n"})
    call(instructor, "POST", "/provisioning/attendees/assign", 200, json={}, headers=csrf)
    assert call(instructor, "GET", "/provisioning/state", 200).json["latest"]["id"] == run["id"]

    # The attendee's scripts: progress, an action and its command, the terminal banner.
    attendee = app.test_client()
    call(attendee, "GET", "/attendee/progress", 401)
    call(attendee, "GET", "/attendee/terminal/status", 401)
    form = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', attendee.get("/attendee/login").text)
    attendee.post("/attendee/login", data={"email": "grace@example.org", "code": sheet["access_code"],
                                           "csrf_token": form.group(1)})
    mine = {"X-CSRFToken": _csrf(attendee, "/attendee")}
    progress = call(attendee, "GET", "/attendee/progress", 200).json
    assert [s["step"] for s in progress["labs"][0]["steps"]] == ["one", "two"]
    issued = call(attendee, "POST", "/attendee/actions", 201, json={"action": "check", "lab": "web-lab"},
                  headers=mine).json
    assert call(attendee, "POST", "/attendee/actions", 400, json={"action": "solve", "lab": "web-lab"},
                headers=mine).json["field"] == "action"
    call(attendee, "POST", "/attendee/actions", 403, json={"action": "check", "lab": "web-lab"})
    assert call(attendee, "GET", f"/attendee/commands/{issued['command_id']}", 200).json["done"] is False
    call(attendee, "GET", f"/attendee/commands/{command['id']}", 404)  # the instructor's, not theirs
    assert call(attendee, "GET", "/attendee/terminal/status", 200).json == {"watching": [], "consent": False}
    hand = call(attendee, "POST", "/attendee/help", 201, json={"message": "stuck on one", "lab": "web-lab"},
                headers=mine).json
    assert hand["step"] == "one" and hand["state"] == "open"
    assert call(attendee, "GET", "/attendee/progress", 200).json["help"]["id"] == hand["id"]
    sent = call(client, "POST", "/api/v1/messages", 201, headers=seed.auth,
                json={"nodes": ["page-1"], "text": "a break at 3"}).json
    read = call(attendee, "POST", f"/attendee/messages/{sent['messages'][0]['id']}/read", 201, json={}, headers=mine)
    assert call(attendee, "GET", f"/attendee/commands/{read.json['command_id']}", 200).json["kind"] == "message.read"
    call(attendee, "POST", f"/attendee/messages/{'0' * 32}/read", 404, json={}, headers=mine)

    page_ops = {(method.upper(), path) for path, ops in app.extensions["openapi_document"]["paths"].items()
                for method, op in ops.items() if op["tags"] == ["pages"]}
    answered_ok = {(method, path) for method, path, status in checker.seen if status < 300}
    assert page_ops - answered_ok == set()
    doc = client.get("/api/openapi.json").json
    assert doc["paths"]["/bulk"]["post"]["security"] == [{"instructor_session": []}]
    assert "X-CSRFToken" in {p["name"] for p in doc["paths"]["/attendee/actions"]["post"]["parameters"]}
