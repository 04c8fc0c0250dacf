"""Every list of the instructor API is paged the same way, and the CLI follows the pages.

``?limit=`` (at most 1000) and ``?cursor=`` (the ``next`` of the page before);
``next`` is null on the last page. Keyset paging: rows added while a client
pages do not repeat or shift rows it has not seen yet.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import insert
from werkzeug.serving import make_server

from controller import events
from controller.cli.main import cli
from controller.models import (
    Attendee,
    AuditEntry,
    Command,
    EnrollmentToken,
    LabProgress,
    Node,
    ProvisionEvent,
    ProvisionRun,
    new_id,
    utcnow,
)


def fill(app, *, nodes=0, progress_per_node=0, audit=0, tokens=0, attendees=0, runs=0, run_events=0,
         batch=0):
    """Rows straight into the database (the API to make 1,000 of them would be the slow part)."""
    with app.extensions["labfleet"].db.session() as session:
        event = events.get_or_create(session)
        now = utcnow()
        node_rows = [{"id": new_id(), "event_id": event.id, "name": f"vm-{i:04d}", "machine_id": f"m{i}",
                      "machine_secret_hash": "x", "heartbeat_interval": 5.0, "state": "online", "enrolled_at": now}
                     for i in range(nodes)]
        if node_rows:
            session.execute(insert(Node), node_rows)
        progress = [{"id": new_id(), "node_id": n["id"], "lab": "cg-pids", "step": f"s{j:02d}", "status": "passed",
                     "evidence": {}, "updated_at": now} for n in node_rows for j in range(progress_per_node)]
        if progress:
            session.execute(insert(LabProgress), progress)
        if audit:
            session.execute(insert(AuditEntry), [{"actor": "t", "action": "test.fill", "target": str(i), "detail": {},
                                                  "at": now} for i in range(audit)])
        if tokens:
            # Same created_at for all: the id breaks the tie, and paging must not lose or repeat any.
            session.execute(insert(EnrollmentToken), [
                {"id": new_id(), "event_id": event.id, "token_hash": new_id() + new_id(), "prefix": "lfe_x",
                 "label": f"t{i}", "uses_left": 1, "created_by": "t", "created_at": now,
                 "expires_at": now + timedelta(hours=1)} for i in range(tokens)])
        if attendees:
            session.execute(insert(Attendee), [{"id": new_id(), "event_id": event.id, "name": "Same Name",
                                                "email": f"a{i}@example.org", "created_at": now}
                                               for i in range(attendees)])
        run_ids = [new_id() for _ in range(runs)]
        if runs:
            session.execute(insert(ProvisionRun), [
                {"id": rid, "event_id": event.id, "playbook": "site", "driver": "static", "hosts": [],
                 "limit_hosts": [], "tuning": {}, "state": "succeeded", "requested_by": "t",
                 "created_at": now - timedelta(seconds=i)} for i, rid in enumerate(run_ids)])
        if run_events:
            session.execute(insert(ProvisionEvent), [{"run_id": run_ids[0], "seq": i, "host": "h", "task": "t",
                                                      "status": "ok", "message": "", "at": now}
                                                     for i in range(1, run_events + 1)])
        batch_id = new_id()
        if batch:
            session.execute(insert(Command), [
                {"id": new_id(), "batch_id": batch_id, "node_id": node_rows[i % len(node_rows)]["id"], "kind": "ping",
                 "args": {}, "state": "pending", "issued_by": "t", "issued_at": now, "deadline": now + timedelta(hours=1),
                 "timeout": 60.0, "delivery_count": 0} for i in range(batch)])
        return {"run_ids": run_ids, "batch_id": batch_id}


def every_page(client, seed, path, key, limit, cursor=None):
    seen, pages = [], 0
    while True:
        sep = "&" if "?" in path else "?"
        query = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(query, headers=seed.auth)
        assert response.status_code == 200, response.json
        body = response.json
        assert len(body[key]) <= limit
        seen.extend(body[key])
        pages += 1
        cursor = body["next"]
        if cursor is None:
            return seen, pages
        assert pages < 100


@pytest.mark.parametrize("path,key,made,identity,total", [
    ("/api/v1/nodes", "nodes", {"nodes": 250}, "id", 250),
    ("/api/v1/progress", "progress", {"nodes": 25, "progress_per_node": 10}, ("node", "step"), 250),
    ("/api/v1/audit?action=test.fill", "entries", {"audit": 250}, "id", 250),
    ("/api/v1/enroll-tokens", "tokens", {"tokens": 250}, "id", 250),
    ("/api/v1/attendees", "attendees", {"attendees": 250}, "email", 250),
    ("/api/v1/provision-runs", "runs", {"runs": 250}, "id", 250),
    ("/api/v1/provision-runs/{run}/events", "events", {"runs": 1, "run_events": 1010}, "seq", 1010),
    ("/api/v1/batches/{batch}", "commands", {"nodes": 5, "batch": 250}, "id", 250),
])
def test_every_list_endpoint_pages_with_limit_and_next(client, seed, app, path, key, made, identity, total):
    ids = fill(app, **made)
    path = path.format(run=(ids["run_ids"] or [""])[0], batch=ids["batch_id"])
    seen, pages = every_page(client, seed, path, key, limit=200)
    keys = [tuple(r[k] for k in identity) if isinstance(identity, tuple) else r[identity] for r in seen]
    assert len(keys) == len(set(keys)) == total
    assert pages == -(-total // 200)
    # Without a limit a list is bounded too (the default page), and says where it goes on.
    body = client.get(path, headers=seed.auth).json
    assert len(body[key]) < total and body["next"]


def test_audit_pages_newest_first_and_new_entries_do_not_repeat_rows(client, seed, app):
    fill(app, audit=100)
    first = client.get("/api/v1/audit?action=test.fill&limit=30", headers=seed.auth).json
    fill(app, audit=50)  # written while the client pages
    rest, _ = every_page(client, seed, "/api/v1/audit?action=test.fill", "entries", 30, cursor=first["next"])
    ids = [e["id"] for e in first["entries"] + rest]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == len(set(ids)) == 100


@pytest.mark.parametrize("query,field", [
    ("limit=0", "limit"),
    ("limit=1001", "limit"),
    ("limit=ten", "limit"),
    ("cursor=not-a-cursor", "cursor"),
    ("cursor=WyJ4Il0", "cursor"),  # base64 of ["x"]: a cursor of the wrong shape for this list
    ("cursor=WzEsMl0", "cursor"),  # [1,2]: node names are text
])
def test_bad_page_parameters_are_a_400_naming_them(client, seed, query, field):
    response = client.get(f"/api/v1/nodes?{query}", headers=seed.auth)
    assert response.status_code == 400
    assert response.json["field"] == field


@pytest.fixture
def live_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def test_the_cli_follows_pages_and_shows_everything(app, seed, live_url):
    fill(app, nodes=1205, progress_per_node=1)
    fill(app, audit=1500)
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(cli, ["--url", live_url, "--token", seed.api_token, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        import json
        return json.loads(result.output)

    assert len({n["name"] for n in run("status", "--json")}) == 1205
    assert len(run("progress", "--json")) == 1205
    entries = run("audit", "--limit", "1400", "--action", "test.fill", "--json")
    assert len({e["id"] for e in entries}) == 1400
