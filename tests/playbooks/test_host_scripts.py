"""The scripts site.yml leaves on a lab VM, run here on this machine's real kernel.

``labfleet-readiness`` only reads the kernel and a catalog and writes to the
test's temporary folder. (The full path through Ansible on a fleet host is in
test_site_on_fleet.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.playbooks.conftest import FLAGGED_LAB, MISSING_PROGRAM, make_catalog
from tests.processes import REPO

ROLES = REPO / "playbooks" / "roles"
READINESS = ROLES / "lab_vm" / "files" / "labfleet-readiness"


def run(script: Path, *args: str) -> dict:
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_readiness_reports_kernel_facts_and_flags_what_cannot_run(tmp_path):
    catalog = make_catalog(tmp_path / "catalog")
    (catalog / "zz-broken").mkdir()  # a lab folder without lab.toml
    out = tmp_path / "state" / "readiness.json"

    first = run(READINESS, "--labs", str(catalog), "--out", str(out), "--name", "vm-7")
    report = first["report"]
    assert first["changed"] and json.loads(out.read_text()) == report
    assert report["host"] == "vm-7" and report["kernel"] == os.uname().release
    assert report["cgroup"]["layout"] in ("v1", "v2", "hybrid")
    assert set(os.listdir("/proc/self/ns")) >= set(report["namespaces"]) >= {"mnt", "pid", "net", "uts"}
    assert report["seccomp"]["supported"] and "errno" in report["seccomp"]["actions_avail"]
    assert report["libseccomp"]["python_bindings"] and report["libseccomp"]["version"].count(".") == 2
    assert report["labs"][FLAGGED_LAB] == {"ready": False,
                                          "missing": [f"the program {MISSING_PROGRAM} is not installed"]}
    assert report["labs"]["ns-uts"]["ready"] is True
    assert "zz-broken" in report["broken_labs"] and "lab.toml" in report["broken_labs"]["zz-broken"]
    assert report["ready"] is False and FLAGGED_LAB in report["not_ready"]

    again = run(READINESS, "--labs", str(catalog), "--out", str(out), "--name", "vm-7")
    assert again == {"changed": False, "report": report}


def test_the_readiness_script_needs_only_the_agents_code(tmp_path):
    """On a VM it runs from /usr/local/sbin with the agent's venv: nothing from the repo beside it."""
    script = shutil.copy(READINESS, tmp_path / "labfleet-readiness")
    result = run(Path(script), "--labs", str(tmp_path / "no-catalog"), "--out", str(tmp_path / "r.json"))
    assert result["report"]["labs"] == {} and result["report"]["ready"] is False
    assert list(result["report"]["broken_labs"]) == [str(tmp_path / "no-catalog")]


# --- the attendee's prompt hook for `lab help` answers -----------------------------------------------

HELP_HOOK = ROLES / "node_agent" / "files" / "labfleet-help.sh"


def prompts(home: Path, notice: Path, commands: str = ":\n:\n:\n") -> str:
    """An interactive bash that sources the hook and shows a prompt before each command (and at exit)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LABFLEET_HELP_NOTICE": str(notice), "PS1": "$ "}
    result = subprocess.run(["bash", "--noprofile", "--norc", "-i"], input=f". {HELP_HOOK}\n{commands}exit\n",
                            capture_output=True, text=True, timeout=60, env=env, cwd=home)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_prompt_hook_prints_a_new_answer_once_across_prompts_and_shells(tmp_path):
    home, notice = tmp_path / "home", tmp_path / "help-notice"
    home.mkdir()
    assert prompts(home, notice) == ""  # no notice file yet: nothing, and no error

    notice.write_text("ab12cd34-claimed-2026-12-04T14:00:00Z\tAda is coming to help you.\n")
    assert prompts(home, notice) == "[lab help] Ada is coming to help you.\n"
    assert prompts(home, notice) == ""  # a new terminal does not repeat what the attendee has seen

    # The answer arrives while the shell is open: shown on the next prompt, once.
    # (printf's escapes: a tab typed into an interactive bash would be completion, not a tab.)
    write = f"printf '%s\\t%s\\n' ab12cd34-reply-2026-12-04T14:01:00Z 'Ada: try unshare --uts' > {notice}"
    assert prompts(home, notice, f":\n{write}\n:\n:\n") == "[lab help] Ada: try unshare --uts\n"


def test_the_prompt_hook_shows_no_control_characters_and_stays_out_of_scripts(tmp_path):
    home, notice = tmp_path / "home", tmp_path / "help-notice"
    home.mkdir()
    notice.write_bytes(b"s1\tAda: \x1b]0;owned\x07 look\n")
    assert prompts(home, notice) == "[lab help] Ada: ?]0;owned? look\n"

    notice.write_text("s2\tnot for scripts\n")
    script = subprocess.run(["bash", "--noprofile", "--norc", "-c", f". {HELP_HOOK}; echo \"[$PROMPT_COMMAND]\""],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(home), "LABFLEET_HELP_NOTICE": str(notice)})
    assert script.stdout == "[]\n" and script.stderr == ""
    sh = subprocess.run(["sh", "-c", f". {HELP_HOOK}; echo sourced"], capture_output=True, text=True, timeout=60,
                        env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
    assert sh.returncode == 0 and sh.stdout == "sourced\n" and sh.stderr == ""


def test_the_prompt_hook_announces_a_message_once_even_without_a_reachable_agent(tmp_path):
    # With the agent, `lab messages --new` prints the unread ones (tests/playbooks/test_session_ceiling.py);
    # without `lab` on the PATH the hook prints the agent's announcement itself.
    home, notice = tmp_path / "home", tmp_path / "help-notice"
    home.mkdir()
    notice.write_text("msg-0123456789ab\tmessage from Ada: break until 11:00\n")
    assert prompts(home, notice) == "[lab message] message from Ada: break until 11:00\n"
    assert prompts(home, notice) == ""
