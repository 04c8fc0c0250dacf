"""The node page and the attendee page in real headless Chromium, with a real agent running a real lab.

The agent is ``python -m node_agent run`` against the controller served by this process, with a lab
folder written here (two script steps) and the session's real attendee account (tests/labs/conftest.py).
Lab scripts run as root and as that account: run it under the kernel-tests lock (flock), like tests/e2e.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from controller import attendees
from controller.models import Attendee, AuditEntry, Node
from tests.labs.conftest import LabEnv
from tests.labs.conftest import attendee as attendee  # noqa: F401 - the session's real attendee account
from tests.processes import Agent, wait_until
from tests.web import a11y
from tests.web.conftest import login, shot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent's labs act on the kernel as root")

HOSTILE = "<img src=x onerror=alert(1)>"
LAB_TOML = """
id = "web-lab"
title = "A lab for the web pages"
topic = "namespaces"
minutes = 5
summary = "Make **two** markers. <script>alert('summary')</script>"
[[steps]]
id = "make"
title = "Make the first marker"
instructions = "make.md"
hints = ["Look at the *title*.", "Run `touch {marker}`"]
check = {{ kind = "script", path = "check.sh" }}
solve = {{ kind = "script", path = "solve.sh" }}
reset = {{ kind = "script", path = "reset.sh" }}
[[steps]]
id = "more"
title = "Make the second marker"
instructions = "more.md"
hints = ["Same again, with .more"]
check = {{ kind = "script", path = "check-more.sh" }}
solve = {{ kind = "script", path = "solve-more.sh" }}
reset = {{ kind = "script", path = "reset-more.sh" }}
"""


def write_lab(root: Path, marker: str) -> None:
    folder = root / "web-lab"
    folder.mkdir(parents=True)
    (folder / "lab.toml").write_text(LAB_TOML.format(marker=marker))
    (folder / "make.md").write_text("Create the file with `touch`:\n\n```\ntouch FILE\n```\n\n"
                                    "<img src=x onerror=alert(2)> [a link](javascript:alert(3))\n")
    (folder / "more.md").write_text("Now the **second** one.\n")
    for suffix in ("", "-more"):
        path = marker + (".more" if suffix else "")
        (folder / f"check{suffix}.sh").write_text(textwrap.dedent(f"""\
            if [ -e {path} ]; then echo '{{}}'; exit 0; fi
            echo '{{}}'; echo "{HOSTILE} {path} does not exist yet"; exit 1
        """))
        (folder / f"solve{suffix}.sh").write_text(f"touch {path}\n")
        (folder / f"reset{suffix}.sh").write_text(f"rm -f {path}\n")


@pytest.fixture
def lab_node(app, seed, live_server, attendee, tmp_path):  # noqa: F811
    """A real agent with the web-lab, enrolled and online, and an attendee seated at it with a code."""
    labs = tmp_path / "labs"
    marker = f"/tmp/lf-web-{os.getpid()}-{tmp_path.name}"
    write_lab(labs, marker)
    prefix = LabEnv(attendee, tmp_path, labs_dir=labs).prefix
    socket_dir = Path("/run") / f"labfleet-web-{prefix}"
    config = tmp_path / "agent.toml"
    config.write_text(f'labs_dir = "{labs}"\nattendee_user = "{attendee.user}"\nlab_prefix = "{prefix}"\n'
                      f'lab_cgroup_parent = "labfleet-test/{prefix}"\n'
                      f'attendee_socket = "{socket_dir}/attendee.sock"\n')
    agent = Agent("vm-web", tmp_path / "agents" / "vm-web").start(
        live_server, seed.enrollment_token(uses=5), config_file=config, insecure_http=True)
    db = app.extensions["labfleet"].db

    def enrolled():
        with db.session() as session:
            node = session.scalar(select(Node).where(Node.name == "vm-web"))
            return node.id if node is not None and node.state_digest else None

    try:
        node_id = wait_until(enrolled, timeout=30, what="the agent enrolled with its lab catalog")
        with db.session() as session:
            session.add(Attendee(event_id=session.get(Node, node_id).event_id, name="Grace Hopper",
                                 email="grace@example.org", node_id=node_id))
        with db.session() as session:
            (row,) = [r for r in attendees.issue_credentials(session, actor="test") if r["access_code"]]
        yield {"node_id": node_id, "code": row["access_code"], "email": "grace@example.org", "marker": marker}
    finally:
        agent.proc.stop()
        for path in (marker, marker + ".more"):
            Path(path).unlink(missing_ok=True)
        shutil.rmtree(socket_dir, ignore_errors=True)


def attendee_login(page, base: str, email: str, code: str) -> None:
    page.goto(f"{base}/attendee/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Access code").fill(code)
    page.get_by_role("button", name="Open my machine").click()


def test_attendee_checks_and_the_instructor_resets_from_the_node_page(browser, page, live_server, instructor,
                                                                      lab_node, app):
    page.goto(f"{live_server}/attendee/login")
    shot(page, "attendee-login")
    a11y.check(page, "the attendee login")
    attendee_login(page, live_server, lab_node["email"], lab_node["code"])
    expect(page).to_have_url(f"{live_server}/attendee")
    expect(page.locator("#ssh")).to_have_value("ssh class@127.0.0.1")
    lab = page.locator("details.lab[data-lab=web-lab]")
    expect(lab.locator("li.step[data-step=make] [data-f=title]")).to_have_text("Make the first marker",
                                                                                 timeout=15000)
    # The lab's Markdown is rendered; its raw HTML and a javascript: link are not.
    expect(lab.locator("li.step[data-step=make] .instructions pre code")).to_have_text("touch FILE\n")
    expect(lab.locator("[data-f=summary] strong")).to_have_text("two")
    assert lab.locator("script, img, a[href^=javascript]").count() == 0

    lab.get_by_role("button", name="Check my work").click()
    result = lab.locator("[data-f=result]")
    expect(result).to_contain_text("does not exist yet", timeout=15000)
    expect(result).to_contain_text(HOSTILE)  # node text shown literally, never parsed
    make = lab.locator("li.step[data-step=make]")
    expect(make.locator("[data-f=status]")).to_have_text("failed")
    expect(make.locator("[data-f=reason]")).to_contain_text(f"{HOSTILE} {lab_node['marker']} does not exist yet")
    assert page.locator("img").count() == 0

    make.get_by_role("button", name="Show a hint").click()
    expect(make.locator(".hint-box")).to_contain_text("Hint 1 of 2", timeout=15000)
    expect(make.locator(".hint-box em")).to_have_text("title")
    make.get_by_role("button", name="Show the next hint").click()
    expect(make.locator(".hint-box")).to_contain_text("Hint 2 of 2", timeout=15000)
    expect(make.get_by_role("button", name="No more hints")).to_be_disabled()
    shot(page, "attendee-check-failed")
    a11y.check(page, "the attendee page")
    page.evaluate("window.__not_reloaded = true")

    # The instructor, in another browser session, solves the step, then resets the lab from the node page.
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    instructor_page = context.new_page()
    instructor_errors: list[str] = []
    instructor_page.on("console", lambda m: m.type == "error" and instructor_errors.append(m.text))
    instructor_page.on("pageerror", lambda exc: instructor_errors.append(f"uncaught: {exc}"))
    instructor_page.console_errors = instructor_errors
    login(instructor_page, live_server)
    instructor_page.locator("#tiles a.name", has_text="vm-web").click()
    expect(instructor_page).to_have_url(f"{live_server}/nodes/{lab_node['node_id']}")
    expect(instructor_page.locator("#live")).to_have_text("live")
    expect(instructor_page.locator("#progress tr[data-step='web-lab/make']")).to_contain_text("failed")
    instructor_page.get_by_label("Step", exact=True).select_option("make")
    instructor_page.get_by_role("button", name="Solve step").click()
    expect(instructor_page.locator("#confirm")).to_be_visible()
    expect(instructor_page.locator("#confirm-text")).to_contain_text("Solve make of web-lab on vm-web")
    instructor_page.get_by_role("button", name="Yes, do it").click()
    expect(instructor_page.locator("#progress tr[data-step='web-lab/make']")).to_contain_text("passed",
                                                                                             timeout=15000)
    expect(make.locator("[data-f=status]")).to_have_text("passed", timeout=5000)  # the attendee's page, live

    instructor_page.get_by_label("Step", exact=True).select_option("")
    instructor_page.get_by_role("button", name="Reset lab").click()
    expect(instructor_page.locator("#confirm-text")).to_contain_text("Reset web-lab on vm-web to its start")
    instructor_page.get_by_role("button", name="Cancel").click()  # cancelled: nothing sent
    expect(instructor_page.locator("#confirm")).to_be_hidden()
    instructor_page.get_by_role("button", name="Reset lab").click()
    instructor_page.get_by_role("button", name="Yes, do it").click()
    expect(instructor_page.locator("#progress tr[data-step='web-lab/make']")).to_contain_text("not started",
                                                                                             timeout=15000)
    instructor_page.locator("#history details").first.locator("summary").click()
    expect(instructor_page.locator("#history details").first).to_contain_text("lab.reset")
    shot(instructor_page, "node-page")
    a11y.check(instructor_page, "the node page")
    # From the node page the instructor reaches this node's shared terminal and its recordings.
    watch = instructor_page.get_by_role("link", name="Watch the attendee's terminal")
    assert watch.get_attribute("href").endswith(f"/terminal/{lab_node['node_id']}")

    # The attendee's page shows the step back to "not started" without reloading.
    expect(make.locator("[data-f=status]")).to_have_text("not started", timeout=5000)
    assert page.evaluate("window.__not_reloaded") is True
    shot(page, "attendee-after-instructor-reset")

    with app.extensions["labfleet"].db.session() as session:
        actions = session.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.detail)).all()
    issued = [(actor, details.get("kind")) for actor, action, details in actions if action == "command.issue"]
    assert ("instructor:ada", "lab.solve") in issued and ("instructor:ada", "lab.reset") in issued
    assert ("attendee:grace@example.org", "lab.check") in issued
    assert ("attendee:grace@example.org", "lab.hint") in issued
    assert page.console_errors == [] and instructor_errors == []
    context.close()


def test_attendee_reset_to_a_step_skips_and_never_solves(page, live_server, lab_node):
    attendee_login(page, live_server, lab_node["email"], lab_node["code"])
    lab = page.locator("details.lab[data-lab=web-lab]")
    more = lab.locator("li.step[data-step=more]")
    expect(more.locator("[data-f=title]")).to_have_text("Make the second marker", timeout=15000)
    more.get_by_role("button", name="Reset to this step").click()
    expect(page.locator("#confirm-text")).to_contain_text("Reset web-lab to step more")
    page.get_by_role("button", name="Yes, reset").click()
    expect(lab.locator("[data-f=result]")).to_have_text("Reset to more.", timeout=15000)
    # As with `lab reset --to-step` on the VM: the earlier step is skipped for the attendee, not solved.
    expect(lab.locator("li.step[data-step=make] [data-f=status]")).to_have_text("skipped", timeout=5000)
    assert not Path(lab_node["marker"]).exists()
    shot(page, "attendee-reset-to-step")
    assert page.console_errors == []


def _get(url: str, cookie: str = "", method: str = "GET", body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method, data=body,
                                     headers={**({"Cookie": cookie} if cookie else {}), **(headers or {})})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers.get("Location", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", ""), exc.read().decode()


def test_an_attendee_session_reaches_only_its_own_node(page, live_server, lab_node, app, seed, agents):
    (other,) = agents([("vm-other", "Alan Turing")])
    attendee_login(page, live_server, lab_node["email"], lab_node["code"])
    expect(page).to_have_url(f"{live_server}/attendee")
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
    csrf = page.locator("#attendee").get_attribute("data-csrf")

    # No instructor page, page JSON or API answers to an attendee's session.
    for path in ("/room", "/room/stream", f"/nodes/{lab_node['node_id']}", f"/nodes/{other.id}/live"):
        status, location, _ = _get(live_server + path, cookie)
        assert (status, location.split("?")[0]) == (302, "/login"), path
    for path in ("/api/v1/nodes", "/api/v1/attendees", "/api/v1/audit"):
        assert _get(live_server + path, cookie)[0] == 401, path
    status, _, _ = _get(f"{live_server}/nodes/{other.id}/actions", cookie, "POST",
                        b'{"kind": "lab.check", "args": {"lab": "web-lab"}}',
                        {"Content-Type": "application/json", "X-CSRFToken": csrf})
    assert status == 302

    # The attendee's own actions: no solve, only their node's labs and commands.
    def act(body: bytes, token: str = csrf) -> tuple[int, str]:
        status, _, text = _get(f"{live_server}/attendee/actions", cookie, "POST", body,
                               {"Content-Type": "application/json", "X-CSRFToken": token})
        return status, text

    status, text = act(b'{"action": "solve", "lab": "web-lab"}')
    assert status == 400 and '"field":"action"' in text.replace(" ", "")
    status, text = act(b'{"action": "check", "lab": "other-lab"}')
    assert status == 400 and '"field":"lab"' in text.replace(" ", "")
    assert act(b'{"action": "check", "lab": "web-lab"}', token="forged")[0] in (400, 403)
    with app.extensions["labfleet"].db.session() as session:
        from controller import commands

        foreign = commands.issue(session, actor="instructor:ada", kind="ping", args={},
                                 nodes=[session.get(Node, other.id)], timeout=5, deadline_in=60).command_ids[0]
    assert _get(f"{live_server}/attendee/commands/{foreign}", cookie)[0] == 404

    # Reissuing the codes (`labfleet attendees credentials --reissue`) ends the session and the old code.
    with app.extensions["labfleet"].db.session() as session:
        attendees.issue_credentials(session, actor="test", reissue=True)
    assert _get(f"{live_server}/attendee/progress", cookie)[0] == 401
    status, location, _ = _get(f"{live_server}/attendee", cookie)
    assert (status, location) == (302, "/attendee/login")
    expect(page).to_have_url(f"{live_server}/attendee/login")  # the open page noticed by itself
    # The browser logs the one 401 that told the page; nothing else.
    assert {e for e in page.console_errors if "401" not in e} == set()
    attendee_login(page, live_server, lab_node["email"], lab_node["code"])
    expect(page.get_by_role("alert")).to_contain_text("Wrong email or access code")
    shot(page, "attendee-code-revoked")


def test_attendee_login_is_rate_limited(page, live_server, lab_node):
    for _ in range(5):
        attendee_login(page, live_server, lab_node["email"], "wrong-code-here")
        expect(page.get_by_role("alert")).to_contain_text("Wrong email or access code")
    attendee_login(page, live_server, lab_node["email"], lab_node["code"])
    expect(page.get_by_role("alert")).to_contain_text("Too many wrong codes")
    assert "/attendee/login" in page.url
