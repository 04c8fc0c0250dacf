"""The cgroup labs on the real kernel: cg-pids, cg-forkbomb, cg-cpu.

Every step's fail / pass / reset cycle is test_catalog.py's; here, after the
walkthrough and after solve, what it does not assert for these labs (the
reason names the missing cgroup, the evidence the back-end, reset removes the
lab's cgroup), the evidence of each lab, then the cheats docs/labs.md lists for these labs,
a lab whose controller this machine lacks, and repeated solve/reset cycles.

The labs run on the back-end the machine offers for each controller. On this
machine kind (hybrid, pids and cpu on v1 hierarchies) that is v1; the cgroup2
variants of the same steps run where cgroup2 offers the controllers, and are
skipped here with the machine's own list of cgroup2 controllers as reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from node_agent.kernel import cgroup_control as cc
from node_agent.kernel import proctable, reaper
from node_agent.labs.builtins.cgroups import lab_cgroup
from node_agent.labs.engine import Engine
from node_agent.labs.loader import load_catalog
from node_agent.labs.progress import ProgressStore
from tests.labs.conftest import LABS_DIR, LabEnv
from tests.labs.helpers import wait_for

STEPS = [("cg-pids", "limit"), ("cg-forkbomb", "bomb"), ("cg-cpu", "throttle")]
CONTROLLER = {"cg-pids": "pids", "cg-forkbomb": "pids", "cg-cpu": "cpu"}
UNIFIED = cc.find_hierarchy("")
V2_CONTROLLERS = cc.controllers(UNIFIED.mount) if UNIFIED else []


def check(env: LabEnv, lab: str, step: str) -> dict:
    result = env.engine.check(lab, step)
    return result["steps"][0]


def assert_reset_clean(env: LabEnv, lab: str, step: str) -> None:
    report = env.engine.reset(lab)
    assert report["clean"], report
    assert report["leftovers"] == []
    after = check(env, lab, step)
    assert after["status"] == "failed" and after["reason"], after
    assert env.residue(lab) == []
    cg = lab_cgroup(env.context(lab), CONTROLLER[lab], env.context(lab).cgroup[0])
    assert cg is not None and not cg.path.exists()


# The fail / pass / reset-clean / residue [] cycle of every step is test_catalog.py's; here what it does not
# assert for the cgroup labs: the reason names the missing cgroup, the evidence names the back-end, and the
# reset removes the lab's own cgroup directory.
@pytest.mark.parametrize("how", ["walkthrough", "solve"])
@pytest.mark.parametrize(("lab", "step"), STEPS)
def test_check_names_the_backend_and_reset_removes_the_lab_cgroup(lab_env, lab, step, how):
    before = check(lab_env, lab, step)
    assert before["status"] == "failed" and "no cgroup" in before["reason"], before

    if how == "walkthrough":
        lab_env.run_walkthrough(lab, step)
    else:
        assert lab_env.engine.solve(lab, step)["passed"]

    after = check(lab_env, lab, step)
    assert after["status"] == "passed", after
    assert after["evidence"]["backend"] in ("v1", "v2")
    assert_reset_clean(lab_env, lab, step)


def test_pids_evidence_carries_the_attendees_number_and_the_refusals(lab_env):
    lab_env.engine.solve("cg-pids", "limit")
    result = check(lab_env, "cg-pids", "limit")
    ev = result["evidence"]
    ctx = lab_env.context("cg-pids")
    assert ev["pids.max"] == ctx.pids_max == ev["wanted_max"]
    assert ev["pids.events.max"] >= 1
    assert ev["attendee_members"] and set(ev["attendee_members"]) <= set(ev["members"])


def test_cpu_solve_leaves_the_quota_and_a_member_and_puts_the_weight_back(lab_env):
    solved = lab_env.engine.solve("cg-cpu", "throttle")
    cg = lab_cgroup(lab_env.context("cg-cpu"), "cpu", "cglab2")
    evidence = solved["solved"][0]["evidence"][0]
    assert evidence["throttled"] and evidence["nr_throttled"] > 0
    assert cc.cpu_quota(cg) == (50_000, 100_000)
    assert cc.cpu_weight(cg) == cc.CPU_WEIGHT_DEFAULT[cg.version]
    assert cc.procs(cg) == [evidence["holder"]], "the busy loops are stopped, the sleeping holder stays"


def test_forkbomb_solve_holds_the_cgroup_full_and_the_probe_is_refused_at_once(lab_env):
    lab_env.engine.solve("cg-forkbomb", "bomb")
    cg = lab_cgroup(lab_env.context("cg-forkbomb"), "pids", "cgbomb")
    assert cc.pids_current(cg) == 50 and len(cc.procs(cg)) == 50
    events = cc.pids_events(cg)

    result = check(lab_env, "cg-forkbomb", "bomb")

    assert result["status"] == "passed", result
    assert result["evidence"]["probe_refused"] == 1 and result["evidence"]["probe_forks"] == 0
    assert cc.pids_events(cg) == events + 1 and len(cc.procs(cg)) == 50


def test_forkbomb_check_runs_its_own_probe_even_after_the_bomb_is_gone(lab_env):
    from node_agent.labs.builtins import cgroups as builtins

    lab_env.engine.solve("cg-forkbomb", "bomb")
    cg = lab_cgroup(lab_env.context("cg-forkbomb"), "pids", "cgbomb")
    builtins._release_held(cg)  # the bomb ends, as the attendee's does after its 15 s
    assert cc.wait_empty(cg, reap=reaper.reap_orphans, timeout=5)
    events = cc.pids_events(cg)

    result = check(lab_env, "cg-forkbomb", "bomb")

    assert result["status"] == "passed", result
    assert result["evidence"]["probe_refused"] == 1 and result["evidence"]["probe_forks"] == 49
    assert cc.pids_events(cg) == events + 1
    assert cc.procs(cg) == [], "the probe leaves no process behind"


# ---- cheats ------------------------------------------------------------------------------------------------


def _attendee_sleeper(env: LabEnv, lab: str, cg: cc.LabCgroup) -> None:
    env.context(lab).spawn(["sleep", "600"], as_attendee=True, cgroup=[cg.path])
    uid = env.attendee.uid
    # the root stub joins the cgroup first, then drops to the attendee
    wait_for(lambda: any(proctable.uid_of(pid) == uid for pid in cc.procs(cg)), "the attendee's sleep in the cgroup",
             timeout=5)


def test_pids_max_set_but_never_reached_fails_with_reason(lab_env):
    ctx = lab_env.context("cg-pids")
    cg = lab_cgroup(ctx, "pids", "cglab1")
    cc.create(cg)
    _attendee_sleeper(lab_env, "cg-pids", cg)
    cc.set_pids_max(cg, ctx.pids_max)

    result = check(lab_env, "cg-pids", "limit")

    assert result["status"] == "failed"
    assert "no fork has been refused yet" in result["reason"]
    assert result["evidence"]["pids.events.max"] == 0


def test_another_attendees_number_fails(lab_env):
    ctx = lab_env.context("cg-pids")
    cg = lab_cgroup(ctx, "pids", "cglab1")
    cc.create(cg)
    _attendee_sleeper(lab_env, "cg-pids", cg)
    other = ctx.pids_max + 1
    cc.set_pids_max(cg, other)

    result = check(lab_env, "cg-pids", "limit")

    assert result["status"] == "failed"
    assert f"pids.max is {other}, but your number for this lab is {ctx.pids_max}" in result["reason"]


def test_no_attendee_process_inside_fails(lab_env):
    ctx = lab_env.context("cg-pids")
    cg = lab_cgroup(ctx, "pids", "cglab1")
    cc.create(cg)
    cc.set_pids_max(cg, ctx.pids_max)

    result = check(lab_env, "cg-pids", "limit")

    assert result["status"] == "failed" and "None of your processes" in result["reason"]


def test_forged_pids_files_bind_mounted_over_the_cgroup_are_detected(lab_env, tmp_path):
    """A root attendee writes the counters they wish they had and bind-mounts them over the real ones."""
    ctx = lab_env.context("cg-pids")
    cg = lab_cgroup(ctx, "pids", "cglab1")
    cc.create(cg)
    _attendee_sleeper(lab_env, "cg-pids", cg)
    cc.set_pids_max(cg, ctx.pids_max)
    forged = tmp_path / "pids.events"
    forged.write_text("max 3\n")
    subprocess.run(["mount", "--bind", str(forged), str(cg.file("pids.events"))], check=True)
    try:
        result = check(lab_env, "cg-pids", "limit")
    finally:
        subprocess.run(["umount", str(cg.file("pids.events"))], check=True)

    assert result["status"] == "forged", result
    assert "pids.events" in result["reason"] and "not the kernel's cgroup file" in result["reason"]


def test_forged_pids_max_from_another_cgroup_is_detected(lab_env):
    """The same device (cgroupfs) but another cgroup's file: mountinfo shows the bind mount."""
    ctx = lab_env.context("cg-pids")
    cg = lab_cgroup(ctx, "pids", "cglab1")
    decoy = lab_cgroup(ctx, "pids", "decoy")
    cc.create(cg)
    cc.create(decoy)
    cc.set_pids_max(decoy, ctx.pids_max)
    subprocess.run(["mount", "--bind", str(decoy.file("pids.max")), str(cg.file("pids.max"))], check=True)
    try:
        result = check(lab_env, "cg-pids", "limit")
    finally:
        subprocess.run(["umount", str(cg.file("pids.max"))], check=True)
        cc.rmdir(decoy)

    assert result["status"] == "forged", result
    assert "mounted on" in result["reason"] and "pids.max" in result["reason"]


