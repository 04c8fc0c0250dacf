"""The provisioning page in real Chromium: an uploaded inventory (a bad one first, its line and key named),
a run the real Celery worker executes over real SSH against a loopback port nobody listens on (so the host
is unreachable fast, with its task and Ansible's message), retry of the failed host, cancel and teardown
confirmed in a <dialog> naming how many hosts, attendees imported and assigned, the credentials sheet
downloaded. Every action is audited as the JSON API audits it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from controller.models import AuditEntry
from controller.provision.wheel import agent_wheel
from tests.controller.test_web_accounts import log_in
from tests.processes import Proc, free_port
from tests.web import a11y
from tests.web.conftest import PASSWORD, login, shot

FAILED = re.compile("^(failed|unreachable)$")
XSS = '<img src=x onerror="document.body.dataset.owned=1">'


@pytest.fixture(scope="module")
def key_text(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("key") / "room.key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labfleet-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path.read_text()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return agent_wheel(tmp_path_factory.mktemp("wheels"))


@pytest.fixture
def worker(settings, wheel, tmp_path):
    """The real Celery worker (``labfleet worker``) on the app's own broker (the data dir's queue)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABFLEET_")}
    env.update({"LABFLEET_DATA_DIR": str(settings.data_dir), "LABFLEET_DATABASE_URL": settings.database_url,
                "LABFLEET_SECRET_KEY": "test-secret-key", "LABFLEET_PROVISION_AGENT_WHEEL": str(wheel),
                "LABFLEET_CELERY_QUEUE": settings.celery_queue,
                # The test's controller is plain HTTP on loopback: let the playbook go on to the host.
                "LABFLEET_PROVISION_EXTRA_VARS": json.dumps({"labfleet_agent_insecure_http": True})})
    procs = []

    def start() -> Proc:
        proc = Proc("worker", [sys.executable, "-m", "controller.cli.main", "worker", "--concurrency", "1",
                               "--no-beat"], env, tmp_path / "worker.log").start()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def enroll(base: str, seed, name: str) -> str:
    body = json.dumps({"enrollment_token": seed.enrollment_token(), "machine_id": uuid.uuid4().hex,
                       "machine_secret": "s", "name": name, "hostname": f"{name}.lab",
                       "agent_version": "test"}).encode()
    request = urllib.request.Request(f"{base}/api/agent/v1/enroll", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["node_id"]


def upload(page, tmp_path, name: str, text: str, key_text: str | None = None) -> None:
    inventory = tmp_path / name
    inventory.write_text(text)
    page.get_by_label("Inventory file").set_input_files(str(inventory))
    if key_text is not None:
        key = tmp_path / "room.key"
        key.write_text(key_text)
        page.get_by_label("SSH private keys").set_input_files(str(key))


def unexpected_errors(page) -> list[str]:
    """Console errors besides Chromium's own line for the 400 the test's bad upload was meant to get."""
    return [e for e in page.console_errors if "responded with a status of 400" not in e]


def host_row(page, host: str):
    return page.locator(f'#hosts tr[data-host="{host}"]')


def test_a_run_from_an_uploaded_inventory_fails_retries_cancels_and_tears_down(
        app, seed, instructor, live_server, page, tmp_path, key_text, worker):
    port = free_port()  # nothing listens here: ssh is refused at once
    login(page, live_server)
    page.get_by_role("link", name="Provisioning").click()
    expect(page.get_by_role("heading", name="Provisioning", exact=True)).to_be_visible()

    # A bad inventory is refused before anything runs; the error names the file's line and the key.
    upload(page, tmp_path, "room.yml", "defaults: {user: root, private_key: keys/room.key}\nhosts:\n"
                                       "  - {name: lab-1, adress: 127.0.0.1}\n", key_text)
    page.get_by_role("button", name="Provision").click()
    error = page.locator("#start-result")
    expect(error).to_contain_text("Not started")
    expect(error).to_contain_text("room.yml:3")
    expect(error).to_contain_text("adress")
    expect(page.locator("#run-state")).to_have_text("none yet")

    good = ("defaults: {user: root, private_key: keys/room.key}\nhosts:\n"
            f"  - {{name: lab-1, address: 127.0.0.1, port: {port}}}\n")
    upload(page, tmp_path, "room.yml", good, key_text)

    # No worker yet: the run waits, and cancelling it is confirmed in the page's dialog, naming the hosts.
    page.get_by_role("button", name="Provision").click()
    expect(page.locator("#run-state")).to_have_text("pending")
    expect(host_row(page, "lab-1")).to_contain_text("pending")
    page.get_by_role("button", name="Cancel run…").click()
    dialog = page.locator("#prov-confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("1 host of 1 not finished")
    dialog.get_by_role("button", name="Cancel 1 host").click()
    expect(page.locator("#run-state")).to_have_text("cancelled")
    expect(host_row(page, "lab-1")).to_contain_text("cancelled")

    # The worker runs the real playbook: the host is unreachable, with the failing task and ssh's message.
    worker()
    page.get_by_role("button", name="Provision").click()
    expect(page.locator("#start-result")).to_contain_text("started on 1 host")
    first = page.locator("#run-id").text_content()
    row = host_row(page, "lab-1")
    expect(row.locator("td.state")).to_have_text(FAILED, timeout=120_000)
    shot(page, "provisioning-failed-host")
    expect(page.locator("#run-state")).to_have_text("failed")
    expect(row.locator("td.message")).to_contain_text(str(port))
    expect(row.locator("td.task")).not_to_be_empty()
    shot(page, "provisioning-failed-host")
    a11y.check(page, "the provisioning page with a failed host", allow=["responded with a status of 400"])

    # Retry the failed hosts: a new run of lab-1 only.
    page.get_by_role("button", name="Retry failed hosts").click()
    expect(page.locator("#start-result")).to_contain_text("Retrying 1 failed host")
    expect(page.locator("#run-id")).not_to_have_text(first)
    expect(row.locator("td.state")).to_have_text(FAILED, timeout=120_000)

    # Teardown names the inventory's hosts; "Keep going" starts nothing, confirming starts the teardown run.
    page.get_by_role("button", name="Tear down…").click()
    expect(dialog).to_contain_text("Tear down 1 host?")
    shot(page, "provisioning-teardown-dialog")
    a11y.check(page, "the teardown confirmation", allow=["responded with a status of 400"])
    page.get_by_role("button", name="Keep going").click()
    expect(page.locator("#start-result")).to_have_text("Teardown not started.")
    page.get_by_role("button", name="Tear down…").click()
    dialog.get_by_role("button", name="Tear down 1 host").click()
    expect(page.locator("#run-playbook")).to_have_text("teardown")
    expect(row.locator("td.state")).to_have_text(FAILED, timeout=120_000)

    assert unexpected_errors(page) == []
    with app.extensions["labfleet"].db.session() as session:
        actions = [(e.actor, e.action) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.at))]
    for action in ("provision.start", "provision.cancel", "provision.retry", "provision.finish"):
        assert ("instructor:ada", action) in actions, actions


