"""A provisioning request never makes the controller read a path it names or take an Ansible setting from it.

Each attack goes through the real HTTP API (real app, real database) as an
instructor token would send it: a key path on the controller, a check switched
off, Ansible connection and privilege variables, templates, controller-side
playbook variables, driver folders. Each is a 400 naming the field, the answer
is the same whether the named file exists or not, and nothing ran: no run, no
audit entry, no key stored.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import func, select

from controller.models import AuditEntry, ProvisionRun
from controller.settings import settings_for_tests

HOSTS = ("  - {name: lab-1, address: 192.0.2.11}\n  - {name: lab-2, address: 192.0.2.12}\n"
         "  - {name: lab-3, address: 192.0.2.13, vars: {%s}}\n")


@pytest.fixture
def keys_dir(tmp_path) -> Path:
    folder = tmp_path / "operator-keys"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(tmp_path, database_url, keys_dir):
    """The operator configured one keys folder (LABFLEET_PROVISION_KEYS_DIR)."""
    return settings_for_tests(tmp_path / "data", database_url=database_url, provision_keys_dir=str(keys_dir))


def static(content: str, **options) -> dict:
    return {"driver": "static", "inventory": {"path": "room.yml", "content": content, **options}}


def with_vars(host_vars: str) -> dict:
    return static("defaults: {user: root}\nhosts:\n" + HOSTS % host_vars)


def refused(client, seed, body) -> dict:
    response = client.post("/api/v1/provision-runs", json=body, headers=seed.auth)
    assert response.status_code == 400, response.json
    assert set(response.json) == {"error", "detail", "field"}
    return response.json


def assert_nothing_ran(app, settings) -> None:
    with app.extensions["labfleet"].db.session() as session:
        assert session.scalar(select(func.count()).select_from(ProvisionRun)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEntry)
                              .where(AuditEntry.action.like("provision.%"))) == 0
    store = settings.data_dir / "provision" / "keys"
    assert not store.exists() or list(store.iterdir()) == []


@pytest.mark.parametrize("reference", ["/etc/shadow", "../../../etc/shadow", "~root/.ssh/id_rsa",
                                       "/proc/self/environ"])
def test_a_key_path_on_the_controller_is_refused_alike_whether_it_exists_or_not(app, client, seed, settings,
                                                                                 reference):
    missing = reference.replace("shadow", "no-such-file").replace("id_rsa", "no-such-key").replace(
        "environ", "no-such-file")
    answers = []
    for ref in (reference, missing):
        body = static(f"hosts:\n  - {{name: lab-1, address: 192.0.2.11, user: root, private_key: '{ref}'}}\n")
        answer = refused(client, seed, body)
        assert answer["field"] == "hosts[0].private_key"
        assert "never reads a key path a request names" in answer["detail"]
        answers.append(answer["detail"].replace(ref, "<ref>"))
    assert answers[0] == answers[1]
    assert_nothing_ran(app, settings)


def test_a_key_from_the_operators_folder_is_a_plain_name_never_a_link_or_a_way_out(app, client, seed, settings,
                                                                                   keys_dir, ssh_key, tmp_path):
    outside = tmp_path / "not-a-key-of-the-folder"
    outside.write_text(ssh_key)
    (keys_dir / "link.key").symlink_to(outside)
    (keys_dir / "sub").mkdir()
    (keys_dir / "sub" / "room.key").write_text(ssh_key)
    os.mkfifo(keys_dir / "fifo.key")
    (keys_dir / "notes.txt").write_text("root:$6$salt$hash:19000:0:99999:7:::\n")
    answers = {}
    for ref in ("link.key", "missing.key", "fifo.key", "sub/room.key", "../not-a-key-of-the-folder", "..", "."):
        body = static(f"hosts:\n  - {{name: lab-1, address: 192.0.2.11, user: root, private_key: '{ref}'}}\n")
        answer = refused(client, seed, body)
        assert answer["field"] == "hosts[0].private_key", ref
        answers[ref] = answer["detail"].replace(repr(ref), "<ref>")
    # A link, a FIFO and a missing name get one answer (the FIFO is not opened for reading: no hang).
    assert answers["link.key"] == answers["missing.key"] == answers["fifo.key"]
    assert answers["sub/room.key"] == answers["../not-a-key-of-the-folder"] == answers[".."] == answers["."]
    # A file of the folder that is no key is not echoed back.
    answer = refused(client, seed, static("hosts:\n  - {name: lab-1, address: 192.0.2.11, user: root, "
                                          "private_key: notes.txt}\n"))
    assert "not an SSH private key" in answer["detail"] and "$6$" not in answer["detail"]
    assert_nothing_ran(app, settings)


def test_an_uploaded_key_and_a_named_one_become_the_controllers_0600_copies(app, client, seed, settings,
                                                                           keys_dir, ssh_key):
    (keys_dir / "room.key").write_text(ssh_key)
    other = ssh_key.replace("labfleet-test", "labfleet-other")
    text = ("hosts:\n  - {name: lab-1, address: 192.0.2.11, user: root, private_key: room.key}\n"
            "  - {name: lab-2, address: 192.0.2.12, user: root, private_key: /home/me/keys/lab.key}\n")
    response = client.post("/api/v1/provision-runs", headers=seed.auth,
                           json=static(text, keys={"/home/me/keys/lab.key": other}))
    assert response.status_code == 201, response.json
    assert "PRIVATE KEY" not in response.get_data(as_text=True)
    with app.extensions["labfleet"].db.session() as session:
        hosts = {h["name"]: h for h in session.get(ProvisionRun, response.json["id"]).hosts}
    store = settings.data_dir / "provision" / "keys"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    for name, material in (("lab-1", ssh_key), ("lab-2", other)):
        path = Path(hosts[name]["private_key"])
        assert path.parent == store
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == material


def test_an_upload_that_is_no_key_is_refused_without_echoing_it(app, client, seed, settings):
    text = "hosts:\n  - {name: lab-1, address: 192.0.2.11, user: root, private_key: k}\n"
    answer = refused(client, seed, static(text, keys={"k": "DATABASE_PASSWORD=hunter2"}))
    assert answer["field"] == "inventory.keys.k" and "hunter2" not in answer["detail"]
    assert_nothing_ran(app, settings)


@pytest.mark.parametrize(("host_vars", "field", "words"), [
    ("ansible_connection: local", "hosts[2].vars.ansible_connection", "connection or privilege setting"),
    ("ansible_ssh_common_args: '-o ProxyCommand=touch /tmp/owned'", "hosts[2].vars.ansible_ssh_common_args",
     "connection or privilege setting"),
    ("ansible_ssh_extra_args: '-o StrictHostKeyChecking=no'", "hosts[2].vars.ansible_ssh_extra_args",
     "connection or privilege setting"),
    ("ansible_host_key_checking: false", "hosts[2].vars.ansible_host_key_checking", "connection or privilege"),
    ("ansible_become_method: su", "hosts[2].vars.ansible_become_method", "connection or privilege setting"),
    ("ansible_python_interpreter: /tmp/x", "hosts[2].vars.ansible_python_interpreter", "connection or privilege"),
    ("ansible_shell_executable: /tmp/x", "hosts[2].vars.ansible_shell_executable", "connection or privilege"),
    ("labfleet_rootfs_tarball: /etc/shadow", "hosts[2].vars.labfleet_rootfs_tarball", "operator"),
    ("labfleet_agent_wheel_python: /tmp/evil", "hosts[2].vars.labfleet_agent_wheel_python", "operator"),
    ("labfleet_enroll_token: x", "hosts[2].vars.labfleet_enroll_token", "operator"),
    ("labfleet_run_artifacts: {labs: {path: /etc/shadow}}", "hosts[2].vars.labfleet_run_artifacts",
     "the playbook sets for itself"),
    ("labfleet_attendee_shell: \"{{ lookup('pipe', 'id') }}\"", "hosts[2].vars.labfleet_attendee_shell",
     "Jinja template"),
    ("labfleet_agent_extra_config: {log_format: \"{% if true %}x{% endif %}\"}",
     "hosts[2].vars.labfleet_agent_extra_config", "Jinja template"),
    ("something_else: 1", "hosts[2].vars.something_else", "not a labfleet playbook variable"),
])
def test_host_vars_are_labfleets_own_vm_variables(app, client, seed, settings, host_vars, field, words):
    answer = refused(client, seed, with_vars(host_vars))
    assert answer["field"] == field
    assert words in answer["detail"]
    assert_nothing_ran(app, settings)


def test_ini_and_defaults_are_held_to_the_same_rule(app, client, seed, settings):
    ini = {"driver": "static", "inventory": {
        "path": "room.ini", "content": "[lab]\nlab-1 ansible_host=192.0.2.11 ansible_user=root "
                                       "ansible_connection=local\n"}}
    assert refused(client, seed, ini)["field"] == "vars.ansible_connection"
    defaults = static("defaults: {user: root, vars: {ansible_become_password: x}}\n"
                      "hosts:\n  - {name: lab-1, address: 192.0.2.11}\n")
    assert refused(client, seed, defaults)["field"] == "hosts[0].vars.ansible_become_password"
    localhost = static("hosts:\n  - {name: localhost, address: 192.0.2.11, user: root}\n")
    assert "controller itself" in refused(client, seed, localhost)["detail"]
    assert_nothing_ran(app, settings)


def test_the_connection_fields_may_be_written_as_their_ansible_names(client, seed):
    body = static("hosts:\n  - name: lab-1\n    vars: {ansible_host: 192.0.2.99, ansible_port: 2200, "
                  "ansible_user: ubuntu, labfleet_attendee_shell: /bin/zsh}\n")
    response = client.post("/api/v1/provision-runs", json=body, headers=seed.auth)
    assert response.status_code == 201, response.json
    assert [h["address"] for h in response.json["hosts"]] == ["192.0.2.99"]


@pytest.mark.parametrize(("body", "field", "words"), [
    (static("hosts:\n  - {name: a, address: 192.0.2.1, user: root}\n", check_keys=False), "inventory.check_keys",
     "cannot switch a check off"),
    ({"driver": "netns", "inventory": {"state_dir": "/tmp/planted-fleet"}}, "inventory.state_dir",
     "LABFLEET_FLEET_DIR"),
    ({"driver": "netns", "inventory": {"prefix": "x"}}, "inventory.prefix", "LABFLEET_FLEET_DIR"),
    ({"driver": "static", "inventory": {"path": "/etc/shadow.yml"}}, "inventory.content", "file's text"),
])
def test_driver_folders_and_checks_are_the_operators_not_a_requests(app, client, seed, settings, body, field,
                                                                    words):
    answer = refused(client, seed, body)
    assert answer["field"] == field and words in answer["detail"]
    assert_nothing_ran(app, settings)


def test_a_vagrantfile_folder_a_request_names_is_never_run(app, client, seed, settings, tmp_path, monkeypatch):
    # Stand-in for Vagrant (not installed here): a `vagrant` on PATH that records that it ran, and where.
    planted, bin_dir, marker = tmp_path / "planted", tmp_path / "bin", tmp_path / "vagrant-ran"
    planted.mkdir()
    bin_dir.mkdir()
    (planted / "Vagrantfile").write_text("system('id > /tmp/owned')\n")
    fake = bin_dir / "vagrant"
    fake.write_text(f"#!/bin/sh\npwd > {marker}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    answer = refused(client, seed, {"driver": "vagrant", "inventory": {"directory": str(planted)}})
    assert answer["field"] == "inventory.directory" and "LABFLEET_VAGRANT_DIR" in answer["detail"]
    assert not marker.exists()
    assert_nothing_ran(app, settings)


def test_every_playbook_variable_is_either_a_host_variable_or_the_operators():
    """A variable added to a role's defaults must be classified before an inventory may set it."""
    import yaml

    from controller.provision.inventory.host_vars import OPERATOR_VARS, VM_VARS
    from tests.processes import REPO

    defaults: set[str] = set()
    for path in (REPO / "playbooks" / "roles").glob("*/defaults/main.yml"):
        defaults |= set(yaml.safe_load(path.read_text()))
    assert defaults - VM_VARS - OPERATOR_VARS == set()
    assert VM_VARS - defaults == {"labfleet_cgroup_parent"}  # the netns driver's, read with a default
    assert not VM_VARS & OPERATOR_VARS


