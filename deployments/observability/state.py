"""What the hub last learned about hosts and agents; the collectors read it at scrape time.

The sampling loop writes here (host readings from the per-host probe actors, agent records from
the registry, health-probe results, ErrorBus counts, perf-log aggregates, the log shippers'
counters); nothing here does I/O.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from actors.logship.models import ShipperStats
from actors.probe.counters import HostCounters
from actors.probe.models import HostReading
from actors.probe.system import SystemReading
from actors.registry.models import AgentRecord, Health
from actors.resources.models import LeaseList
from deployments.core.models import BreakerView, QueueView

__all__ = ["AgentProbe", "HostSample", "HubState", "PerfAggregate", "ServicesSample"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSample(_Model):
    """One host as its probe actor measured it; ``error`` set (and nothing else) if it failed."""

    host: str
    taken_at: float
    reading: HostReading | None = None
    system: SystemReading | None = None
    counters: HostCounters | None = None
    error: str | None = None


class AgentProbe(_Model):
    """Result of one legacy ``health_check`` probe of an agent's health port."""

    agent_id: str
    checked_at: float
    up: bool
    latency_s: float = Field(ge=0)
    problem: str | None = None


class PerfAggregate(_Model):
    """Performance-log figures of one agent and action over the recent window."""

    agent: str
    action: str
    count: int = Field(ge=0)
    mean_duration_s: float = Field(ge=0)
    max_duration_s: float = Field(ge=0)


class ServicesSample(_Model):
    """One round's reading of the other services; a part is None when its service did not
    answer (deployments/observability/service_series.py)."""

    taken_at: float
    leases: LeaseList | None = None
    requests: QueueView | None = None
    breakers: list[BreakerView] | None = None
    error_window_s: float = Field(gt=0)
    recent_errors: dict[str, int] | None = Field(
        default=None, description="Agent -> ErrorBus events in the last error_window_s."
    )


class HubState:
    """The latest samples, replaced wholesale by the loop so a scrape sees one consistent set.

    Two things outlive the sample they came from: the address and name each host's probe last
    reported (a failed sample has neither, yet agents at that address still belong to the host,
    so ``HostDown`` keeps inhibiting their alerts), and when each agent was last known alive.
    """

    def __init__(self) -> None:
        self.hosts: dict[str, HostSample] = {}
        self.agents: list[AgentRecord] = []
        self.probes: dict[str, AgentProbe] = {}
        self.error_counts: dict[str, dict[str, int]] = {}
        self.perf: list[PerfAggregate] = []
        self.log_shippers: list[ShipperStats] = []
        self.services: ServicesSample | None = None
        self._addresses: dict[str, tuple[str, str]] = {}
        self._heartbeat_alive_at: dict[str, float] = {}
        self._probe_ok_at: dict[str, float] = {}

    def set_host(self, sample: HostSample) -> None:
        self.hosts[sample.host] = sample
        if sample.system is not None:
            self._addresses[sample.host] = (sample.system.ip, sample.system.hostname)

    def host_tags(self) -> dict[str, str]:
        """Address or hostname -> host tag, from the last sample of each host that had them."""
        tags: dict[str, str] = {}
        for tag, (ip, hostname) in self._addresses.items():
            tags[ip] = tag
            tags[hostname] = tag
        return tags

    def set_agents(
        self, agents: list[AgentRecord], probes: dict[str, AgentProbe] | None = None
    ) -> None:
        """Take the registry's agents (and probe results, if any); forget deregistered ones."""
        known = {agent.agent_id for agent in agents}
        self.agents = agents
        # Keep earlier probe results of agents not probed this round, drop deregistered ones.
        self.probes = {k: v for k, v in self.probes.items() if k in known}
        self._probe_ok_at = {k: v for k, v in self._probe_ok_at.items() if k in known}
        alive = {k: v for k, v in self._heartbeat_alive_at.items() if k in known}
        for agent in agents:
            # A critical record's last_seen_at may be a failed probe's mark, no sign of life.
            if agent.health is not Health.CRITICAL:
                alive[agent.agent_id] = agent.last_seen_at
        self._heartbeat_alive_at = alive
        if probes:
            self.add_probes(probes)

    def add_probes(self, probes: dict[str, AgentProbe]) -> None:
        """Merge a sweep's results; agents deregistered since it began are left out."""
        known = {agent.agent_id for agent in self.agents}
        merged = dict(self.probes)
        ok_at = dict(self._probe_ok_at)
        for agent_id, probe in probes.items():
            if agent_id not in known:
                continue
            merged[agent_id] = probe
            if probe.up:
                ok_at[agent_id] = max(probe.checked_at, ok_at.get(agent_id, probe.checked_at))
        self.probes = merged
        self._probe_ok_at = ok_at

    def alive_at(self, agent_id: str) -> float | None:
        """When the agent was last known alive: its last non-critical registry heartbeat or its
        last answered probe, whichever is later; None when neither was seen."""
        times = [
            t
            for t in (self._heartbeat_alive_at.get(agent_id), self._probe_ok_at.get(agent_id))
            if t is not None
        ]
        return max(times, default=None)
