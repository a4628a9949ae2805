"""Concurrent legacy health probes of every registered agent, timed for the exporter.

The probing and the registry write-back are CoreOrchestrator's :class:`HealthSweep` over the
legacy ``{"action": "health_check"}`` (ZeroMQ REQ, Lazy Pirate, healthy iff the reply says
``ok``/``healthy``/``success``), bounded by ``max_concurrent_probes``; this module only times
each probe and keeps the result per agent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from actors.registry.models import AgentRecord
from cluster.base.settings import SupervisionSettings
from deployments.core.dispatch import tcp_endpoint
from deployments.core.supervision import HealthSweep, Mark, Probe
from deployments.observability.state import AgentProbe

__all__ = ["AgentProber"]


class AgentProber:
    """Probes agents through a :class:`HealthSweep`, recording each probe's round trip.

    Args:
        settings: probe timeout and concurrency bound.
        probe: checks one endpoint (``zmq_health_probe`` in production).
        mark: writes a probe result back to the registry.
        timer: monotonic seconds, for the round trips.
        clock: epoch seconds, for ``checked_at``.
    """

    def __init__(
        self,
        settings: SupervisionSettings,
        probe: Probe,
        mark: Mark,
        timer: Callable[[], float] = time.perf_counter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._probe = probe
        self._timer = timer
        self._clock = clock
        self._round: dict[str, tuple[str | None, float]] = {}
        self._sweep = HealthSweep(settings, self._timed, mark)

    async def probe(self, agents: Sequence[AgentRecord]) -> dict[str, AgentProbe]:
        """Probe every agent with a health port concurrently; return results by agent id."""
        self._round = {}
        await self._sweep.sweep(agents)
        now = self._clock()
        results: dict[str, AgentProbe] = {}
        for agent in agents:
            if agent.health_check_port is None:
                continue
            outcome = self._round.get(tcp_endpoint(agent.host, agent.health_check_port))
            if outcome is None:
                continue
            problem, latency = outcome
            results[agent.agent_id] = AgentProbe(
                agent_id=agent.agent_id,
                checked_at=now,
                up=problem is None,
                latency_s=latency,
                problem=problem,
            )
        return results

    async def _timed(self, endpoint: str) -> str | None:
        started = self._timer()
        problem = await self._probe(endpoint)
        self._round[endpoint] = (problem, max(0.0, self._timer() - started))
        return problem
