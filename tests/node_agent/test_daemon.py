"""The agent as a real process, ``python -m node_agent run``, against the real controller over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from node_agent.journal import INTERRUPTED
from tests.node_agent.conftest import WAIT, LiveController
from tests.processes import wait_until

REPO = Path(__file__).resolve().parents[2]


def agent_args(controller: LiveController, state_dir: Path, *extra: str) -> list[str]:
    # --insecure-http: LiveController is werkzeug's plain HTTP server on loopback; TLS is test_tls.py's.
    return ["--controller", controller.url, "--insecure-http", "--state-dir", str(state_dir), "--name", "lab-01",
            "--max-backoff", "0.5", *extra]


def token_env(token: str) -> dict[str, str]:
    return {"LABFLEET_AGENT_ENROLL_TOKEN": token}


def start_enrolled(start_agent: Any, state_dir: Path, controller: LiveController, uses: int = 1) -> Any:
    agent = start_agent(*agent_args(controller, state_dir), env=token_env(controller.enrollment_token(uses)))
    agent.wait_event("enrolled")  # logged once its credentials are stored
    controller.wait_node()
    return agent


def executed_ids(state_dir: Path) -> list[str]:
    return (state_dir / "executed.log").read_text().splitlines()


def stored_node_token(state_dir: Path) -> str:
    return json.loads((state_dir / "credentials.json").read_text())["node_token"]


def test_agent_started_before_the_controller_retries_then_stops_cleanly_on_sigterm(start_agent, state_dir) -> None:
    agent = start_agent("--controller", "http://127.0.0.1:1", "--insecure-http", "--enroll-token", "x",
                        "--state-dir", str(state_dir),
                        "--max-backoff", "1")

    retries = agent.wait_event("enroll.retry", count=3)
    started = time.monotonic()
    rc = agent.terminate()

    assert rc == 0 and time.monotonic() - started < 2.0
    assert all("Connection refused" in r["error"] and r["retry_in_s"] <= 1 for r in retries)
    assert agent.events("agent.stopped")
    assert all('"x"' not in str(line) for line in agent.log_lines if line.get("event") != "raw")


def test_agent_converges_once_the_controller_comes_up(start_agent, state_dir, controller) -> None:
    controller.stop()
    enroll_token = controller.enrollment_token()
    agent = start_agent(*agent_args(controller, state_dir), env=token_env(enroll_token))
    agent.wait_event("enroll.retry", count=2)
    assert not controller.nodes()

    controller.start()

    controller.wait_node()
    node = wait_until(lambda: (n := controller.node())["state_snapshot"].get("cgroup") and n, timeout=WAIT,
                      what="the node's state snapshot")
    assert node["name"] == "lab-01" and node["state"] == "online"
    assert node["state_snapshot"]["cgroup"]["layout"] == "hybrid"
    first_poll = wait_until(lambda: controller.requests("GET", "/commands"), timeout=WAIT, what="a poll")[0]
    assert "resync=1" in first_poll.path.partition("?")[2].split("&")
    assert agent.terminate() == 0
    secrets = [json.loads((state_dir / "identity.json").read_text())["machine_secret"],
               stored_node_token(state_dir), enroll_token]
    assert not [s for s in secrets if s in str(agent.log_lines)]


def test_commands_run_once_even_when_redelivered(start_agent, state_dir, controller) -> None:
    agent = start_enrolled(start_agent, state_dir, controller)
    command_id = controller.issue("ping", {"delay_ms": 10})
    result = controller.wait_result(command_id)
    assert result["ok"] is True and result["output"]["agent_pid"] == agent.proc.pid
    wait_until(lambda: len(controller.requests("POST", "/results")) == 1, timeout=WAIT, what="one result post")

    controller.forget_delivery(command_id)  # the controller lost track: it offers the command again

    redelivered = agent.wait_event("command.redelivered")
    wait_until(lambda: len(controller.requests("POST", "/results")) == 2, timeout=WAIT, what="the result re-posted")
    assert redelivered[0]["command_id"] == command_id and redelivered[0]["result_queued"] is True
    assert all(r.status == 200 for r in controller.requests("POST", "/results"))
    assert executed_ids(state_dir) == [command_id]
    assert [e["target"] for e in controller.audit("command.result")] == [command_id]  # stored once
    assert controller.command(command_id)["result"] == result
    assert agent.terminate() == 0
    assert len(agent.events("command.redelivered")) == 1


def test_results_wait_out_a_controller_outage_and_the_next_poll_resyncs(start_agent, state_dir, controller) -> None:
    agent = start_enrolled(start_agent, state_dir, controller)
    command_id = controller.issue("ping", {"delay_ms": 3000})
    agent.wait_event("command.accepted")
    controller.stop()  # while the command runs: its result has nowhere to go

    agent.wait_event("result.retry")
    agent.wait_event("poll.retry")
    lost_id = controller.issue("ping")  # taken by a poll whose answer the outage cut off:
    controller.lose_delivery(lost_id)  # delivered as far as the controller knows, never seen by the agent
    since = len(controller.access_log)
    controller.start()

    result = controller.wait_result(command_id)
    assert result["ok"] is True and result["output"]["agent_pid"] == agent.proc.pid
    # Only a resync poll offers a delivered command again (no time-based redelivery in these tests).
    lost = controller.wait_result(lost_id)
    assert lost["ok"] is True and controller.command(lost_id)["delivery_count"] >= 2
    first_poll = controller.requests("GET", "/commands", since=since)[0]
    assert "resync=1" in first_poll.path.partition("?")[2].split("&")
    assert executed_ids(state_dir) == [command_id, lost_id]
    assert agent.terminate() == 0


def test_sigterm_lets_a_running_command_finish_and_deliver(start_agent, state_dir, controller) -> None:
    agent = start_enrolled(start_agent, state_dir, controller)
    command_id = controller.issue("ping", {"delay_ms": 2500})
    agent.wait_event("command.started")  # running, not only queued: a queued one would not be run

    started = time.monotonic()
    assert agent.terminate() == 0
    assert time.monotonic() - started < 5.0

    result = controller.command(command_id)["result"]  # delivered before the agent exited
    assert result is not None, agent.log_lines
    assert result["ok"] is True and result["duration_ms"] >= 2500, (result, agent.log_lines)  # a ping cut short fails


def test_command_cut_by_a_crash_is_reported_not_rerun(start_agent, state_dir, controller) -> None:
    agent = start_enrolled(start_agent, state_dir, controller)
    command_id = controller.issue("ping", {"delay_ms": 30_000}, timeout=60)
    agent.wait_event("command.accepted")
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait()
    assert controller.command(command_id)["state"] == "delivered"  # still open: resync offers it again

    again = start_agent(*agent_args(controller, state_dir))  # no token needed: credentials are stored

    result = controller.wait_result(command_id)
    assert result["ok"] is False and result["error"] == INTERRUPTED
    assert controller.command(command_id)["state"] == "failed"
    assert executed_ids(state_dir) == [command_id]
    assert not again.events("enrolled") and len(controller.nodes()) == 1
    assert again.terminate() == 0
    assert executed_ids(state_dir) == [command_id]


# The long-poll the old image had open is cut by the re-exec, but the controller's side of it lives on until its
# `wait` ends and may take the next command: delivered, never received. The controller offers such a command
# again after `redeliver_after`, so keep that short here.
@pytest.mark.controller_settings(redeliver_after=2)
def test_agent_restart_reexecs_after_delivering_its_result(start_agent, state_dir, controller) -> None:
    agent = start_enrolled(start_agent, state_dir, controller)
    restart_id = controller.issue("agent-restart")

    assert controller.wait_result(restart_id)["output"] == {"restarting": True}
    agent.wait_event("agent.starting", count=2)
    ping_id = controller.issue("ping")

    result = controller.wait_result(ping_id)
    assert result["output"]["agent_pid"] == agent.proc.pid  # execv keeps the pid; systemd sees no exit
    assert executed_ids(state_dir) == [restart_id, ping_id]
    assert agent.terminate() == 0


def test_revoked_node_token_re_enrolls_as_the_same_node(start_agent, state_dir, controller) -> None:
    # A revoked node needs an enrollment token use to come back: give this one two (enroll, re-enroll).
    agent = start_enrolled(start_agent, state_dir, controller, uses=2)
    (node,) = controller.nodes()
    first_token = stored_node_token(state_dir)

    controller.revoke("lab-01")

    agent.wait_event("enrolled", count=2)
    (again,) = wait_until(lambda: [n for n in controller.nodes() if n["state"] == "online"], timeout=WAIT,
                          what="the node back online")
    assert again["id"] == node["id"] and again["name"] == "lab-01"
    assert stored_node_token(state_dir) != first_token
    assert [e["target"] for e in controller.audit("node.re_enroll")] == [node["id"]]
    refused = controller.app.test_client().post(
        f"/api/agent/v1/nodes/{node['id']}/heartbeat", json={"seq": 1, "digest": "d"},
        headers={"Authorization": f"Bearer {first_token}"})
    assert refused.status_code == 401
    ping_id = controller.issue("ping")
    assert controller.wait_result(ping_id)["ok"] is True
    assert first_token not in str(agent.log_lines)
    assert agent.terminate() == 0


def test_first_start_without_enrollment_token_is_a_configuration_error(state_dir) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "node_agent", "run", "--controller", "https://127.0.0.1:1", "--state-dir",
         str(state_dir)], cwd=REPO, capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if k != "LABFLEET_AGENT_ENROLL_TOKEN"},
    )

    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("labfleet-agent: configuration error: enroll_token: required")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_second_agent_on_the_same_state_dir_is_refused(start_agent, state_dir, controller) -> None:
    agent = start_enrolled(start_agent, state_dir, controller)

    second = subprocess.run([sys.executable, "-m", "node_agent", "run", *agent_args(controller, state_dir)],
                            cwd=REPO, capture_output=True, text=True, timeout=30)

    assert second.returncode == 2 and "another agent is running" in second.stderr
    assert agent.terminate() == 0
    assert len(controller.nodes()) == 1
