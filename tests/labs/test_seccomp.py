"""The seccomp labs on the real kernel: sc-profile, sc-strict, sc-filter, sc-docker.

Every step's fail / pass / reset cycle (walkthrough and solve) is test_catalog.py's; here, after the
walkthroughs (gcc and strace included, each step after the ones before it) and after solve, what a seccomp
reset must also undo: no process of the attendee under seccomp, ~/seccomp/<lab> removed. Then the cheats: a program with the right name but no filter,
a traced task, a forged /proc/<pid>/status, and the profile edit that looks right but changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from node_agent.kernel import procfs
from tests import attendee_share
from tests.labs.conftest import LabEnv
from tests.labs.helpers import wait_for


def _scrun() -> str:
    """sc-docker's runner as the attendee starts it: from the copy they can read (the clone may be 0700)."""
    share = attendee_share.get()
    return f"{share.python} {share.labs}/sc-docker/scrun"

STEPS = [("sc-profile", "trace"), ("sc-strict", "strict"), ("sc-strict", "exit"), ("sc-filter", "allow"),
         ("sc-filter", "deny"), ("sc-docker", "default"), ("sc-docker", "custom")]
DIRECTORY = {"sc-profile": "profile", "sc-strict": "strict", "sc-filter": "filter", "sc-docker": "docker"}


@pytest.fixture(autouse=True)
def _no_seccomp_dir_left(lab_env):
    """Cheat tests stop without a reset: their ~/seccomp goes with them, so the next test starts clean."""
    yield
    subprocess.run(["rm", "-rf", "--one-file-system", str(lab_env.attendee.home / "seccomp")], check=True)


def check(env: LabEnv, lab: str, step: str) -> dict:
    return env.engine.check(lab, step)["steps"][0]


def confined(env: LabEnv) -> list[str]:
    """The attendee's processes under seccomp (mode 1 or 2), in words."""
    out = []
    for pid in procfs.pids():
        if procfs.uid_of(pid) != env.attendee.uid:
            continue
        try:
            mode = procfs.status(pid).get("Seccomp")
        except OSError:
            continue
        if mode in ("1", "2"):
            out.append(f"{pid} Seccomp {mode}")
    return out


def as_attendee(env: LabEnv, script: str, *, background: bool = False, timeout: float = 30):
    """A bash script run as the attendee (Popen when ``background``), with the lab's environment."""
    return env.as_attendee(script, "sc-filter", background=background, timeout=timeout)


def walk(env: LabEnv, lab: str, step: str) -> None:
    """The walkthroughs of ``step`` and every step before it, as the attendee would have done them."""
    lab_def = env.catalog.get(lab)
    for s in lab_def.steps[: lab_def.step_index(step) + 1]:
        env.run_walkthrough(lab, s.id)


# The fail / pass / reset-clean / residue [] cycle of every step is test_catalog.py's; here only what a
# seccomp reset must also undo: no attendee process left under seccomp, and ~/seccomp/<lab> removed.
@pytest.mark.parametrize("how", ["walkthrough", "solve"])
@pytest.mark.parametrize(("lab", "step"), STEPS)
def test_reset_leaves_no_confined_process_and_removes_the_lab_directory(lab_env, lab, step, how):
    if how == "walkthrough":
        walk(lab_env, lab, step)
    else:
        assert lab_env.engine.solve(lab, step)["passed"]
    assert check(lab_env, lab, step)["status"] == "passed"

    report = lab_env.engine.reset(lab)

    assert report["clean"], report
    assert confined(lab_env) == []
    assert not (lab_env.attendee.home / "seccomp" / DIRECTORY[lab]).exists()


# --- what the checks saw ------------------------------------------------------------------------------

def test_filter_evidence_is_the_kernels_verdict(lab_env):
    lab_env.engine.solve("sc-filter", "deny")
    ev = check(lab_env, "sc-filter", "deny")["evidence"]["live"]
    assert ev["Seccomp"] == 2 and ev["Seccomp_filters"] >= 1 and ev["NoNewPrivs"] == 1 and ev["TracerPid"] == 0
    assert ev["verdicts"] == {"mkdir": "ERRNO(1)", "mkdirat": "ERRNO(1)", "getpid": "ALLOW",
                              "reboot": "ERRNO(1)", "ptrace": "ERRNO(1)", "mount": "ERRNO(1)"}


def test_filter_program_that_still_allows_mkdir_fails_step_deny_with_the_syscall_named(lab_env):
    """Only mkdirat taken out: on x86_64 glibc's mkdir() still works (it calls mkdir(2))."""
    lab_env.run_walkthrough("sc-filter", "allow")
    as_attendee(lab_env, "cd ~/seccomp/filter && sed -i '/SCMP_SYS(mkdirat),/d' filter.c && "
                         "gcc -o filter filter.c -lseccomp")

    result = check(lab_env, "sc-filter", "deny")

    assert result["status"] == "failed"
    assert "mkdir must fail with EPERM but the filter answers ALLOW" in result["reason"]
    assert result["evidence"]["verdicts"]["mkdirat"] == "ERRNO(1)"


