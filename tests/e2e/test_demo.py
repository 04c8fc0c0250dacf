"""`labfleet demo`: a provisioned local fleet (or plain agents) online; Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.processes import REPO, Proc, free_port, wait_until

pytestmark = pytest.mark.e2e


def children(pid: int) -> set[int]:
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            found |= {int(p) for p in fh.read().split()}
    return found


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().decode().split("\0")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _demo(tmp_path, *args: str) -> tuple[Proc, dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABFLEET_")}
    env.update(LABFLEET_DATA_DIR=str(tmp_path / "demo"), LABFLEET_PORT=str(free_port()))
    demo = Proc("demo", [sys.executable, "-m", "controller.cli.main", "demo", *args, "--duration", "600"],
                env, tmp_path / "demo.log").start()
    return demo, env


def _online(env: dict[str, str]) -> list[str]:
    status = subprocess.run([sys.executable, "-m", "controller.cli.main", "status", "--json"], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    return sorted(n["name"] for n in json.loads(status.stdout) if n["state"] == "online")


def test_demo_provisions_a_local_fleet_and_takes_it_all_down_on_ctrl_c(tmp_path):
    demo, env = _demo(tmp_path, "--hosts", "3")
    try:
        wait_until(lambda: "labfleet demo is running" in demo.log() or not demo.alive(), timeout=420,
                   what="the demo banner")
        assert demo.alive(), demo.log()[-4000:]
        assert _online(env) == ["lfdemo-1", "lfdemo-2", "lfdemo-3"]  # the CLI verified the demo's room CA
        assert "lfdemo-1" in demo.log()  # the per-host provisioning table
        # TLS end to end: the controller on the bridge serves https and the hosts were given that URL (and the CA).
        assert "labfleet demo is running at https://" in demo.log()
        runs = subprocess.run([sys.executable, "-m", "controller.cli.main", "provision", "list", "--json"], env=env,
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        assert [r["controller_url"][:8] for r in json.loads(runs.stdout)] == ["https://"], runs.stdout[-2000:]
        check = subprocess.run([sys.executable, "-m", "controller.cli.main", "check", "ns-uts", "--all", "--json"],
                               env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        results = json.loads(check.stdout)["commands"]
        # Freshly provisioned: every host's agent ran the check, and nobody has done the lab yet.
        assert [c["result"]["output"]["status"] for c in results] == ["failed"] * 3, check.stdout[-2000:]
        _newcomer_in_the_browser(demo.log(), tmp_path / "demo")
        started = children(demo.pid)

        os.kill(demo.pid, signal.SIGINT)  # what Ctrl-C sends
        assert demo.popen.wait(timeout=60) == 0, demo.log()[-3000:]
        assert "the fleet is down" in demo.log()
        assert [pid for pid in started if alive(pid)] == []
        assert not [n for n in os.listdir("/run/netns") if n.startswith("lfdemo")]
        assert not [n for n in os.listdir("/sys/class/net") if n.startswith("lfdemo")]
    finally:
        demo.stop()


def _newcomer_in_the_browser(log: str, data_dir) -> None:
    """Issue 11's newcomer, in Chromium: the printed room URL and login, three hosts live, a lab reset from the
    node page, then the printed attendee code opens that attendee's page."""
    import base64
    import re

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from playwright.sync_api import expect, sync_playwright

    from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, shot

    room = re.search(r"the room: (https://\S+)/room, log in as instructor with password (\S+)", log)
    attendee = re.search(r"an attendee's page: \S+, email (\S+), access code (\S+) \(on (\S+);", log)
    assert room and attendee, log
    base, password = room.groups()
    email, code, seat = attendee.groups()
    # Chromium keeps its trust in an NSS database; rather than turn certificate checks off, it is told to accept
    # the one key the demo's server certificate carries (its SPKI hash), the way a room pins its CA.
    cert = x509.load_pem_x509_certificate(next(data_dir.rglob("server.crt")).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    pin = base64.b64encode(digest.finalize()).decode()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(f"{base}/room")
            page.get_by_label("Name").fill("instructor")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(f"{base}/room")
            tiles = page.locator("#tiles > li.tile")
            expect(tiles).to_have_count(3)
            for name in ("lfdemo-1", "lfdemo-2", "lfdemo-3"):
                expect(tiles.filter(has_text=name).locator("[data-f=state]")).to_have_text("online")
            expect(page.locator("#live")).to_have_text("live")
            shot(page, "demo-room")

            page.locator("#tiles a.name", has_text="lfdemo-1").click()
            row = page.locator("#progress tr[data-step='ns-uts/rename']")
            expect(row).to_contain_text("failed")  # the CLI's check above
            page.get_by_label("Lab", exact=True).select_option("ns-uts")
            page.get_by_role("button", name="Reset lab").click()
            expect(page.locator("#confirm-text")).to_contain_text("Reset ns-uts on lfdemo-1")
            page.get_by_role("button", name="Yes, do it").click()
            expect(row).to_contain_text("not started", timeout=20000)
            shot(page, "demo-node-reset")

            visitor = browser.new_page(viewport={"width": 1366, "height": 768})
            visitor.goto(f"{base}/attendee/login")
            visitor.get_by_label("Email").fill(email)
            visitor.get_by_label("Access code").fill(code)
            visitor.get_by_role("button", name="Open my machine").click()
            expect(visitor).to_have_url(f"{base}/attendee")
            expect(visitor.locator("body")).to_contain_text("Your machine")
            expect(visitor.locator("#ssh")).to_have_value(re.compile(r"^ssh \S+@10\.213\.0\.\d+"))
            # The open lab's instructions come from the attendee's own machine (its agent), rendered.
            first = visitor.locator("details.lab[open]").first
            expect(first.locator("li.step [data-f=instructions]").first).not_to_be_empty(timeout=20000)
            expect(first).not_to_contain_text("Loading the instructions")
            shot(visitor, f"demo-attendee-{seat}")
        finally:
            browser.close()


def _printed_attendee_login_works(log: str, data_dir) -> None:
    """The banner's attendee page URL, email and code open that attendee's page (over the demo's TLS)."""
    import http.cookiejar
    import re
    import ssl
    import urllib.parse
    import urllib.request

    found = re.search(r"an attendee's page: (https://\S+)/attendee/login, email (\S+), access code (\S+)", log)
    assert found, log
    base, email, code = found.groups()
    context = ssl.create_default_context(cafile=str(next(data_dir.rglob("ca.crt"))))
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                         urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    form = opener.open(f"{base}/attendee/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
    body = urllib.parse.urlencode({"csrf_token": token, "email": email, "code": code}).encode()
    # Over HTTPS, Flask-WTF also wants the Referer a browser sends (same origin).
    request = urllib.request.Request(f"{base}/attendee/login", data=body, headers={"Referer": f"{base}/attendee/login"})
    with opener.open(request, timeout=10) as page:
        assert page.url == f"{base}/attendee" and "Your machine" in page.read().decode()


def test_demo_without_a_fleet_runs_plain_agents_and_cleans_up_on_ctrl_c(tmp_path):
    demo, env = _demo(tmp_path, "--hosts", "3", "--no-fleet")
    try:
        wait_until(lambda: "labfleet demo is running" in demo.log() or not demo.alive(), timeout=90,
                   what="the demo banner")
        assert demo.alive(), demo.log()
        assert _online(env) == ["demo-1", "demo-2", "demo-3"]
        started = children(demo.pid)
        assert len(started) == 5  # web, worker, three agents
        assert "labfleet demo is running at https://127.0.0.1:" in demo.log()
        agents = [argv for argv in (cmdline(pid) for pid in started) if "node_agent" in argv]
        assert len(agents) == 3
        assert all("--ca-file" in argv and "--insecure-http" not in argv for argv in agents), agents
        _printed_attendee_login_works(demo.log(), tmp_path / "demo")

        os.kill(demo.pid, signal.SIGINT)
        assert demo.popen.wait(timeout=30) == 0
        assert "every process it started has exited" in demo.log()
        assert [pid for pid in started if alive(pid)] == []
    finally:
        demo.stop()
