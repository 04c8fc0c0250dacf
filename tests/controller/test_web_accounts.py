"""Instructor logins for the pages: `labfleet init` and `labfleet instructor ...` over the real database."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from controller.cli.main import cli

PASSWORD_LINE = re.compile(r"one-time password[^\n]*?: (\S+)\s*$", re.MULTILINE)


def run(tmp_path, database_url, *args, stdin=None):
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "cli-data"), *args], input=stdin,
                                env={"LABFLEET_DATABASE_URL": database_url}, catch_exceptions=False)
    return result


def csrf_token(client, path="/login"):
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get(path).text).group(1)


def log_in(client, name, password):
    return client.post("/login", data={"name": name, "password": password, "csrf_token": csrf_token(client)})


def test_init_prints_a_one_time_password_that_logs_in(app, tmp_path, database_url):
    first = run(tmp_path, database_url, "init", "--no-tls", "--instructor", "boss")
    assert first.exit_code == 0, first.output
    password = PASSWORD_LINE.search(first.output).group(1)
    client = app.test_client()
    assert log_in(client, "boss", "wrong").status_code == 401
    response = log_in(client, "boss", password)
    assert response.status_code == 302 and response.headers["Location"] == "/room"
    assert client.get("/room").status_code == 200
    again = run(tmp_path, database_url, "init", "--no-tls", "--instructor", "boss")
    assert again.exit_code == 0 and "one-time password" not in again.output  # the first one still stands


def test_add_passwd_remove(app, tmp_path, database_url):
    init = run(tmp_path, database_url, "init", "--no-tls", "--instructor", "carol")
    assert init.exit_code == 0, init.output
    api_token = json.loads((tmp_path / "cli-data" / "cli.json").read_text())["token"]
    added = run(tmp_path, database_url, "instructor", "add", "dave")
    assert added.exit_code == 0, added.output
    assert "One-time password" in added.output
    password = added.output.strip().splitlines()[-1].strip()  # printed alone on the last line
    assert run(tmp_path, database_url, "instructor", "add", "dave").exit_code != 0  # exists already

    client = app.test_client()
    assert log_in(client, "dave", password).status_code == 302
    assert client.get("/room").status_code == 200
    changed = run(tmp_path, database_url, "instructor", "passwd", "dave", "--password-stdin",
                  stdin="a much better password\n")
    assert changed.exit_code == 0, changed.output
    assert client.get("/room").status_code == 302  # the new password ended the open session
    assert log_in(client, "dave", password).status_code == 401
    assert log_in(client, "dave", "a much better password").status_code == 302
    assert run(tmp_path, database_url, "instructor", "passwd", "dave", "--password-stdin",
               stdin="short\n").exit_code != 0

    auth = {"Authorization": f"Bearer {api_token}"}
    assert app.test_client().get("/api/v1/nodes", headers=auth).status_code == 200
    # The bearer-token API takes no CSRF token: a state-changing call works as before.
    assert app.test_client().post("/api/v1/enroll-tokens", json={"label": "x"}, headers=auth).status_code in (200, 201)
    removed = run(tmp_path, database_url, "instructor", "remove", "carol")
    assert removed.exit_code == 0 and "1 API token(s) revoked" in removed.output
    assert app.test_client().get("/api/v1/nodes", headers=auth).status_code == 401
    assert log_in(app.test_client(), "carol", "anything at all").status_code == 401
    listing = run(tmp_path, database_url, "instructor", "list").output
    assert "carol  removed" in listing and "dave  login" in listing