def test_strict_exit_step_names_the_sigkill(lab_env):
    lab_env.run_walkthrough("sc-strict", "strict")

    result = check(lab_env, "sc-strict", "exit")

    assert result["status"] == "failed" and "SIGKILL" in result["reason"], result
    assert result["evidence"]["signal"] == "SIGKILL" and result["evidence"]["seen"]["Seccomp"] == "1"
    assert check(lab_env, "sc-strict", "strict")["status"] == "passed"  # strict mode was reached


def test_docker_evidence_counts_the_blocked_syscalls(lab_env):
    lab_env.run_walkthrough("sc-docker", "default")
    ev = check(lab_env, "sc-docker", "default")["evidence"]["live"]
    # containers-common 0.50.1, default capabilities, libseccomp 2.5.4's 368 x86_64 syscalls
    assert ev["blocked"] == ev["reference_blocked"] == 56
    assert ev["differs_count"] == 0 and ev["NoNewPrivs"] == 1


def test_sc_profile_answer_is_checked_against_the_agents_strace(lab_env):
    answer = lab_env.attendee.home / "seccomp/profile/profile.txt"
    lab_env.run_walkthrough("sc-profile", "trace")
    assert check(lab_env, "sc-profile", "trace")["status"] == "passed"

    as_attendee(lab_env, "cd ~/seccomp/profile && printf 'execve\\nopenat\\nmmap\\nwrite\\n' > profile.txt")
    short = check(lab_env, "sc-profile", "trace")
    assert short["status"] == "failed" and "the program itself makes" in short["reason"]
    assert {"mkdir", "uname", "getpid"} <= set(short["evidence"]["program_own"])

    as_attendee(lab_env, "cd ~/seccomp/profile && strace -f -c -o table.txt ./hello && "
                         "awk '$1 ~ /^[0-9.]+$/ && $NF != \"total\" {print $NF}' table.txt > profile.txt && "
                         "echo frobnicate >> profile.txt")
    assert "frobnicate" in check(lab_env, "sc-profile", "trace")["reason"]
    assert answer.stat().st_uid == lab_env.attendee.uid


# --- cheats --------------------------------------------------------------------------------------------

def test_a_program_named_filter_without_a_filter_fails(lab_env):
    as_attendee(lab_env, "mkdir -p ~/seccomp/filter && cp /bin/sleep ~/seccomp/filter/filter")
    holder = as_attendee(lab_env, "exec ~/seccomp/filter/filter 600", background=True)
    try:
        wait_for(lambda: procfs.read(holder.pid) and procfs.read(holder.pid).comm == "filter", "filter")
        result = check(lab_env, "sc-filter", "allow")
        assert result["status"] == "failed"
        assert "never loaded a seccomp filter" in result["reason"], result
    finally:
        holder.kill()
        holder.wait()


def test_strict_a_self_kill_without_strict_mode_fails_and_leaves_no_child(lab_env):
    as_attendee(lab_env, "mkdir -p ~/seccomp/strict && "
                         "printf '#!/bin/sh\\nsleep 600 &\\nkill -9 $$\\n' > ~/seccomp/strict/strict "
                         "&& chmod +x ~/seccomp/strict/strict")
    result = check(lab_env, "sc-strict", "strict")
    assert result["status"] == "failed" and "never entered strict mode" in result["reason"], result
    assert result["evidence"]["signal"] == "SIGKILL"
    # the re-run's own session is gone with it: the sleep it left behind too
    assert [p.comm for p in lab_env.context("sc-strict").processes()] == []


def test_a_traced_task_does_not_count(lab_env):
    """The profile's shell run under strace (TracerPid set): a tracer could skip its filter."""
    profile = "/usr/share/containers/seccomp.json"
    tracer = as_attendee(lab_env, f"exec strace -f -o /dev/null {_scrun()} {profile} -- "
                                  "sleep 600", background=True)
    try:
        wait_for(lambda: any("Seccomp 2" in c for c in confined(lab_env)), "a traced task under seccomp")
        result = check(lab_env, "sc-docker", "default")
        assert result["status"] == "failed"
        assert "TracerPid" in result["reason"], result
    finally:
        tracer.kill()
        tracer.wait()


def test_a_forged_status_file_is_detected(lab_env, tmp_path):
    holder = as_attendee(lab_env, "exec sleep 600", background=True)
    wait_for(lambda: procfs.read(holder.pid) and procfs.read(holder.pid).comm == "sleep", "sleep")
    status = Path(f"/proc/{holder.pid}/status")
    fake = tmp_path / "status"
    fake.write_text(status.read_text().replace("Seccomp:\t0", "Seccomp:\t1"))
    subprocess.run(["mount", "--bind", str(fake), str(status)], check=True)
    try:
        result = check(lab_env, "sc-strict", "strict")
        assert result["status"] == "forged", result
        assert str(status) in result["reason"] and result["evidence"]["pid"] == holder.pid
    finally:
        subprocess.run(["umount", str(status)], check=True)
        holder.kill()
        holder.wait()


