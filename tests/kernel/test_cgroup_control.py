"""Lab cgroups on the real kernel, as root: v1 hierarchies and the cgroup2 tree of this machine.

Every cgroup lives under a parent named for this test (``lfk-<hex>``) in each
hierarchy and is removed by that name afterwards. Processes are real: the
bounded fork bomb, sleepers, a busy loop. The cgroup2 parts that need a
controller the machine's cgroup2 tree does not offer are skipped with the
machine's own list in the reason; cgroup2's core files (procs, kill, events)
and enabling a controller that it does offer run here.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from node_agent.kernel import cgroup_control as cc
from node_agent.kernel import forkbomb, reaper

if os.geteuid() != 0:
    pytest.skip("cgroup tests create cgroups and move processes: run them as root", allow_module_level=True)

PIDS = cc.find_hierarchy("pids")
CPU = cc.find_hierarchy("cpu")
FREEZER = cc.find_hierarchy("freezer")
UNIFIED = cc.find_hierarchy("")
V2_CONTROLLERS = cc.controllers(UNIFIED.mount) if UNIFIED else []
needs_v2 = pytest.mark.skipif(UNIFIED is None, reason="this machine has no cgroup2 mount (pure v1)")


def v2_lacks(controller: str) -> str:
    return (f"cgroup2 on this machine offers only {V2_CONTROLLERS or '(nothing)'}; {controller} is bound to a "
            f"v1 hierarchy and a controller lives in one hierarchy only (never re-bound on a lab VM)")


@pytest.fixture(scope="module", autouse=True)
def _subreaper():
    reaper.become_subreaper()


@pytest.fixture
def parent():
    """A unique parent name, and afterwards every cgroup under it removed in every hierarchy."""
    name = "lfk-" + secrets.token_hex(3)
    yield name
    for hierarchy in (PIDS, CPU, FREEZER, UNIFIED):
        if hierarchy is None:
            continue
        root = hierarchy.mount / name
        if root.is_dir():
            for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [root]:
                cg = cc.LabCgroup(hierarchy, str(d.relative_to(hierarchy.mount))) if d != root else None
                if cg is not None:
                    cc.remove(cg, reap=reaper.reap_orphans)
                else:
                    d.rmdir()


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] in "ZX"
    except FileNotFoundError:
        return True


def sleeper(cg: cc.LabCgroup | None = None, argv: list[str] | None = None) -> subprocess.Popen:
    """A real process placed in ``cg`` before it runs anything."""
    argv = argv or ["sleep", "60"]
    if cg is not None:
        argv = ["sh", "-c", f'echo $$ > "{cg.file("cgroup.procs")}" && exec "$@"', "sh", *argv]
    with reaper.spawning():  # the subreaper must leave its exit status to Popen
        proc = subprocess.Popen(argv)
        reaper.own(proc.pid)
    if cg is not None:
        deadline = time.monotonic() + 5
        while proc.pid not in cc.procs(cg) and time.monotonic() < deadline:
            time.sleep(0.005)
    return proc


# ---- names and hierarchies -------------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", ["../escape", "/abs/x", "a//b", "onlyone", "a/b c", "a/.."])
def test_lab_cgroup_refuses_paths_outside_a_plain_parent(relpath):
    with pytest.raises(cc.CgroupError, match="expected <parent>/<name>"):
        cc.LabCgroup(cc.Hierarchy(1, Path("/sys/fs/cgroup/pids"), "pids"), relpath)


def test_find_hierarchy_names_where_each_controller_lives():
    assert PIDS is not None, "this machine kind has the pids controller"
    assert (PIDS.mount / "cgroup.procs").is_file()
    assert PIDS.version == (2 if PIDS.mount == (UNIFIED.mount if UNIFIED else None) else 1)
    missing = cc.find_hierarchy("labfleet-no-such-controller")
    assert missing is None
    reason = cc.unavailable_reason("labfleet-no-such-controller")
    assert "labfleet-no-such-controller" in reason and "cgroup2 root lists only" in reason


# ---- v1 (or whatever back-end pids has here) -------------------------------------------------------------


@pytest.mark.parametrize("slim", [True, False], ids=["posix_spawn-busybox", "fork-python"])
def test_pids_limit_refuses_forks_and_counts_them(parent, slim):
    if slim and not os.access(forkbomb.SLIM_CHILD[0], os.X_OK):
        pytest.fail(f"{forkbomb.SLIM_CHILD[0]} is missing: install busybox-static (scripts/system-packages.sh)")
    cg = cc.LabCgroup(PIDS, f"{parent}/cglab1")
    assert cc.create(cg) is True and cc.create(cg) is False
    assert cc.pids_max(cg) is None and cc.pids_events(cg) == 0
    cc.set_pids_max(cg, 7)
    assert cc.pids_max(cg) == 7

    result = forkbomb.run(cg.file("cgroup.procs"), budget=50, slim=slim)

    assert isinstance(result, forkbomb.BombResult)
    assert result.forks == 6  # the leader is the 7th task
    assert result.refused == 1 and result.first_refused_s is not None
    assert cc.pids_events(cg) == 1
    assert cc.pids_peak(cg) in (7, None)
    assert all(gone(pid) for pid in result.children + [result.leader_pid])


def test_remove_kills_a_held_bomb_and_leaves_nothing(parent):
    cg = cc.LabCgroup(PIDS, f"{parent}/cglab1")
    cc.create(cg)
    cc.set_pids_max(cg, 50)
    bomb = forkbomb.run(cg.file("cgroup.procs"), hold=True, lifetime=20)
    assert isinstance(bomb, forkbomb.Bomb)
    assert cc.pids_current(cg) == 50 and len(cc.procs(cg)) == 50
    outsider = sleeper()
    try:
        killed = cc.remove(cg, reap=reaper.reap_orphans, freezer=FREEZER)
        bomb.release()
        assert sorted(killed) == sorted(bomb.result.children + [bomb.result.leader_pid])
        assert not cg.path.exists()
        assert all(gone(pid) for pid in killed)
        assert outsider.poll() is None, "a process outside the lab cgroup must survive its reset"
    finally:
        outsider.kill()
        outsider.wait()


def test_probe_sees_eagain_in_a_full_cgroup_and_cleans_up_after_itself(parent):
    cg = cc.LabCgroup(PIDS, f"{parent}/cglab1")
    cc.create(cg)
    cc.set_pids_max(cg, 3)
    holders = [sleeper(cg) for _ in range(3)]
    try:
        before = cc.pids_events(cg)
        probe = forkbomb.probe(cg.file("cgroup.procs"), reap=reaper.reap_orphans)
        assert probe.saw_eagain and probe.forks == 0
        assert cc.pids_events(cg) == before + 1
        assert sorted(cc.procs(cg)) == sorted(p.pid for p in holders)
    finally:
        cc.remove(cg, reap=reaper.reap_orphans)
        for p in holders:
            p.wait()


def test_probe_fills_the_free_slots_then_is_refused_and_reaps_its_holders(parent):
    cg = cc.LabCgroup(PIDS, f"{parent}/cglab1")
    cc.create(cg)
    cc.set_pids_max(cg, 5)
    resident = sleeper(cg)
    try:
        probe = forkbomb.probe(cg.file("cgroup.procs"), budget=50, reap=reaper.reap_orphans)
        assert probe.saw_eagain and probe.forks == 3, probe  # resident + the probe + 3 holders = 5
        assert cc.procs(cg) == [resident.pid] and cc.pids_current(cg) == 1
        assert all(gone(pid) for pid in probe.children)

        cc.set_pids_max(cg, None)
        unlimited = forkbomb.probe(cg.file("cgroup.procs"), budget=4, reap=reaper.reap_orphans)
        assert not unlimited.saw_eagain and unlimited.forks == 4 and not unlimited.error
        assert cc.procs(cg) == [resident.pid]
    finally:
        cc.remove(cg, reap=reaper.reap_orphans)
        resident.wait()


def test_snapshot_reports_limits_counters_and_members(parent):
    cg = cc.LabCgroup(PIDS, f"{parent}/cglab1")
    assert cc.snapshot(cg)["exists"] is False
    cc.create(cg)
    cc.set_pids_max(cg, 4)
    forkbomb.run(cg.file("cgroup.procs"), budget=10)
    snap = cc.snapshot(cg)
    assert snap["exists"] is True and snap["members"] == []
    assert snap["pids.max"] == 4 and snap["pids.events.max"] == 1 and snap["pids.current"] == 0
    assert snap["cgroup"] == f"pids:/{parent}/cglab1"


def test_bomb_budget_is_a_hard_bound():
    result = forkbomb.run(None, budget=20, lifetime=5)
    assert result.forks == 20 and result.refused == 0
    assert all(gone(pid) for pid in result.children)
    with pytest.raises(ValueError, match="budget: expected 1..300"):
        forkbomb.run(None, budget=301)
    with pytest.raises(ValueError, match="lifetime"):
        forkbomb.run(None, budget=1, lifetime=0)


def test_bomb_children_self_destruct_without_release(parent):
    cg = cc.LabCgroup(PIDS, f"{parent}/cglab1")
    cc.create(cg)
    bomb = forkbomb.run(cg.file("cgroup.procs"), budget=5, hold=True, lifetime=0.3)
    assert len(cc.procs(cg)) == 6
    assert cc.wait_empty(cg, reap=reaper.reap_orphans, timeout=5)
    bomb.release()
    assert cc.rmdir(cg) is True


def test_signal_member_refuses_a_process_outside_the_cgroup(parent):
    cg = cc.LabCgroup(PIDS, f"{parent}/cglab1")
    cc.create(cg)
    outsider = sleeper()
    try:
        assert cc.signal_member(outsider.pid, cg) is False
        assert outsider.poll() is None
    finally:
        outsider.kill()
        outsider.wait()


@pytest.mark.skipif(CPU is None, reason="no cpu controller on this machine")
def test_cpu_quota_throttles_a_busy_loop_and_the_freezer_reset_catches_a_forking_member(parent):
    cg = cc.LabCgroup(CPU, f"{parent}/cglab2")
    cc.create(cg)
    assert cc.cpu_quota(cg)[0] is None
    cc.set_cpu_quota(cg, 10_000, 100_000)
    assert cc.cpu_quota(cg) == (10_000, 100_000)
    # A busy loop that also forks a sleeper every few ms: the reset must not lose a child to a race.
    hog = sleeper(cg, [sys.executable, "-c",
                       "import os, time\n"
                       "t = time.monotonic()\n"
                       "while time.monotonic() - t < 20:\n"
                       "    if os.fork() == 0:\n"
                       "        time.sleep(20); os._exit(0)\n"
                       "    t0 = time.monotonic()\n"
                       "    while time.monotonic() - t0 < 0.01: pass\n"])
    deadline = time.monotonic() + 10
    while (cc.cpu_stat(cg).nr_throttled == 0 or len(cc.procs(cg)) < 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    stat = cc.cpu_stat(cg)
    assert stat.nr_throttled > 0 and stat.throttled_usec > 0 and stat.nr_periods >= stat.nr_throttled
    members = cc.procs(cg)
    assert hog.pid in members and len(members) > 1

    killed: list[int] = []
    if FREEZER is not None and CPU.version == 1:
        # The path kill_members takes when a member forked between the list and the signal.
        killed = cc.freeze_and_kill(cg, FREEZER, reap=reaper.reap_orphans, timeout=5)
        assert not (FREEZER.mount / cg.relpath).exists(), "the freezer twin is removed too"
        assert cc.procs(cg) == []
    killed = cc.remove(cg, reap=reaper.reap_orphans, freezer=FREEZER) or killed

    hog.wait()
    assert hog.pid in killed and not cg.path.exists()
    assert all(gone(pid) for pid in killed)


@pytest.mark.skipif(FREEZER is None or FREEZER.version != 1, reason="no v1 freezer hierarchy on this machine")
def test_a_lab_cgroup_in_the_freezer_hierarchy_itself_is_frozen_in_place(parent):
    cg = cc.LabCgroup(FREEZER, f"{parent}/cglab3")
    cc.create(cg)
    bomb = forkbomb.run(cg.file("cgroup.procs"), budget=20, hold=True, lifetime=20)
    killed = cc.freeze_and_kill(cg, FREEZER, reap=reaper.reap_orphans, timeout=5)
    assert cc.rmdir(cg) is True
    bomb.release()
    assert len(killed) == 21 and all(gone(pid) for pid in killed)
    assert not cg.path.exists()


# ---- forged control files --------------------------------------------------------------------------------


def test_forged_pids_max_is_detected_by_device_and_by_mountinfo(parent, tmp_path):
    cg = cc.LabCgroup(PIDS, f"{parent}/cglab1")
    other = cc.LabCgroup(PIDS, f"{parent}/other")
    cc.create(cg)
    cc.create(other)
    cc.set_pids_max(cg, 9)
    assert cc.forged_reason(cg, "pids.max") is None

    fake = tmp_path / "pids.max"
    fake.write_text("9\n")
    subprocess.run(["mount", "--bind", str(fake), str(cg.file("pids.max"))], check=True)
    try:
        reason = cc.forged_reason(cg, "pids.max")
        assert reason and "not the kernel's cgroup file" in reason and "device" in reason
    finally:
        subprocess.run(["umount", str(cg.file("pids.max"))], check=True)

    # Another cgroup's own pids.max keeps the cgroupfs st_dev: mountinfo gives it away.
    subprocess.run(["mount", "--bind", str(other.file("pids.events")), str(cg.file("pids.events"))], check=True)
    try:
        reason = cc.forged_reason(cg, "pids.events")
        assert reason and "mounted on" in reason and str(cg.file("pids.events")) in reason
    finally:
        subprocess.run(["umount", str(cg.file("pids.events"))], check=True)
    assert cc.forged_reason(cg, "pids.events") is None


# ---- cgroup2 ---------------------------------------------------------------------------------------------


@needs_v2
def test_v2_kill_empties_the_lab_cgroup_only(parent):
    cg = cc.LabCgroup(UNIFIED, f"{parent}/cglab1")
    cc.create(cg)
    assert cc.populated(cg) is False
    inside = [sleeper(cg) for _ in range(3)]
    outsider = sleeper()
    try:
        assert cc.populated(cg) is True
        assert cc.member_of(inside[0].pid, cg) and not cc.member_of(outsider.pid, cg)
        killed = cc.remove(cg, reap=reaper.reap_orphans)
        for p in inside:
            assert p.wait(timeout=5) == -signal.SIGKILL
        assert sorted(killed) == sorted(p.pid for p in inside)
        assert not cg.path.exists()
        assert outsider.poll() is None
    finally:
        outsider.kill()
        outsider.wait()


@needs_v2
def test_v2_rmdir_retries_while_a_member_is_still_dying(parent):
    cg = cc.LabCgroup(UNIFIED, f"{parent}/cglab1")
    cc.create(cg)
    inside = sleeper(cg)
    with pytest.raises(cc.CgroupError, match="still busy"):
        cc.rmdir(cg, timeout=0.05)
    killer = threading.Timer(0.05, inside.kill)
    killer.start()
    try:
        assert cc.rmdir(cg, timeout=5, reap=inside.poll) is True
    finally:
        killer.join()
        inside.wait()
    assert not cg.path.exists()


@needs_v2
def test_v2_create_enables_an_offered_controller_down_the_path(parent):
    offered = [c for c in V2_CONTROLLERS if c not in ("cpuset",)]
    if not offered:
        pytest.skip(v2_lacks("every controller"))
    controller = offered[0]
    root_had = controller in cc.subtree_control(UNIFIED.mount)
    cg = cc.LabCgroup(cc.Hierarchy(2, UNIFIED.mount, controller), f"{parent}/cglab1")
    try:
        cc.create(cg)
        assert controller in cc.subtree_control(UNIFIED.mount / parent)
        assert controller in cc.controllers(cg.path)
        assert any(f.name.startswith(controller + ".") for f in cg.path.iterdir())
    finally:
        cc.rmdir(cg)
        (UNIFIED.mount / parent).rmdir()
        if not root_had:  # leave the machine's root as it was
            (UNIFIED.mount / "cgroup.subtree_control").write_text(f"-{controller}")


@needs_v2
@pytest.mark.skipif("pids" not in V2_CONTROLLERS, reason=v2_lacks("pids"))
def test_v2_pids_limit_refuses_forks(parent):
    cg = cc.LabCgroup(cc.find_hierarchy("pids"), f"{parent}/cglab1")
    cc.create(cg)
    cc.set_pids_max(cg, 5)
    result = forkbomb.run(cg.file("cgroup.procs"), budget=20)
    assert result.forks == 4 and result.refused == 1 and cc.pids_events(cg) >= 1
    cc.remove(cg, reap=reaper.reap_orphans)
    assert not cg.path.exists()


@needs_v2
@pytest.mark.skipif("cpu" not in V2_CONTROLLERS, reason=v2_lacks("cpu"))
def test_v2_cpu_max_is_read_and_written(parent):
    cg = cc.LabCgroup(cc.find_hierarchy("cpu"), f"{parent}/cglab2")
    cc.create(cg)
    cc.set_cpu_quota(cg, 50_000, 100_000)
    assert cc.read_value(cg, "cpu.max") == "50000 100000"
    assert cc.cpu_quota(cg) == (50_000, 100_000)
    cc.set_cpu_quota(cg, None)
    assert cc.cpu_quota(cg) == (None, 100_000)
    cc.rmdir(cg)
