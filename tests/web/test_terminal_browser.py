"""The terminal pages in Chromium against a controller in this process and the agent's relay with a local
shell (no fleet host, no root): the page's own behaviour. The same on a provisioned fleet host, with tmux,
SSH and `lab consent`, is tests/web/test_terminal_page.py."""

from __future__ import annotations

import pytest

from tests.web.conftest import login, shot
from tests.web.terminal_helpers import ACCESS_CODE, attendee_cookie, deliver_open, local_terminal, wait_for

pytestmark = pytest.mark.timeout(120)


def _screen(page) -> str:
    return page.evaluate("window.labfleetTerminal ? window.labfleetTerminal.text() : ''")


def _type(page, text: str) -> None:
    page.locator("#terminal .xterm-helper-textarea").focus()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_attendee_page_terminal_and_instructor_watch(app, live_server, agents, instructor, browser, page):
    (node,) = agents([("web-1", "Ada")])
    service = local_terminal(live_server, node)
    _, email = attendee_cookie(app, node.id)  # gives the attendee the access code
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_server}/attendee/terminal")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Access code").fill("WRON-GCOD-EXXX")
    page.get_by_role("button", name="Open my machine").click()
    assert page.get_by_role("alert").inner_text() == "Wrong email or access code (or no machine assigned to you yet)."
    assert page.locator("#terminal").count() == 0
    page.console_errors.clear()  # the browser logs the 401 answer itself
    page.get_by_label("Email").fill(email)
    page.get_by_label("Access code").fill(ACCESS_CODE)
    page.get_by_role("button", name="Open my machine").click()
    page.wait_for_selector("#terminal .xterm-screen")
    try:
        deliver_open(node, service)
        page.wait_for_function("() => document.getElementById('terminal-state').textContent === 'connected'")
        wait_for(lambda: "$" in _screen(page) or "#" in _screen(page))
        _type(page, "echo in-the-page-$((6*7))")
        page.wait_for_function("() => window.labfleetTerminal.text().includes('in-the-page-42')")
        shot(page, "terminal-local-attendee")
        cols = page.evaluate("() => window.labfleetTerminal.term.cols")
        assert cols > 100  # sized to its box (1366 px wide), not xterm's 80-column default
        page.set_viewport_size({"width": 900, "height": 600})
        page.wait_for_function("() => window.labfleetTerminal.term.cols < 100")  # it resizes with the window

        context = browser.new_context(viewport={"width": 1366, "height": 768})
        teacher = context.new_page()
        teacher.console_errors = []
        teacher.on("console", lambda m: m.type == "error" and teacher.console_errors.append(m.text))
        teacher.on("pageerror", lambda e: errors.append(str(e)))
        login(teacher, live_server)
        teacher.wait_for_url(f"{live_server}/room*")
        teacher.goto(f"{live_server}/terminal/web-1")
        teacher.wait_for_function("() => document.getElementById('terminal-state').textContent === 'connected'")
        page.wait_for_function("() => document.getElementById('terminal-watchers').textContent.includes('ada')")
        _type(page, "echo watched-$((2+2))")
        teacher.wait_for_function("() => window.labfleetTerminal.text().includes('watched-4')", timeout=5000)
        _type(teacher, "echo nope-$((1+1))")
        teacher.wait_for_selector("#terminal-refused:not([hidden])")
        shot(teacher, "terminal-local-instructor")
        assert "nope-2" not in _screen(page)

        # Consent asked on the attendee's page: the button lets the instructor type, the other stops it.
        page.get_by_role("button", name="Let them type").click()
        teacher.wait_for_function("() => document.getElementById('terminal').dataset.consent === 'yes'")
        _type(teacher, "echo allowed-$((2+5))")
        page.wait_for_function("() => window.labfleetTerminal.text().includes('allowed-7')")
        shot(page, "terminal-local-attendee-consented")
        page.get_by_role("button", name="Stop their typing").click()
        teacher.wait_for_function("() => document.getElementById('terminal').dataset.consent === 'no'")
        assert errors == [] and page.console_errors == [] and teacher.console_errors == [], (
            errors, page.console_errors, teacher.console_errors)
        teacher.close()  # the instructor leaves: the recording of their watch ends

        replay = context.new_page()
        replay.on("pageerror", lambda e: errors.append(str(e)))
        replay.goto(f"{live_server}/terminal/web-1/recordings")
        replay.locator(".recordings a").first.click()
        replay.wait_for_selector("#replay")
        replay.wait_for_function("() => document.getElementById('replay').innerText.includes('watched-4')",
                                 timeout=20_000)
        shot(replay, "terminal-local-replay")
        assert errors == [], errors
        context.close()
    finally:
        service.close_all()