def test_the_cli_uploads_the_key_files_the_inventory_names(tmp_path, ssh_key):
    """`labfleet provision --inventory` against a real controller: the key relative to the file is sent
    and stored as the controller's copy; a key file that is not there stops the CLI before any request."""
    import json
    import subprocess
    import sys

    from tests.processes import REPO, Controller

    room = tmp_path / "room"
    (room / "keys").mkdir(parents=True)
    (room / "keys" / "room.key").write_text(ssh_key)
    inventory = room / "room.yml"
    inventory.write_text("defaults: {user: root, private_key: keys/room.key}\n"
                         "hosts:\n  - {name: lab-1, address: 192.0.2.11}\n")
    data_dir = tmp_path / "data"
    ctl = Controller(data_dir, f"sqlite:///{tmp_path / 'labfleet.sqlite'}", "")
    ctl.init(enroll_uses=1)
    try:
        ctl.start_web()

        def labfleet(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "controller.cli.main", *args], env=ctl.env(), cwd=REPO,
                                  capture_output=True, text=True, timeout=60)

        done = labfleet("provision", "--inventory", str(inventory), "--no-wait", "--json")
        assert done.returncode == 0, done.stderr
        assert "PRIVATE KEY" not in done.stdout
        stored = list((data_dir / "provision" / "keys").iterdir())
        assert [p.read_text() for p in stored] == [ssh_key]
        assert json.loads(done.stdout)["hosts"][0]["host"] == "lab-1"

        inventory.write_text("hosts:\n  - {name: lab-2, address: 192.0.2.12, user: root, "
                             "private_key: keys/gone.key}\n")
        done = labfleet("provision", "--inventory", str(inventory), "--no-wait")
        assert done.returncode != 0 and "key file" in done.stderr and "gone.key" in done.stderr
    finally:
        ctl.stop()
