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
from actors.registry.models import AgentRecord

__all__ = ["AgentProbe", "HostSample", "HubState", "PerfAggregate"]


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


class HubState:
    """The latest samples, replaced wholesale by the loop so a scrape sees one consistent set."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostSample] = {}
        self.agents: list[AgentRecord] = []
        self.probes: dict[str, AgentProbe] = {}
        self.error_counts: dict[str, dict[str, int]] = {}
        self.perf: list[PerfAggregate] = []
        self.log_shippers: list[ShipperStats] = []

    def set_host(self, sample: HostSample) -> None:
        self.hosts[sample.host] = sample

    def set_agents(self, agents: list[AgentRecord], probes: dict[str, AgentProbe]) -> None:
        known = {agent.agent_id for agent in agents}
        self.agents = agents
        # Keep earlier probe results of agents not probed this round, drop deregistered ones.
        merged = {k: v for k, v in self.probes.items() if k in known}
        merged.update(probes)
        self.probes = merged