def test_attendees_import_assign_and_the_credentials_sheet(app, seed, instructor, live_server, page, tmp_path):
    for name in ("lab-a", "lab-b"):
        enroll(live_server, seed, name)
    login(page, live_server)
    page.goto(f"{live_server}/provisioning")
    roster = tmp_path / "room.csv"
    roster.write_text("name,email\nbroken-row-without-email\n")
    page.get_by_label("Attendee list (CSV: name,email)").set_input_files(str(roster))
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#att-result")).to_contain_text("Not imported")
    expect(page.locator("#att-result")).to_contain_text("room.csv:2")

    roster.write_text(f"name,email\nAda Lovelace,ada@example.org\n{XSS},bob@example.org\n")
    page.get_by_label("Attendee list (CSV: name,email)").set_input_files(str(roster))
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#att-result")).to_have_text("Imported 2 attendees.")
    expect(page.locator("#attendees tr")).to_have_count(2)
    expect(page.locator("#attendees")).to_contain_text(XSS)  # shown as text, never as HTML

    # One explicit pair, then round-robin for the rest.
    page.get_by_label("Attendee", exact=True).select_option("ada@example.org")
    page.get_by_label("Node", exact=True).select_option("lab-b")
    page.get_by_role("button", name="Assign").click()
    expect(page.locator("#att-result")).to_have_text("Assigned ada@example.org → lab-b.")
    page.get_by_role("button", name="Assign").click()
    expect(page.locator("#att-result")).to_have_text("Assigned bob@example.org → lab-a.")
    expect(page.locator("#attendees tr", has_text="Ada Lovelace")).to_contain_text("lab-b")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download credentials sheet").click()
    sheet = download.value
    assert sheet.suggested_filename == "credentials.html"
    text = open(sheet.path()).read()
    assert "Ada Lovelace" in text and "lab-b" not in text  # the sheet gives the host's address, not node names
    assert XSS not in text and "&lt;img" in text
    assert text.count('class="code"') == 2 and "(issued" not in text
    page.get_by_label("Credentials sheet").select_option("csv")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download credentials sheet").click()
    rows = open(download.value.path()).read().splitlines()
    assert len(rows) == 3 and "(issued" in rows[1]  # codes are shown once; later sheets say when
    expect(page.locator("#attendees tr", has_text="Ada Lovelace").locator("td").nth(3)).to_have_text("issued")
    shot(page, "provisioning-attendees")
    a11y.check(page, "the provisioning page's attendees", allow=["responded with a status of 400"])

    assert page.evaluate("document.body.dataset.owned") is None
    assert unexpected_errors(page) == []
    with app.extensions["labfleet"].db.session() as session:
        actions = [(e.actor, e.action) for e in session.scalars(select(AuditEntry))]
    for action in ("attendees.import", "attendees.assign", "attendees.credentials"):
        assert ("instructor:ada", action) in actions, actions


def test_the_page_needs_a_login_and_every_post_a_csrf_token(app, seed, instructor):
    client = app.test_client()
    assert client.get("/provisioning").status_code == 302
    assert client.get("/provisioning/state").status_code == 302
    assert log_in(client, "ada", PASSWORD).status_code == 302
    assert client.get("/provisioning").status_code == 200
    for path, body in (("/provisioning/runs", {"retry_failed": True}), ("/provisioning/attendees/assign", {}),
                       ("/provisioning/attendees/import", {"csv": "name,email\nA,a@example.org\n"}),
                       ("/provisioning/inventory/check", {"driver": "static"})):
        assert client.post(path, json=body).status_code == 403, path
    assert client.post("/provisioning/credentials", data={"format": "html"}).status_code == 403
    with app.extensions["labfleet"].db.session() as session:
        assert not session.scalars(select(AuditEntry).where(AuditEntry.action.like("attendees.%"))).all()