def test_forkbomb_with_the_wrong_limit_fails(lab_env):
    ctx = lab_env.context("cg-forkbomb")
    cg = lab_cgroup(ctx, "pids", "cgbomb")
    cc.create(cg)
    cc.set_pids_max(cg, 10)

    result = check(lab_env, "cg-forkbomb", "bomb")

    assert result["status"] == "failed" and "set it to 50" in result["reason"]


def test_cpu_quota_without_a_hog_is_not_throttled(lab_env):
    ctx = lab_env.context("cg-cpu")
    cg = lab_cgroup(ctx, "cpu", "cglab2")
    cc.create(cg)
    cc.set_cpu_quota(cg, 50_000, 100_000)
    _attendee_sleeper(lab_env, "cg-cpu", cg)

    result = check(lab_env, "cg-cpu", "throttle")

    assert result["status"] == "failed"
    assert "has not throttled" in result["reason"] and result["evidence"]["nr_throttled"] == 0


def test_cpu_without_quota_names_the_file_to_write(lab_env):
    ctx = lab_env.context("cg-cpu")
    cg = lab_cgroup(ctx, "cpu", "cglab2")
    cc.create(cg)

    result = check(lab_env, "cg-cpu", "throttle")

    quota_file = "cpu.max" if cg.version == 2 else "cpu.cfs_quota_us"
    assert result["status"] == "failed" and quota_file in result["reason"]