def test_a_deny_rule_appended_after_the_allow_list_is_caught(lab_env):
    """The edit that looks right: chmod denied at the end, still allowed by the first rule."""
    lab_env.run_walkthrough("sc-docker", "default")
    script = f"""python3 - <<'PY'
import json, os
p = json.load(open('/usr/share/containers/seccomp.json'))
p['syscalls'].append({{'names': ['chmod', 'fchmodat'], 'action': 'SCMP_ACT_ERRNO', 'errnoRet': 1}})
json.dump(p, open(os.path.expanduser('~/seccomp/docker/naive.json'), 'w'))
PY
setsid {_scrun()} ~/seccomp/docker/naive.json -- sleep 600 </dev/null >/dev/null 2>&1 &
"""
    as_attendee(lab_env, script)
    wait_for(lambda: len(confined(lab_env)) >= 2, "the naive profile's holder")

    result = check(lab_env, "sc-docker", "custom")

    assert result["status"] == "failed"
    assert "libseccomp keeps the first rule" in result["reason"], result


def test_another_filter_is_not_the_profile(lab_env):
    lab_env.engine.solve("sc-filter", "allow")
    result = check(lab_env, "sc-docker", "default")
    assert result["status"] == "failed" and "differently from the profile" in result["reason"], result


def test_solve_and_reset_cycles_leave_nothing(lab_env):
    for _ in range(3):
        for lab in ("sc-strict", "sc-filter", "sc-docker"):
            solved = lab_env.engine.solve(lab)
            assert solved["passed"], solved
        for lab in ("sc-strict", "sc-filter", "sc-docker"):
            assert lab_env.engine.reset(lab)["clean"]
        assert confined(lab_env) == [] and lab_env.residue("sc-docker") == []
    assert [d for d in DIRECTORY.values() if Path(lab_env.attendee.home, "seccomp", d).exists()] == []


def test_custom_profile_written_by_the_solve_is_the_attendees(lab_env):
    lab_env.engine.solve("sc-docker", "custom")
    custom = lab_env.attendee.home / "seccomp/docker/custom.json"
    assert custom.stat().st_uid == lab_env.attendee.uid
    doc = json.loads(custom.read_text())
    assert doc["syscalls"][0] == {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}


def test_reset_never_follows_a_planted_symlink(lab_env, tmp_path):
    """~/seccomp pointing at a root-owned tree: the reset, running as root, must not delete through it."""
    victim = tmp_path / "victim"
    (victim / "filter").mkdir(parents=True)
    (victim / "filter" / "precious").write_text("root's\n")
    os.chmod(tmp_path, 0o755)
    as_attendee(lab_env, f"ln -s {victim} ~/seccomp")

    report = lab_env.engine.reset("sc-filter")

    assert (victim / "filter" / "precious").read_text() == "root's\n"
    assert any("not a plain directory" in x for x in report["leftovers"]), report
    (lab_env.attendee.home / "seccomp").unlink()


def test_reset_does_not_descend_into_a_mount(lab_env, tmp_path):
    lab_env.run_walkthrough("sc-filter", "allow")
    inside = lab_env.attendee.home / "seccomp/filter/mnt"
    inside.mkdir()
    keep = tmp_path / "kept"
    keep.mkdir()
    (keep / "file").write_text("x")
    subprocess.run(["mount", "--bind", str(keep), str(inside)], check=True)
    try:
        report = lab_env.engine.reset("sc-filter")
        assert any(f"{inside} is mounted under it" in x for x in report["leftovers"]), report
        assert (keep / "file").exists()
    finally:
        subprocess.run(["umount", str(inside)], check=True)
    assert lab_env.engine.reset("sc-filter")["clean"]


def test_a_profile_that_differs_only_in_an_argument_rule_is_caught(lab_env):
    """personality allowed for every argument instead of the profile's five values: equal for all-zero
    arguments, so only the argument probes see it."""
    script = f"""mkdir -p ~/seccomp/docker && python3 - <<'PY'
import json, os
p = json.load(open('/usr/share/containers/seccomp.json'))
p['syscalls'][1]['names'].append('personality')
json.dump(p, open(os.path.expanduser('~/seccomp/docker/loose.json'), 'w'))
PY
setsid {_scrun()} ~/seccomp/docker/loose.json -- sleep 600 </dev/null >/dev/null 2>&1 &
"""
    as_attendee(lab_env, script)
    wait_for(lambda: confined(lab_env), "the loose profile's holder")

    result = check(lab_env, "sc-docker", "default")

    assert result["status"] == "failed", result
    differs = result["evidence"]["live"][0]["differs"]
    assert differs["personality(0x1)"] == {"kernel": "ALLOW", "profile": "ERRNO(38)"}
    assert all(name.startswith("personality(") for name in differs)
