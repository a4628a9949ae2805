"""Agent health sweep: the useful part of the legacy UnifiedSystemAgent's service monitor.

Every agent with a ``health_check_port`` is sent the legacy ``{"action": "health_check"}``
over ZeroMQ REQ, with Lazy Pirate retries (``probe_attempts``, a fresh socket each); one that
answers no attempt in time (or answers an unhealthy status) is marked ``critical`` in the
registry with a note saying why. An agent registered with ``check: none`` (health from probes
only) is marked ``passing`` again when it answers; TTL agents recover by their own heartbeats,
since a probe answer is no heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from actors.registry.models import AgentRecord, Health, Heartbeat
from cluster.base.errors import DispatchFailed
from cluster.base.settings import SupervisionSettings
from deployments.core.dispatch import LazyPirateClient, tcp_endpoint

__all__ = ["HealthCheck", "HealthReply", "HealthSweep", "SweepReport", "zmq_health_probe"]

logger = logging.getLogger(__name__)

#: Statuses legacy clients accept as healthy (``ok`` from BaseAgent, the others from PC2 agents).
HEALTHY_STATUSES = frozenset({"ok", "success", "healthy"})

#: Answers None when the endpoint is healthy, else why not.
Probe = Callable[[str], Awaitable[str | None]]
Mark = Callable[[str, Heartbeat], Awaitable[None]]


class HealthCheck(BaseModel):
    """The legacy health request frame (variant H3 of the legacy protocol)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["health_check"] = "health_check"


class HealthReply(BaseModel):
    """A legacy health reply; only ``status`` matters, the rest varies by agent."""

    model_config = ConfigDict(extra="allow", frozen=True)

    status: str


class SweepReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    probed: int
    marked_critical: list[str]
    marked_passing: list[str]


def zmq_health_probe(client: LazyPirateClient, timeout_s: float, attempts: int) -> Probe:
    """A probe sending :class:`HealthCheck` up to ``attempts`` times (Lazy Pirate: a fresh
    socket each), each attempt waiting ``timeout_s`` for the reply."""
    frame = HealthCheck().model_dump_json().encode()

    async def probe(endpoint: str) -> str | None:
        try:
            raw = await client.request(endpoint, frame, timeout_s=timeout_s, attempts=attempts)
        except DispatchFailed as exc:
            return f"health endpoint {endpoint}: {exc.reason}"
        try:
            reply = HealthReply.model_validate_json(raw)
        except ValidationError:
            return f"health endpoint {endpoint} answered something other than a health reply"
        if reply.status.lower() not in HEALTHY_STATUSES:
            return f"health endpoint {endpoint} answered status {reply.status!r}"
        return None

    return probe


class HealthSweep:
    """Probes agents' health endpoints and marks the registry.

    Args:
        settings: the ``core.supervision`` section.
        probe: checks one endpoint.
        mark: records a heartbeat (probe result) for an agent in the registry.
    """

    def __init__(self, settings: SupervisionSettings, probe: Probe, mark: Mark) -> None:
        self._probe = probe
        self._mark = mark
        self._limit = asyncio.Semaphore(settings.max_concurrent_probes)

    async def sweep(self, agents: Sequence[AgentRecord]) -> SweepReport:
        """Probe every agent that has a health port, concurrently; return what changed."""
        targets = [a for a in agents if a.health_check_port is not None]
        results = await asyncio.gather(*(self._check(agent) for agent in targets))
        critical = [a.agent_id for a, r in zip(targets, results, strict=True) if r == "critical"]
        passing = [a.agent_id for a, r in zip(targets, results, strict=True) if r == "passing"]
        return SweepReport(probed=len(targets), marked_critical=critical, marked_passing=passing)

    async def _check(self, agent: AgentRecord) -> str | None:
        assert agent.health_check_port is not None
        async with self._limit:
            problem = await self._probe(tcp_endpoint(agent.host, agent.health_check_port))
        if problem is not None:
            if agent.health is Health.CRITICAL and agent.health_note == problem:
                return None
            await self._mark(agent.agent_id, Heartbeat(status="critical", note=problem[:1024]))
            return "critical"
        if agent.check == "none" and agent.health is not Health.PASSING:
            await self._mark(agent.agent_id, Heartbeat(status="passing", note="health_check ok"))
            return "passing"
        return None
