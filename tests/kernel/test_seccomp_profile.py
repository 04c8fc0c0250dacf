"""Docker's JSON profile (Debian's containers-common copy): compiled, loaded into a real process, dumped,
and judged for every x86_64 syscall against the reference computed from the JSON alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from node_agent.kernel import seccomp_filter, syscalls
from node_agent.kernel import seccomp_profile as sp
from node_agent.kernel.bpf import SeccompData
from tests.kernel.seccomp_children import REPO, python_child, run_python

RUNNER = [sys.executable, "-m", "node_agent.kernel.seccomp_profile", str(sp.DEFAULT_PROFILE), "--"]

# Calls each syscall with all-zero arguments and prints {name: errno or 0}.
PROBE = """
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for name, nr in %s:
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), 0, 0, 0, 0, 0, 0)
    out[name] = ctypes.get_errno() if ret == -1 else 0
print(json.dumps(out))
"""


def under_profile(pid_holder_argv: list[str]) -> subprocess.Popen:
    child = subprocess.Popen([*RUNNER, *pid_holder_argv], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert child.stdout.readline().strip() == "ready"
    return child


@pytest.fixture(scope="module")
def profile() -> sp.Profile:
    return sp.load()


def test_the_dumped_filter_blocks_exactly_the_reference_set(profile: sp.Profile) -> None:
    child = under_profile([sys.executable, "-c", "print('ready', flush=True); import time; time.sleep(60)"])
    try:
        dump = seccomp_filter.dump(child.pid)
    finally:
        child.kill()
        child.wait()

    reference = profile.reference()
    judged = {nr: dump.evaluate(SeccompData(nr)) for nr in syscalls.table()}
    assert {nr: (v.action, v.data) for nr, v in judged.items()} == reference
    blocked = {syscalls.name(nr) for nr, v in judged.items() if v.action != "allow"}
    assert blocked == profile.blocked()
    # containers-common 0.50.1 against libseccomp 2.5.4's 368 x86_64 syscalls, Docker's default caps.
    assert len(syscalls.table()) == 368 and len(blocked) == 56
    assert {"add_key", "request_key", "bpf", "swapon", "userfaultfd", "io_uring_setup", "kexec_load"} <= blocked
    # Podman's profile lets these through and leaves them to capabilities, unlike Docker's own profile.
    assert not {"keyctl", "unshare", "mount", "setns", "mkdir", "clone3"} & blocked


def test_the_profile_answers_as_the_reference_says(profile: sp.Profile) -> None:
    names = ["add_key", "swapon", "userfaultfd", "bpf", "io_uring_setup", "getpid", "unshare", "keyctl"]
    probe = PROBE % [(n, syscalls.number(n)) for n in names]

    confined = json.loads(run_python(probe, prefix=RUNNER))
    free = json.loads(run_python(probe))

    reference = profile.reference()
    for name in names:
        action, data = reference[syscalls.number(name)]
        if action == "errno":
            assert confined[name] == data, name
        else:
            assert confined[name] == free[name], name
    assert confined["add_key"] == 38 and confined["swapon"] == 1   # ENOSYS by default, EPERM when listed


def test_mkdir_works_and_nnp_is_set_under_the_profile(tmp_path) -> None:
    target = tmp_path / "made-under-profile"
    out = run_python(f"import os; os.mkdir({str(target)!r}); print(open('/proc/self/status').read())",
                     prefix=RUNNER)
    status = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert target.is_dir()
    assert (status["Seccomp"], status["NoNewPrivs"]) == ("2", "1")


def test_an_earlier_allow_beats_a_later_deny_as_in_libseccomp() -> None:
    """Adding an ERRNO rule for a syscall that the allow list already names does nothing: the first
    argument-free rule for a syscall wins. The reference knows it, so a check cannot be fooled by it."""
    doc = json.loads(sp.DEFAULT_PROFILE.read_text())
    doc["syscalls"].append({"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
    naive = sp.parse(doc)
    assert not {"chmod", "fchmodat"} & naive.blocked()

    for rule in doc["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW":
            rule["names"] = [n for n in rule["names"] if n not in ("chmod", "fchmodat")]
    fixed = sp.parse(doc)
    assert fixed.blocked() == sp.load().blocked() | {"chmod", "fchmodat"}
    assert fixed.reference()[syscalls.number("chmod")] == ("errno", 1)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(defaultAction="SCMP_ACT_NOPE"), "defaultAction: expected one of"),
    (lambda d: d["syscalls"][1].update(names=[]), r"syscalls\[1\]\.names: expected a non-empty list"),
    (lambda d: d["syscalls"][2]["args"][0].update(op="SCMP_CMP_ISH"), r"syscalls\[2\]\.args\[0\]\.op"),
    (lambda d: d["syscalls"][2]["args"][0].update(index=9), r"syscalls\[2\]\.args\[0\]\.index"),
    (lambda d: d["syscalls"][0].update(errnoRet="EPERM"), r"syscalls\[0\]\.errnoRet: expected a non-negative"),
    (lambda d: d.update(syscalls={}), "syscalls: expected a list"),
])
def test_a_broken_profile_is_refused_naming_the_key(tmp_path, edit, message) -> None:
    doc = json.loads(sp.DEFAULT_PROFILE.read_text())
    edit(doc)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(sp.ProfileError, match=message) as err:
        sp.load(path)
    assert str(path) in str(err.value)


def test_a_missing_or_non_json_file_is_named(tmp_path) -> None:
    with pytest.raises(sp.ProfileError, match="nope.json: cannot read"):
        sp.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(sp.ProfileError, match="bad.json: not JSON"):
        sp.load(tmp_path / "bad.json")


def test_without_libseccomp_bindings_compiling_is_unavailable_and_the_table_falls_back() -> None:
    """Python started with -S does not see the bindings: what an agent on a VM without python3-seccomp gets."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from node_agent.kernel import seccomp_profile as sp, syscalls\n"
            "print(len(syscalls.table()), syscalls.number('mkdirat'))\n"
            "try:\n    sp.build(sp.load())\nexcept sp.LibseccompUnavailable as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["368 258", sp.UNAVAILABLE]


