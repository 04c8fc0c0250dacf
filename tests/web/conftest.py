"""A real controller served over HTTP in this process, and Debian's chromium driven by Playwright.

Never a downloaded browser: ``/usr/bin/chromium`` (scripts/system-packages.sh
installs it). Screenshots go to ``$LABFLEET_WEB_SHOTS`` (default
/tmp/webbase-shots/).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from werkzeug.serving import make_server

from controller import web_accounts
from controller.models import Attendee

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("LABFLEET_WEB_SHOTS", "/tmp/webbase-shots"))
PASSWORD = "correct horse battery staple"

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (scripts/system-packages.sh)", allow_module_level=True)


@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda exc: page.console_errors.append(f"uncaught: {exc}"))
    page.on("dialog", lambda d: (_ for _ in ()).throw(AssertionError(f"a dialog opened: {d.message}")))
    yield page
    context.close()


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def instructor(app, seed):
    with app.extensions["labfleet"].db.session() as session:
        web_accounts.add(session, "ada", password=PASSWORD)
    return "ada"


def login(page, base: str, name: str = "ada", password: str = PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


@dataclass
class Agent:
    """A node talking to the controller over HTTP, as node_agent does."""

    base: str
    id: str
    name: str
    token: str

    def call(self, method: str, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"{self.base}/api/agent/v1/nodes/{self.id}/{path}", method=method, data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def heartbeat(self, seq: int) -> dict:
        return self.call("POST", "heartbeat", {"seq": seq, "digest": "d"})

    def report(self, digest: str, state: dict) -> dict:
        return self.call("PUT", "state", {"digest": digest, "state": state})


@pytest.fixture
def agents(app, seed, live_server):
    """Enroll nodes over HTTP and seat an attendee at each: ``agents([(node name, attendee), ...])``."""

    def _make(pairs: list[tuple[str, str]]) -> list[Agent]:
        made = []
        for name, attendee in pairs:
            body = json.dumps({"enrollment_token": seed.enrollment_token(), "machine_id": uuid.uuid4().hex,
                               "machine_secret": "s", "name": name, "hostname": f"{name}.lab",
                               "agent_version": "test"}).encode()
            request = urllib.request.Request(f"{live_server}/api/agent/v1/enroll", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                enrolled = json.loads(response.read())
            with app.extensions["labfleet"].db.session() as session:
                event_id = session.execute(
                    text("SELECT event_id FROM nodes WHERE id = :i"),
                    {"i": enrolled["node_id"]}).scalar_one()
                session.add(Attendee(event_id=event_id, name=attendee, email=f"{uuid.uuid4().hex[:8]}@example.org",
                                     node_id=enrolled["node_id"]))
            made.append(Agent(live_server, enrolled["node_id"], enrolled["name"], enrolled["node_token"]))
        return made

    return _make
