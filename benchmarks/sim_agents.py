"""Light simulated agents: asyncio + aiohttp, speaking the real agent protocol (node_agent/protocol.py).

Each one enrolls with a shared enrollment token (``uses`` = number of agents), keeps its node id
and node token, and then heartbeats and/or long-polls for commands and posts results, exactly as
the real agent does on the wire, without running anything on the machine.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from node_agent.protocol import (
    CommandBatch,
    EnrollResponse,
    HeartbeatResponse,
    commands_path,
    decode,
    enroll_path,
    heartbeat_path,
    results_path,
    state_path,
)

SIM_VERSION = "sim-0"


def new_session(*, timeout: float = 60.0, limit: int = 0) -> aiohttp.ClientSession:
    """One keep-alive session for many agents (``limit=0``: no cap on connections)."""
    connector = aiohttp.TCPConnector(limit=limit, force_close=False, enable_cleanup_closed=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))


class SimAgentError(RuntimeError):
    pass


@dataclass
class SimAgent:
    base_url: str
    name: str
    node_id: str = ""
    node_token: str = ""
    digest: str = ""
    seq: int = 0
    machine_id: str = field(default_factory=lambda: secrets.token_hex(16))
    machine_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.node_token}"}

    def credentials(self) -> tuple[str, str, str, str]:
        """What a client process needs to act as this agent (picklable)."""
        return (self.name, self.node_id, self.node_token, self.digest)

    @classmethod
    def from_credentials(cls, base_url: str, creds: tuple[str, str, str, str]) -> SimAgent:
        name, node_id, node_token, digest = creds
        return cls(base_url, name, node_id=node_id, node_token=node_token, digest=digest)

    async def _json(self, response: aiohttp.ClientResponse, what: str) -> Any:
        body = await response.read()
        if response.status != 200:
            raise SimAgentError(f"{self.name}: {what} answered {response.status}: {body[:300]!r}")
        return json.loads(body)

    async def enroll(self, http: aiohttp.ClientSession, enrollment_token: str) -> EnrollResponse:
        body = {"enrollment_token": enrollment_token, "machine_id": self.machine_id,
                "machine_secret": self.machine_secret, "name": self.name, "hostname": self.name,
                "agent_version": SIM_VERSION}
        async with http.post(self.base_url + enroll_path(), json=body) as response:
            answer = decode(EnrollResponse, await self._json(response, "enroll"))
        self.node_id, self.node_token = answer.node_id, answer.node_token
        return answer

    async def report_state(self, http: aiohttp.ClientSession) -> None:
        """Send a small snapshot once, so later heartbeats carry a digest the controller holds."""
        self.digest = f"sim-{secrets.token_hex(8)}"
        body = {"digest": self.digest, "state": {"agent": SIM_VERSION, "labs": {}}}
        async with http.put(self.base_url + state_path(self.node_id), json=body, headers=self.headers) as r:
            await self._json(r, "state")

    async def heartbeat(self, http: aiohttp.ClientSession) -> HeartbeatResponse:
        self.seq += 1
        body = {"seq": self.seq, "digest": self.digest}
        async with http.post(self.base_url + heartbeat_path(self.node_id), json=body, headers=self.headers) as r:
            return decode(HeartbeatResponse, await self._json(r, "heartbeat"))

    async def poll(self, http: aiohttp.ClientSession, *, wait: float, resync: bool = False) -> CommandBatch:
        params = {"wait": f"{wait:g}"}
        if resync:
            params["resync"] = "1"
        async with http.get(self.base_url + commands_path(self.node_id), params=params,
                            headers=self.headers) as r:
            return decode(CommandBatch, await self._json(r, "commands"))

    async def post_result(self, http: aiohttp.ClientSession, command_id: str, *, ok: bool = True,
                          output: dict[str, Any] | None = None, duration_ms: float = 0.0) -> dict[str, Any]:
        body = {"command_id": command_id, "ok": ok, "output": output or {}, "duration_ms": duration_ms}
        async with http.post(self.base_url + results_path(self.node_id), json=body, headers=self.headers) as r:
            return await self._json(r, "results")


async def enroll_many(http: aiohttp.ClientSession, base_url: str, enrollment_token: str, count: int, *,
                      prefix: str = "sim", concurrency: int = 20, report_state: bool = True) -> list[SimAgent]:
    """Enroll ``count`` simulated agents, ``concurrency`` at a time."""
    tag = secrets.token_hex(3)
    agents = [SimAgent(base_url, f"{prefix}-{tag}-{i:04d}") for i in range(count)]
    gate = asyncio.Semaphore(concurrency)

    async def one(agent: SimAgent) -> None:
        async with gate:
            await agent.enroll(http, enrollment_token)
            if report_state:
                await agent.report_state(http)

    started = time.monotonic()
    await asyncio.gather(*(one(a) for a in agents))
    print(f"enrolled {count} simulated agents in {time.monotonic() - started:.1f} s "
          f"({concurrency} at a time)", flush=True)
    return agents