# ---- reset catches what the attendee left running -------------------------------------------------------


def test_reset_kills_a_bomb_still_running_and_leaves_nothing(lab_env):
    lab_env.run_walkthrough("cg-forkbomb", "bomb")  # its bomb keeps running for 15 s
    ctx = lab_env.context("cg-forkbomb")
    cg = lab_cgroup(ctx, "pids", "cgbomb")
    assert cc.pids_current(cg) == 50

    report = lab_env.engine.reset("cg-forkbomb")

    assert report["clean"], report
    assert any("cgbomb" in r for r in report["removed"])
    assert lab_env.residue("cg-forkbomb") == []


def test_reset_to_the_step_starts_it_again_from_clean(lab_env):
    lab_env.engine.solve("cg-pids", "limit")
    report = lab_env.engine.reset("cg-pids", to_step="limit", solve_earlier=True)
    assert report["clean"], report
    assert check(lab_env, "cg-pids", "limit")["status"] == "failed"


def test_solve_reset_cycles_leave_nothing_behind(lab_env):
    for _ in range(5):
        for lab, step in STEPS:
            solved = lab_env.engine.solve(lab, step)
            assert solved["passed"], solved
            reset = lab_env.engine.reset(lab)
            assert reset["clean"], reset
    for lab, _step in STEPS:
        assert lab_env.residue(lab) == []
    reaper.reap_orphans()


# ---- what the machine lacks ----------------------------------------------------------------------------


def _missing_controller(ctx) -> str:
    for name in ("net_cls", "net_prio", "perf_event", "rdma", "misc", "labfleet-none"):
        if ctx.cgroup_backend(name) is None:
            return name
    raise AssertionError("unreachable: labfleet-none is never a controller")


def test_a_lab_needing_a_controller_the_vm_lacks_is_unavailable_not_failed(lab_env, tmp_path):
    missing = _missing_controller(lab_env.context("cg-pids"))
    labs = tmp_path / "labs"
    shutil.copytree(LABS_DIR / "cg-pids", labs / "cg-pids")
    toml = labs / "cg-pids" / "lab.toml"
    toml.write_text(toml.read_text().replace('requires = ["cgroup:pids"]', f'requires = ["cgroup:{missing}"]'))
    catalog = load_catalog(labs)
    assert not catalog.errors, catalog.errors
    engine = Engine(catalog, lab_env.context, ProgressStore(tmp_path / "progress.json"))

    result = engine.check("cg-pids", "limit")
    listed = engine.list()["labs"][0]
    solved = engine.solve("cg-pids", "limit")

    assert result["status"] == "unavailable" and not result["passed"]
    assert missing in result["steps"][0]["reason"] and "unavailable on this VM" in result["steps"][0]["reason"]
    assert listed["available"] is False and missing in listed["unavailable_reasons"][0]
    assert solved["status"] == "unavailable"