def test_the_committed_table_is_libseccomps() -> None:
    assert syscalls.fallback_table() == syscalls.table()
    assert syscalls.name(syscalls.number("mkdirat")) == "mkdirat"
    with pytest.raises(syscalls.UnknownSyscall, match="nosuchcall"):
        syscalls.number("nosuchcall")


@pytest.mark.parametrize("caps", [sp.DEFAULT_CAPS, ()], ids=["default caps", "no caps"])
def test_argument_rules_answer_as_the_reference_says(profile: sp.Profile, caps) -> None:
    """personality's allowed values, and without CAP_AUDIT_WRITE socket's three argument rules (one of them
    two conditions ANDed): the dumped filter, asked with the compared values and their neighbours."""
    code = ("from node_agent.kernel import seccomp_profile as sp\n"
            f"sp.load_into_self(sp.load(), caps={tuple(caps)!r})\n"
            "print('ready', flush=True)\nimport time; time.sleep(60)\n")
    with python_child(code) as child:
        dump = seccomp_filter.dump(child.pid)
    probes = profile.argument_probes(caps)
    assert {syscalls.name(nr) for nr, _ in probes} == ({"personality"} if caps else {"personality", "socket"})
    for nr, args in probes:
        verdict = dump.evaluate(SeccompData(nr, args=args))
        assert (verdict.action, verdict.data) == profile.verdict_at(nr, args, caps), (syscalls.name(nr), args)
    if not caps:
        assert profile.verdict_at(syscalls.number("socket"), (16, 0, 9, 0, 0, 0), caps) == ("errno", 22)
        assert profile.verdict_at(syscalls.number("socket"), (16, 0, 0, 0, 0, 0), caps) == ("allow", 0)


def test_the_runner_refuses_a_broken_profile_before_running_anything(tmp_path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod"]}]}))
    marker = tmp_path / "ran"
    scrun = REPO / "labs" / "sc-docker" / "scrun"

    done = subprocess.run(["/usr/bin/python3", str(scrun), str(broken), "--", "touch", str(marker)],
                          capture_output=True, text=True, timeout=30)

    assert done.returncode == 1
    assert f"{broken}: syscalls[0].action: expected one of" in done.stderr
    assert not marker.exists()
    usage = subprocess.run(["/usr/bin/python3", str(scrun), str(broken)], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "usage:" in usage.stderr
