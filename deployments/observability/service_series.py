"""Series of the other services: GPU leases and their queue, the request queue, circuit breakers
and error rates, as the hub last read them from ResourceScheduler, CoreOrchestrator and ErrorBus.

Each part of a :class:`~deployments.observability.state.ServicesSample` is None when its
service did not answer the last round (not deployed, restarting, too slow); the collector then
yields no series for it, never a made-up zero, and ``aisys_service_source_up`` says which source
is missing.

Example::

    registry.register(ServicesCollector(state, clock=time.time))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from deployments.core.models import BreakerState
from deployments.observability.state import HubState, ServicesSample

__all__ = ["SOURCES", "ServicesCollector"]

_MIB = 1024 * 1024
#: ``aisys_service_source_up``'s source label -> the ServicesSample field it reads.
SOURCES = {
    "leases": "leases",
    "requests": "requests",
    "breakers": "breakers",
    "errors": "recent_errors",
}


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels or [])


class ServicesCollector(Collector):
    """Leases, lease queue, request queue, breakers and error rates (module docstring)."""

    def __init__(self, state: HubState, clock: Callable[[], float]) -> None:
        self._state = state
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        sample = self._state.services
        source_up = _gauge(
            "aisys_service_source_up",
            "1 if the service answered the hub's last read (leases, requests, breakers, errors).",
            ["source"],
        )
        if sample is not None:
            for source, part in SOURCES.items():
                source_up.add_metric([source], 0.0 if getattr(sample, part) is None else 1.0)
        yield source_up
        yield from self._leases(sample)
        yield from self._requests(sample)
        yield from self._breakers(sample)
        yield from self._errors(sample)

    def _leases(self, sample: ServicesSample | None) -> Iterator[Metric]:
        active = _gauge("aisys_leases_active", "Granted VRAM leases per GPU.", ["host", "gpu"])
        leased = _gauge("aisys_leased_vram_bytes", "VRAM granted to leases.", ["host", "gpu"])
        queued = _gauge("aisys_lease_queue_length", "Lease requests waiting in the queue.")
        wait = _gauge(
            "aisys_lease_queue_wait_seconds",
            "How long each queued lease request has waited.",
            ["lease_id", "owner", "host"],
        )
        used = _gauge(
            "aisys_lease_used_vram_bytes",
            "VRAM NVML measures for a lease's processes (workers, tasks).",
            ["lease_id", "owner", "host", "gpu"],
        )
        ratio = _gauge(
            "aisys_lease_used_ratio",
            "VRAM measured for a lease's processes over the VRAM it leased.",
            ["lease_id", "owner", "host", "gpu"],
        )
        over = _gauge(
            "aisys_lease_over_use",
            "1 while a lease's processes use more than the lease plus "
            "resources.workers.usage_tolerance_mb.",
            ["lease_id", "owner", "host", "gpu"],
        )
        unexplained = _gauge(
            "aisys_unexplained_vram_bytes",
            "VRAM of GPU processes that no lease explains.",
            ["host", "gpu", "pid"],
        )
        leases = sample.leases if sample is not None else None
        for row in leases.usage.leases if leases is not None and leases.usage else []:
            if row.used_mb is not None:
                labels = [row.lease_id, row.owner, row.host, str(row.gpu_index)]
                used.add_metric(labels, row.used_mb * _MIB)
                ratio.add_metric(labels, row.used_mb / row.leased_mb)
                over.add_metric(labels, 1.0 if row.over else 0.0)
        for proc in leases.usage.unexplained if leases is not None and leases.usage else []:
            if proc.used_mb is not None:
                labels = [proc.host, str(proc.gpu_index), str(proc.pid)]
                unexplained.add_metric(labels, proc.used_mb * _MIB)
        if leases is not None:
            # Every GPU the hosts report is known to have 0 leases unless one names it.
            counts: dict[tuple[str, str], list[int]] = {
                (host, str(gpu.index)): [0, 0]
                for host, hs in self._state.hosts.items()
                if hs.reading is not None
                for gpu in hs.reading.gpus
            }
            for grant in leases.granted:
                entry = counts.setdefault((grant.host, str(grant.gpu_index)), [0, 0])
                entry[0] += 1
                entry[1] += grant.vram_mb * _MIB
            for (host, gpu), (n, size) in sorted(counts.items()):
                active.add_metric([host, gpu], n)
                leased.add_metric([host, gpu], size)
            queued.add_metric([], len(leases.queued))
            now = self._clock()
            for request in leases.queued:
                labels = [request.lease_id, request.request.owner, request.request.host]
                wait.add_metric(labels, max(0.0, now - request.requested_at))
        yield from (active, leased, queued, wait, used, ratio, over, unexplained)

    def _requests(self, sample: ServicesSample | None) -> Iterator[Metric]:
        size = _gauge("aisys_request_queue_length", "Requests queued in CoreOrchestrator.")
        capacity = _gauge("aisys_request_queue_capacity", "Bound of the request queue.")
        flying = _gauge("aisys_requests_in_flight", "Requests dispatched, not answered yet.")
        queue = sample.requests if sample is not None else None
        if queue is not None:
            size.add_metric([], queue.size)
            capacity.add_metric([], queue.max_size)
            flying.add_metric([], queue.in_flight)
        yield from (size, capacity, flying)

    def _breakers(self, sample: ServicesSample | None) -> Iterator[Metric]:
        is_open = _gauge(
            "aisys_breaker_open", "1 while the downstream's breaker is open.", ["downstream"]
        )
        state = _gauge(
            "aisys_breaker_state", "Breaker state (1 for the current one).", ["downstream", "state"]
        )
        failures = _gauge(
            "aisys_breaker_consecutive_failures", "Failures since the last success.", ["downstream"]
        )
        breakers = sample.breakers if sample is not None else None
        for breaker in breakers or []:
            name = breaker.downstream
            is_open.add_metric([name], 1.0 if breaker.state is BreakerState.OPEN else 0.0)
            for each in BreakerState:
                state.add_metric([name, each.value], 1.0 if breaker.state is each else 0.0)
            failures.add_metric([name], breaker.consecutive_failures)
        yield from (is_open, state, failures)

    def _errors(self, sample: ServicesSample | None) -> Iterator[Metric]:
        rate = _gauge(
            "aisys_error_rate_per_second",
            "ErrorBus events per second over the last observability.error_rate_window_s.",
            ["agent"],
        )
        recent = sample.recent_errors if sample is not None else None
        if sample is not None and recent is not None:
            # Agents the ErrorBus holds errors of, with none in the window, have a rate of 0.
            for agent in sorted(set(recent) | set(self._state.error_counts)):
                rate.add_metric([agent], recent.get(agent, 0) / sample.error_window_s)
        yield rate