def test_the_checker_itself_says_unavailable_when_the_controller_is_missing(lab_env):
    """Without the engine's requirement gate (a lab file that forgot ``requires``), the checker still answers
    "unavailable" with the machine's reason instead of failing."""
    from node_agent.labs.builtins import cgroups as builtins

    ctx = lab_env.context("cg-pids")
    missing = _missing_controller(ctx)
    assert lab_cgroup(ctx, missing, "cglab1") is None
    result = builtins._unavailable(missing)
    assert result.status == "unavailable" and missing in result.reason


@pytest.mark.skipif(UNIFIED is None or "pids" in V2_CONTROLLERS or not Path("/sys/fs/cgroup/pids").is_dir(),
                    reason="only meaningful on a hybrid machine whose pids controller is on v1")
def test_hybrid_machine_runs_the_pids_labs_on_v1_and_says_so(lab_env):
    assert lab_env.context("cg-pids").cgroup_backend("pids") == "v1"
    assert "/pids/" in lab_env.context("cg-pids").placeholders()["cgroup_dir"]


@pytest.mark.skipif("pids" not in V2_CONTROLLERS or "cpu" not in V2_CONTROLLERS,
                    reason=f"cgroup2 on this machine offers only {V2_CONTROLLERS}: pids and cpu are bound to v1 "
                           f"hierarchies, and a lab VM is never re-mounted; the v1 back-end ran above")
@pytest.mark.parametrize(("lab", "step"), STEPS)
def test_v2_backend_walkthrough_and_solve(lab_env, lab, step):
    ctx = lab_env.context(lab)
    assert ctx.cgroup_backend(CONTROLLER[lab]) == "v2"
    lab_env.run_walkthrough(lab, step)
    assert check(lab_env, lab, step)["status"] == "passed"
    assert_reset_clean(lab_env, lab, step)
    assert lab_env.engine.solve(lab, step)["passed"]
    assert_reset_clean(lab_env, lab, step)


def _enable_function(script: Path) -> str:
    text = script.read_text()
    start = text.index("enable_v2_controller() {")
    return text[start:text.index("\n}\n", start) + 3]


@pytest.mark.skipif(UNIFIED is None, reason="this machine has no cgroup2 mount (pure v1)")
def test_walkthroughs_cgroup2_branch_enables_the_controller_down_to_the_lab_cgroup(lab_env):
    """The walkthroughs' cgroup2 step, run for real on this machine's cgroup2 tree with a controller that tree
    offers (pids and cpu are on v1 hierarchies here, so their own v2 runs are the skipped test above)."""
    functions = {_enable_function(LABS_DIR / lab / f"{step}.sh") for lab, step in STEPS}
    assert len(functions) == 1, "the three walkthroughs carry the same cgroup2 helper"
    offered = [c for c in V2_CONTROLLERS if c != "cpuset"]
    if not offered:
        pytest.skip(f"cgroup2 here offers no controller to enable ({V2_CONTROLLERS})")
    controller = offered[0]
    ctx = lab_env.context("cg-pids")
    target = UNIFIED.mount / ctx.cgroup_parent / "cglab1"
    chain = [UNIFIED.mount / Path(*Path(ctx.cgroup_parent).parts[:i]) for i in range(len(Path(ctx.cgroup_parent).parts) + 1)]
    had = {d: d.is_dir() and controller in cc.subtree_control(d) for d in chain}
    script = functions.pop() + f'sudo mkdir -p "$1"\nenable_v2_controller {controller} "$1"\n'
    try:
        done = subprocess.run(["bash", "-c", script, "walkthrough", str(target)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        for d in chain:
            assert controller in cc.subtree_control(d), d
        assert controller in cc.controllers(target)
        assert any(f.name.startswith(controller + ".") for f in target.iterdir())
    finally:
        if target.is_dir():
            target.rmdir()
        for d in reversed(chain):  # put every level back as it was, deepest first
            if d.is_dir() and not had[d] and controller in cc.subtree_control(d):
                (d / "cgroup.subtree_control").write_text(f"-{controller}")
