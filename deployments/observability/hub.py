"""The ObservabilityHub's core: one sampling round, with every source and sink injected.

A round reads every host (through the per-host probe actors in production), the log shippers'
counters, the registry's agents, probes their health ports when a probe period has passed, takes
the ErrorBus counts and the perf-log aggregates, then reads the hub's own metrics back from its
``CollectorRegistry`` to feed the anomaly detectors and evaluate the alert rules; notifications
go to ``notify``.

Example::

    hub = HubCore(settings, registry, perflog, AlertStore(path), sources, clock=time.time)
    await hub.tick()
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from prometheus_client.registry import CollectorRegistry

from actors.logship.models import ShipperStats
from actors.registry.models import AgentRecord
from cluster.settings import ObservabilitySettings
from deployments.observability.alert_models import Notification
from deployments.observability.alert_store import AlertStore
from deployments.observability.alerts import AlertEngine
from deployments.observability.anomaly import AnomalyBank
from deployments.observability.collectors import register_collectors
from deployments.observability.perflog import PerfLog
from deployments.observability.series import current_samples
from deployments.observability.state import AgentProbe, HostSample, HubState

__all__ = ["HubCore", "HubSources"]

logger = logging.getLogger(__name__)

#: Window of the perf-log aggregates the exporter shows.
PERF_WINDOW_S = 3600.0


@dataclass(frozen=True)
class HubSources:
    """Where a round's inputs come from and where notifications go."""

    hosts: Callable[[], Awaitable[list[HostSample]]]
    agents: Callable[[], Sequence[AgentRecord]]
    probe: Callable[[Sequence[AgentRecord]], Awaitable[dict[str, AgentProbe]]]
    error_counts: Callable[[], Awaitable[dict[str, dict[str, int]] | None]]
    notify: Callable[[list[Notification]], Awaitable[None]]
    #: Counters of every host's log shipper; None when log shipping is off.
    logs: Callable[[], Awaitable[list[ShipperStats]]] | None = None


class HubCore:
    """State, detectors, alert engine and collectors of the hub; :meth:`tick` runs one round."""

    def __init__(
        self,
        settings: ObservabilitySettings,
        registry: CollectorRegistry,
        perflog: PerfLog,
        alert_store: AlertStore,
        sources: HubSources,
        clock: Callable[[], float],
    ) -> None:
        self._s = settings
        self._registry = registry
        self._sources = sources
        self._clock = clock
        self.perflog = perflog
        self.state = HubState()
        self.anomalies = AnomalyBank(settings.anomaly)
        self.alerts = AlertEngine(settings.alerting, alert_store, now=clock())
        self._last_probe: float | None = None
        register_collectors(registry, self.state, self.anomalies, self.alerts, clock)

    async def tick(self) -> list[Notification]:
        """Run one sampling round; return the notifications it sent."""
        for sample in await self._sources.hosts():
            self.state.set_host(sample)
        if self._sources.logs is not None:
            self.state.log_shippers = await self._sources.logs()
        agents = list(self._sources.agents())
        now = self._clock()
        probes: dict[str, AgentProbe] = {}
        interval = self._s.probes.sweep_interval_s
        if self._last_probe is None or now - self._last_probe >= interval:
            self._last_probe = now
            probes = await self._sources.probe(agents)
        self.state.set_agents(agents, probes)
        counts = await self._sources.error_counts()
        if counts is not None:
            self.state.error_counts = counts
        now = self._clock()
        self.perflog.purge(now)
        self.state.perf = self.perflog.aggregates(now - PERF_WINDOW_S)
        return await self.evaluate(now)

    async def evaluate(self, now: float) -> list[Notification]:
        """Feed the detectors and the alert rules from the registry's current samples."""
        wanted = set(self.anomalies.metrics) | {rule.metric for rule in self.alerts.rules()}
        samples = current_samples(self._registry, wanted)
        self.anomalies.observe(samples, now)
        notifications = self.alerts.evaluate(samples, now, self.anomalies)
        if notifications:
            await self._sources.notify(notifications)
        return notifications
