"""A lab cgroup parent that also holds the VM's own processes: never residue, never killed, refused at start.

On a fleet host the agent's parent was the host's own cgroup: every reset said
"reset INCOMPLETE" and listed PID 1, sshd, the agent and the attendee's login
shell. Here an "agent" process sits, with an attendee "login shell", in a
``system`` group below the lab parent, as they did there; a real lab cgroup
beside it must still be found.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.labs.conftest import REPO, LabEnv

# The agent's side, in a process of its own: it moves itself into <parent>/system, starts the attendee's
# "login shell" and a root "sshd" there, then runs the residue scan, the kill guard and the start-up check.
AGENT = """
import json, os, subprocess, sys, types
from pathlib import Path
from node_agent.errors import ConfigurationError
from node_agent.labs import residue
from node_agent.labs.context import Attendee, LabContext
from node_agent.kernel import procfs
from node_agent.labs.engine_setup import check_cgroup_parent
args = json.loads(sys.argv[1])
Path(args["system"], "cgroup.procs").write_text(str(os.getpid()))
a = Attendee.lookup(args["user"])
shell = subprocess.Popen(["setpriv", f"--reuid={a.uid}", f"--regid={a.gid}", "--init-groups", "--", "sleep", "300"])
sshd = subprocess.Popen(["sleep", "300"])  # root, like the VM's sshd
try:
    ctx = LabContext(lab_id="test", lab_dir=Path("/nonexistent"), attendee=a, nonce=1, prefix=args["prefix"],
                     cgroup_parent=args["parent"], work_root=Path(args["work"]))
    out = {"agent": os.getpid(), "shell": shell.pid, "sshd": sshd.pid, "scan": residue.scan(ctx)}
    try:
        ctx.kill([procfs.read(sshd.pid)])
        out["killed_sshd"] = True
    except PermissionError as exc:
        out["killed_sshd"] = str(exc)
    try:
        check_cgroup_parent(types.SimpleNamespace(lab_cgroup_parent=args["parent"]))
        out["start"] = "accepted"
    except ConfigurationError as exc:
        out["start"] = str(exc)
finally:
    for p in (shell, sshd):
        p.kill()
        p.wait()
print(json.dumps(out))
"""


def test_the_vms_own_processes_under_the_lab_parent_are_not_residue(lab_env: LabEnv):
    ctx = lab_env.context("test")
    root = ctx.cgroup_root("pids")
    assert root is not None, "no pids controller on this machine"
    system = root / ctx.cgroup_parent / "system"
    system.mkdir(parents=True)
    lab_cgroup = ctx.cgroup_dir("pids", "cglab1")
    lab_cgroup.mkdir()
    a = lab_env.attendee
    stray = subprocess.Popen(["sh", "-c", f'echo $$ > "{lab_cgroup}/cgroup.procs" && exec setpriv --reuid={a.uid} '
                                          f'--regid={a.gid} --init-groups -- sleep 300'])
    try:
        done = subprocess.run([sys.executable, "-c", AGENT, json.dumps({
            "system": str(system), "user": a.user, "prefix": lab_env.prefix, "parent": ctx.cgroup_parent,
            "work": str(lab_env.work_root)})], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
    finally:
        stray.kill()
        stray.wait()
    scan = out["scan"]
    # The lab's own leftovers are still found...
    assert any(x.startswith(f"process {stray.pid} ") and "in a lab cgroup" in x for x in scan), scan
    assert f"cgroup {lab_cgroup}" in scan, scan
    # ...and nothing of the system: not the agent, sshd or the attendee's shell, not their cgroup; the
    # reset's kill refuses sshd, and the agent refuses to start with this parent.
    ours = [f"process {out[k]} " for k in ("agent", "shell", "sshd")]
    assert not [x for x in scan if any(x.startswith(o) for o in ours) or "system" in x], scan
    assert "not the lab's" in str(out["killed_sshd"]), out
    assert out["start"].startswith("lab_cgroup_parent: ") and "holds this VM's own processes" in out["start"], out
    system.rmdir()
