"""The ObservabilityHub's core: one sampling round, with every source and sink injected.

A round reads every host (through the per-host probe actors in production), the log shippers'
counters and the registry's agents, starts a sweep of the agents' health ports when a probe
period has passed, takes the ErrorBus counts and the perf-log aggregates, then reads the hub's
own metrics back from its ``CollectorRegistry`` to feed the anomaly detectors and evaluate the
alert rules; notifications go to ``notify``.

The sweep runs as its own task: agents that do not answer hold it for up to a probe timeout per
attempt, which must not hold up host sampling and alert evaluation. Its results land in the
state when it finishes, and the next round evaluates them; no second sweep starts while one runs.

Example::

    hub = HubCore(settings, registry, perflog, AlertStore(path), sources, clock=time.time)
    await hub.tick()
    ...
    await hub.close()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from prometheus_client.registry import CollectorRegistry

from actors.logship.models import ShipperStats
from actors.registry.models import AgentRecord
from cluster.base.aio import cancel_and_wait
from cluster.base.settings import ObservabilitySettings
from deployments.observability.alert_models import Notification
from deployments.observability.alert_store import AlertStore
from deployments.observability.alerts import AlertEngine
from deployments.observability.anomaly import AnomalyBank
from deployments.observability.collectors import register_collectors
from deployments.observability.perflog import PerfLog
from deployments.observability.series import current_samples
from deployments.observability.state import AgentProbe, HostSample, HubState, ServicesSample

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
    #: Leases, request queue, breakers and error rates of the other services.
    services: Callable[[], Awaitable[ServicesSample]] | None = None


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
        self._sweep: asyncio.Task[None] | None = None
        register_collectors(registry, self.state, self.anomalies, self.alerts, clock)
        # Rules added over HTTP were checked then; the settings may have changed since.
        for problem in self.unfed_rules().values():
            logger.warning("observability: %s", problem)

    def unfed_rules(self) -> dict[str, str]:
        """Rules that can never fire under the current anomaly settings: name -> the fix."""
        problems = {
            rule.name: self._s.anomaly.rule_source_problem(rule) for rule in self.alerts.rules()
        }
        return {name: problem for name, problem in problems.items() if problem is not None}

    async def tick(self) -> list[Notification]:
        """Run one sampling round; return the notifications it sent.

        Starts a probe sweep when the probe period has passed and none is running, without
        waiting for it; the round uses the results of the sweeps finished so far.
        """
        agents = list(self._sources.agents())
        self.state.set_agents(agents)
        self._start_sweep(agents)
        for sample in await self._sources.hosts():
            self.state.set_host(sample)
        if self._sources.logs is not None:
            self.state.log_shippers = await self._sources.logs()
        if self._sources.services is not None:
            self.state.services = await self._sources.services()
        counts = await self._sources.error_counts()
        if counts is not None:
            self.state.error_counts = counts
        now = self._clock()
        self.perflog.purge(now)
        self.state.perf = self.perflog.aggregates(now - PERF_WINDOW_S)
        return await self.evaluate(now)

    @property
    def sweeping(self) -> bool:
        """True while a probe sweep runs."""
        return self._sweep is not None and not self._sweep.done()

    async def wait_for_sweep(self) -> None:
        """Wait until the running probe sweep, if any, has finished and stored its results."""
        if self._sweep is not None:
            await asyncio.shield(self._sweep)

    async def close(self) -> None:
        """Cancel a running probe sweep."""
        await cancel_and_wait([self._sweep])

    def _start_sweep(self, agents: list[AgentRecord]) -> None:
        now = self._clock()
        due = self._last_probe is None or now - self._last_probe >= self._s.probes.sweep_interval_s
        if due and not self.sweeping:
            self._last_probe = now
            self._sweep = asyncio.get_running_loop().create_task(self._run_sweep(agents))

    async def _run_sweep(self, agents: list[AgentRecord]) -> None:
        try:
            probes = await self._sources.probe(agents)
        except Exception:
            # Task boundary: a failed sweep (the registry restarting under a mark) is logged
            # with its traceback; the next sweep starts on its period.
            logger.exception("agent probe sweep failed")
            return
        self.state.add_probes(probes)

    async def evaluate(self, now: float) -> list[Notification]:
        """Feed the detectors and the alert rules from the registry's current samples."""
        wanted = set(self.anomalies.metrics) | {rule.metric for rule in self.alerts.rules()}
        samples = current_samples(self._registry, wanted)
        self.anomalies.observe(samples, now)
        notifications = self.alerts.evaluate(samples, now, self.anomalies)
        if notifications:
            # Marked sent only once notify returns: if it raises, the next round sends again.
            await self._sources.notify(notifications)
            self.alerts.delivered(notifications)
        return notifications
