"""The engine on the real kernel with small lab folders written by the test (the catalog has its own tests)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from node_agent.kernel import procfs
from node_agent.labs.loader import load_catalog
from tests.labs.conftest import LabEnv
from tests.processes import wait_until

SCRIPT_LAB = """
id = "{id}"
title = "A scripted lab"
topic = "namespaces"
minutes = 5
summary = "Make /tmp/{marker} exist. Your nonce is {{nonce}}."
requires = {requires}
[[steps]]
id = "make"
title = "Make the marker"
instructions = "make.md"
hints = ["Look at the title.", "touch the marker file"]
walkthrough = "make.sh"
check = {{ kind = "script", path = "check.sh" }}
solve = {{ kind = "script", path = "solve.sh" }}
reset = {{ kind = "script", path = "reset.sh" }}
"""


def write_lab(root: Path, lab_id: str, marker: str, requires: str = "[]") -> Path:
    folder = root / lab_id
    folder.mkdir(parents=True)
    (folder / "lab.toml").write_text(SCRIPT_LAB.format(id=lab_id, marker=marker, requires=requires))
    (folder / "make.md").write_text("Run `touch /tmp/{nonce}` ... for user {user}.\n")
    (folder / "make.sh").write_text(f"touch /tmp/{marker}\n")
    (folder / "check.sh").write_text(textwrap.dedent(f"""\
        if [ -e /tmp/{marker} ]; then echo '{{"marker": "present"}}'; exit 0; fi
        echo '{{"marker": "absent"}}'; echo "/tmp/{marker} does not exist yet"; exit 1
    """))
    (folder / "solve.sh").write_text(f"touch /tmp/{marker}\n")
    (folder / "reset.sh").write_text(f"rm -f /tmp/{marker}\n")
    return folder


@pytest.fixture
def scripted(attendee, tmp_path):
    labs = tmp_path / "labs"
    marker = f"lf-engine-{os.getpid()}-{tmp_path.name}"
    write_lab(labs, "scripted", marker)
    env = LabEnv(attendee, tmp_path, labs_dir=labs)
    yield env, Path("/tmp") / marker
    Path("/tmp", marker).unlink(missing_ok=True)
    env.cleanup()


def test_check_fails_with_reason_then_walkthrough_passes_then_reset_fails_again(scripted):
    env, marker = scripted
    first = env.engine.check("scripted")
    assert first["status"] == "failed"
    assert first["steps"][0]["reason"] == f"{marker} does not exist yet"
    assert first["steps"][0]["evidence"]["marker"] == "absent"
    env.run_walkthrough("scripted", "make")
    assert marker.exists() and marker.stat().st_uid == env.attendee.uid  # the walkthrough ran as the attendee
    assert env.engine.check("scripted", "make")["passed"]
    report = env.engine.reset("scripted")
    assert report["clean"], report["leftovers"]
    assert not marker.exists()
    assert env.engine.check("scripted")["status"] == "failed"


def test_solve_makes_the_check_pass_and_progress_is_recorded(scripted):
    env, _marker = scripted
    out = env.engine.solve("scripted")
    assert out["passed"] and [s["step"] for s in out["solved"]] == ["make"]
    listed = env.engine.list()["labs"][0]
    assert listed["steps"][0]["status"] == "passed"
    env.engine.reset("scripted")
    assert env.engine.list()["labs"][0]["steps"][0]["status"] == "not checked"


def test_instructions_and_hints_are_filled_with_the_attendee_values(scripted):
    env, _marker = scripted
    text = env.engine.instructions("scripted")["steps"][0]["instructions"]
    assert f"/tmp/{env.nonce}" in text and env.attendee.user in text
    assert env.engine.hint("scripted", "make", 9) == {
        "lab": "scripted", "step": "make", "level": 2, "of": 2, "hint": "touch the marker file"}


def test_a_lab_needing_what_the_vm_lacks_is_unavailable_not_failed(attendee, tmp_path):
    labs = tmp_path / "labs"
    write_lab(labs, "needs-more", "never", requires='["cgroup:no_such_controller", "program:no-such-program-lf"]')
    env = LabEnv(attendee, tmp_path, labs_dir=labs)
    out = env.engine.check("needs-more")
    assert out["status"] == "unavailable"
    assert "no cgroup hierarchy (v1 or v2) offers the no_such_controller controller" in out["steps"][0]["reason"]
    assert "the program no-such-program-lf is not installed" in out["steps"][0]["reason"]
    assert env.engine.list()["labs"][0]["available"] is False


@pytest.mark.parametrize("mutate, key, expected", [
    (lambda t: t.replace('topic = "namespaces"', 'topic = "networking"'), "topic", "one of namespaces"),
    (lambda t: t.replace('kind = "script", path = "check.sh"', 'kind = "no.such.checker"'),
     "steps[0].check.kind", "a built-in check"),
    (lambda t: t.replace('path = "check.sh"', 'path = "check.sh", colour = "red"'),
     "steps[0].check.colour", "one of path, timeout"),
    (lambda t: t.replace('path = "solve.sh"', "path = 42"), "steps[0].solve.path", "str"),
    (lambda t: t.replace('instructions = "make.md"', 'instructions = "gone.md"'),
     "steps[0].instructions", "an existing file"),
    (lambda t: t.replace("minutes = 5", "minutes = -1"), "minutes", "an integer from 1 to 240"),
    (lambda t: t + "\n[oops\n", "(syntax)", "valid TOML"),
    (lambda t: t.replace('id = "broken"', 'id = "other"'), "id", "the folder's name"),
])
def test_a_broken_lab_is_refused_with_path_and_key_and_the_others_still_load(tmp_path, mutate, key, expected):
    labs = tmp_path / "labs"
    write_lab(labs, "good", "good-marker")
    broken = write_lab(labs, "broken", "broken-marker")
    toml = broken / "lab.toml"
    toml.write_text(mutate(toml.read_text()))
    catalog = load_catalog(labs)
    assert list(catalog.labs) == ["good"]
    (error,) = catalog.errors
    assert error.path == str(toml) and error.key == key and expected in str(error)
    assert str(error).startswith(f"{toml}: {key}: expected")


def test_kill_refuses_a_process_that_is_not_the_labs(lab_env):
    ctx = lab_env.context("test")
    outsider = subprocess.Popen(["sleep", "30"])  # root's, in no lab cgroup: not the lab's
    try:
        info = procfs.read(outsider.pid)
        with pytest.raises(PermissionError, match=str(outsider.pid)):
            ctx.kill([info])
        assert outsider.poll() is None
    finally:
        outsider.kill()
        outsider.wait()


def test_holders_are_tracked_killed_on_reset_and_reaped(scripted):
    env, _marker = scripted
    ctx = env.context("scripted")
    holder = ctx.spawn(["unshare", "-Ur", "sleep", "300"])
    assert procfs.alive(holder.pid, holder.starttime)
    # setpriv drops to the attendee and execs; the pid and starttime stay those of the holder.
    info = wait_until(lambda: (p := procfs.read(holder.pid)) and p.uid == env.attendee.uid and p,
                      timeout=10, what="the holder running as the attendee")
    assert info.starttime == holder.starttime
    assert any("holder" in x or "new user" in x for x in env.residue("scripted"))
    report = env.engine.reset("scripted")
    assert report["clean"], report["leftovers"]
    assert procfs.starttime(holder.pid) != holder.starttime  # gone, zombie included
    assert env.residue("scripted") == []


def test_residue_names_what_an_attendee_left(lab_env):
    ctx = lab_env.context("test")
    a = lab_env.attendee
    subprocess.run(["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--init-groups", "--",
                    "setsid", "-f", "unshare", "-Ur", "sleep", "300"], check=True)
    subprocess.run(["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--init-groups", "--",
                    "ipcmk", "-M", "4096"], check=True, capture_output=True)
    found = lab_env.residue("test")
    assert any("new user namespace" in x and "sleep" in x for x in found), found
    assert any(x.startswith("SysV shm id") for x in found), found
    lab_env.cleanup()
    assert lab_env.residue("test") == []
    assert ctx.processes() == []


def test_the_agents_own_network_namespace_never_makes_a_process_the_labs(lab_env):
    # The attendee can bind-mount the host's namespace under a lab name; a reset that then
    # claimed "everything in that namespace" would kill the whole VM.
    ctx = lab_env.context("test")
    ctx.owned_netns.add(ctx.own_ns["net"])
    outsider = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(PermissionError, match=str(outsider.pid)):
            ctx.kill([procfs.read(outsider.pid)])
        assert outsider.poll() is None
        assert not ctx.is_lab_process(procfs.read(1))
    finally:
        outsider.kill()
        outsider.wait()


def test_a_crashing_checker_is_a_failed_check_that_says_so(scripted, monkeypatch):
    from node_agent.labs import registry

    env, _marker = scripted
    builtin = registry.lookup("check", "script")

    def boom(ctx, params):
        raise RuntimeError("checker bug")

    monkeypatch.setitem(registry.REGISTRY["check"], "script", registry.Builtin("check", "script",
                                                                             builtin.params_type, boom))
    (step,) = env.engine.check("scripted")["steps"]
    assert step["status"] == "failed" and "RuntimeError: checker bug" in step["reason"]


def test_a_junk_status_file_forged_over_procfs_does_not_break_the_process_scan(lab_env, tmp_path):
    a = lab_env.attendee
    holder = subprocess.Popen(["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--clear-groups", "--",
                               "sleep", "60"])
    forged = tmp_path / "status"
    forged.write_text("Name:\tsleep\nUid:\tnot-a-number\nNSpid:\t1 x 3\n")
    target = f"/proc/{holder.pid}/status"
    try:
        wait_until(lambda: procfs.uid_of(holder.pid) == a.uid, timeout=10, what="the holder as the attendee")
        subprocess.run(["mount", "--bind", str(forged), target], check=True)
        info = procfs.read(holder.pid)
        assert info is not None and info.nspid == () and info.uid == -1
        assert any(p.pid == holder.pid for p in lab_env.context("test").processes())  # found by its /proc owner
    finally:
        subprocess.run(["umount", target], capture_output=True)
        holder.kill()
        holder.wait()
