"""The agent as a real process: ``python -m node_agent run`` against a real local HTTP controller double."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from node_agent.journal import INTERRUPTED

REPO = Path(__file__).resolve().parents[2]
TOKEN_ENV = {"LABFLEET_AGENT_ENROLL_TOKEN": "enroll-me"}


def agent_args(controller: Any, state_dir: Path, *extra: str) -> list[str]:
    return ["--controller", controller.url, "--state-dir", str(state_dir), "--name", "lab-01",
            "--max-backoff", "0.5", *extra]


def executed_ids(state_dir: Path) -> list[str]:
    return (state_dir / "executed.log").read_text().splitlines()


def test_agent_started_before_the_controller_retries_then_stops_cleanly_on_sigterm(start_agent, state_dir) -> None:
    agent = start_agent("--controller", "http://127.0.0.1:1", "--enroll-token", "x", "--state-dir", str(state_dir),
                        "--max-backoff", "1")

    retries = agent.wait_event("enroll.retry", count=3)
    started = time.monotonic()
    rc = agent.terminate()

    assert rc == 0 and time.monotonic() - started < 2.0
    assert all("Connection refused" in r["error"] and r["retry_in_s"] <= 1 for r in retries)
    assert agent.events("agent.stopped")
    assert all('"x"' not in str(line) for line in agent.log_lines if line.get("event") != "raw")


def test_agent_converges_once_the_controller_comes_up(start_agent, state_dir, controller) -> None:
    controller.unavailable = True
    agent = start_agent(*agent_args(controller, state_dir), env=TOKEN_ENV)
    agent.wait_event("enroll.retry", count=2)

    controller.unavailable = False

    node = controller.wait_for(lambda: controller.nodes and controller.only_node())
    controller.wait_for(lambda: node.state.get("cgroup"))
    assert node.name == "lab-01" and node.state["cgroup"]["layout"] == "hybrid"
    assert controller.wait_for(lambda: controller.polls)[0]["resync"] == "1"
    assert agent.terminate() == 0
    secrets = [json.loads((state_dir / "identity.json").read_text())["machine_secret"], node.token, "enroll-me"]
    assert not [s for s in secrets if s in str(agent.log_lines)]


def test_commands_run_once_even_when_redelivered(start_agent, state_dir, controller) -> None:
    agent = start_agent(*agent_args(controller, state_dir), env=TOKEN_ENV)
    node = controller.wait_for(lambda: controller.nodes and controller.only_node())
    command_id = controller.issue(node.node_id, "ping", {"delay_ms": 10})
    result = controller.wait_for(lambda: controller.results.get(command_id))
    assert result["ok"] is True and result["output"]["agent_pid"] == agent.proc.pid

    controller.forget_deliveries()  # the controller lost track: it offers the command again

    controller.wait_for(lambda: controller.result_posts.count(command_id) == 2)
    assert executed_ids(state_dir) == [command_id]
    assert len(agent.wait_event("command.redelivered")) == 1
    assert agent.terminate() == 0


def test_results_wait_out_a_controller_outage_and_the_next_poll_resyncs(start_agent, state_dir, controller) -> None:
    agent = start_agent(*agent_args(controller, state_dir), env=TOKEN_ENV)
    node = controller.wait_for(lambda: controller.nodes and controller.only_node())
    command_id = controller.issue(node.node_id, "ping", {"delay_ms": 500})
    controller.wait_for(lambda: controller.commands[command_id]["state"] == "delivered")
    controller.unavailable = True

    agent.wait_event("result.retry")
    controller.wait_for(lambda: any(path.endswith("/commands") for path in controller.refused))
    polls_before = len(controller.polls)
    controller.unavailable = False

    result = controller.wait_for(lambda: controller.results.get(command_id))
    assert result["ok"] is True
    controller.wait_for(lambda: len(controller.polls) > polls_before)
    assert controller.polls[polls_before]["resync"] == "1"
    assert agent.terminate() == 0


def test_sigterm_lets_a_running_command_finish_and_deliver(start_agent, state_dir, controller) -> None:
    agent = start_agent(*agent_args(controller, state_dir), env=TOKEN_ENV)
    node = controller.wait_for(lambda: controller.nodes and controller.only_node())
    command_id = controller.issue(node.node_id, "ping", {"delay_ms": 1500})
    agent.wait_event("command.accepted")

    started = time.monotonic()
    assert agent.terminate() == 0
    assert 1.0 < time.monotonic() - started < 5.0

    assert controller.results.get(command_id, {}).get("ok") is True, agent.log_lines


def test_command_cut_by_a_crash_is_reported_not_rerun(start_agent, state_dir, controller) -> None:
    agent = start_agent(*agent_args(controller, state_dir), env=TOKEN_ENV)
    node = controller.wait_for(lambda: controller.nodes and controller.only_node())
    command_id = controller.issue(node.node_id, "ping", {"delay_ms": 30_000}, timeout=60)
    agent.wait_event("command.accepted")
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait()
    controller.forget_deliveries()

    again = start_agent(*agent_args(controller, state_dir))  # no token needed: credentials are stored

    result = controller.wait_for(lambda: controller.results.get(command_id))
    assert result["ok"] is False and result["error"] == INTERRUPTED
    assert executed_ids(state_dir) == [command_id]
    assert not again.events("enrolled") and len(controller.nodes) == 1
    assert again.terminate() == 0


def test_agent_restart_reexecs_after_delivering_its_result(start_agent, state_dir, controller) -> None:
    agent = start_agent(*agent_args(controller, state_dir), env=TOKEN_ENV)
    node = controller.wait_for(lambda: controller.nodes and controller.only_node())
    restart_id = controller.issue(node.node_id, "agent-restart")

    assert controller.wait_for(lambda: controller.results.get(restart_id))["output"] == {"restarting": True}
    agent.wait_event("agent.starting", count=2)
    ping_id = controller.issue(node.node_id, "ping")

    result = controller.wait_for(lambda: controller.results.get(ping_id))
    assert result["output"]["agent_pid"] == agent.proc.pid  # execv keeps the pid; systemd sees no exit
    assert executed_ids(state_dir) == [restart_id, ping_id]
    assert agent.terminate() == 0


def test_revoked_node_token_re_enrolls_as_the_same_node(start_agent, state_dir, controller) -> None:
    agent = start_agent(*agent_args(controller, state_dir), env=TOKEN_ENV)
    node = controller.wait_for(lambda: controller.nodes and controller.only_node())
    first_token = node.token

    controller.revoke(node.node_id)
    controller.issue(node.node_id, "ping")  # wakes the long-poll, which meets the 401

    agent.wait_event("enrolled", count=2)
    assert list(controller.nodes) == [node.node_id] and node.token != first_token
    assert first_token not in str(agent.log_lines)
    assert agent.terminate() == 0


def test_first_start_without_enrollment_token_is_a_configuration_error(state_dir) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "node_agent", "run", "--controller", "http://127.0.0.1:1", "--state-dir",
         str(state_dir)], cwd=REPO, capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if k != "LABFLEET_AGENT_ENROLL_TOKEN"},
    )

    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("labfleet-agent: configuration error: enroll_token: required")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_second_agent_on_the_same_state_dir_is_refused(start_agent, state_dir, controller) -> None:
    agent = start_agent(*agent_args(controller, state_dir), env=TOKEN_ENV)
    controller.wait_for(lambda: controller.nodes)

    second = subprocess.run([sys.executable, "-m", "node_agent", "run", *agent_args(controller, state_dir)],
                            cwd=REPO, capture_output=True, text=True, timeout=30)

    assert second.returncode == 2 and "another agent is running" in second.stderr
    assert agent.terminate() == 0
