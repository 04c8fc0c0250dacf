"""A fan-out's woken polls and posted results, handled together by the group writer, reach the same
outcome as one by one: each node gets its own commands once, each result is stored once, a refused
result refuses only itself."""

from __future__ import annotations

from concurrent.futures import Future

from sqlalchemy import func, select

from controller.command_bulk import Delivery, ResultPost
from controller.errors import NotFound
from controller.models import Command, CommandResult, Node
from controller.principals import NodeIdentity
from node_agent.protocol import CommandResult as ResultMessage
from tests.controller.test_commands import issue, poll


def together(app, jobs):
    """Run ``jobs`` as one group-commit batch (as the writer does when they are queued at once)."""
    group = app.extensions["labfleet"].group_commit
    futures = [Future() for _ in jobs]
    group._commit_together(list(zip(jobs, futures, strict=True)))
    return [f.exception() or f.result() for f in futures]


def identity(app, node):
    with app.extensions["labfleet"].db.session() as session:
        row = session.get(Node, node.id)
        return NodeIdentity(row.id, row.name, row.state, row.state_digest, row.heartbeat_interval)


def test_woken_polls_and_their_results_in_one_batch(app, client, seed, enroll):
    nodes = [enroll(f"vm-{i}") for i in range(4)]
    issued = issue(client, seed, kind="ping", all=True)
    by_node = {c["node"]: c["id"] for c in issued["commands"]}
    jobs = [Delivery(n.id, resync=False, redeliver_after=30.0) for n in nodes]
    jobs.append(Delivery(nodes[0].id, resync=False, redeliver_after=30.0))  # a second poll of vm-0
    answers = together(app, jobs)
    assert [[m.id for m in a] for a in answers[:4]] == [[by_node[f"vm-{i}"]] for i in range(4)]
    assert answers[4] == []  # handed out once
    assert poll(client, nodes[1]) == []  # delivered: not offered again
    assert poll(client, nodes[1], resync=True) == [by_node["vm-1"]]  # unless the agent lost it

    idents = [identity(app, n) for n in nodes]
    posts = [ResultPost(idents[i], ResultMessage(command_id=by_node[f"vm-{i}"], ok=True, output={"pong": True}), 500)
             for i in range(4)]
    posts.append(ResultPost(idents[0], ResultMessage(command_id=by_node["vm-0"], ok=True), 500))  # posted twice
    posts.append(ResultPost(idents[0], ResultMessage(command_id=by_node["vm-2"], ok=True), 500))  # not vm-0's
    stored = together(app, posts)
    assert [s.duplicate for s in stored[:5]] == [False, False, False, False, True]
    assert isinstance(stored[5], NotFound)
    batch = client.get(f"/api/v1/batches/{issued['batch_id']}", headers=seed.auth).json
    assert batch["done"] == batch["total"] == 4
    assert {c["state"] for c in batch["commands"]} == {"succeeded"}
    with app.extensions["labfleet"].db.session() as session:
        assert session.scalar(select(func.count()).select_from(CommandResult)) == 4
        assert session.scalar(select(func.count()).select_from(Command).where(Command.state == "succeeded")) == 4
    actions = [e["action"] for e in client.get("/api/v1/audit?action=command.result", headers=seed.auth).json["entries"]]
    assert len(actions) == 4
