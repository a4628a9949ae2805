"""Prometheus collectors of the ObservabilityHub, computed at every scrape.

Each collector reads the hub's latest state (:class:`~deployments.observability.state.HubState`)
or its anomaly and alert engines and yields metric families; nothing is cached in
``prometheus_client`` metric objects, so a scrape always shows the present (ages are computed
against the injected clock at scrape time).

Naming: ``aisys_`` prefix, base units in the name (``_bytes``, ``_seconds``, ``_ratio``,
``_celsius``, ``_watts``), counters end in ``_total``; labels ``host``, ``gpu``, ``agent``.

GPUs: a measured device (NVML) has every ``aisys_gpu_*`` series, each labelled with its
``source``: ``nvml``, or ``nvml-double`` for the NVML test double's devices (Settings
``resources.nvml_double``), which never pass for real ones. A *declared* device (a Settings
table for a host NVML cannot see) has only ``aisys_gpu_memory_total_bytes`` and
``aisys_gpu_devices``, both with ``source="declared"``: nothing measures its use, so no used,
free, utilisation, temperature or power series is invented for it. No GPU means no GPU series.

Example::

    registry = CollectorRegistry(auto_describe=False)
    register_collectors(registry, state, anomalies, alerts, clock=time.time)
    text = generate_latest(registry)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from deployments.observability.alerts import AlertEngine
from deployments.observability.anomaly import AnomalyBank
from deployments.observability.service_series import ServicesCollector
from deployments.observability.state import HostSample, HubState

__all__ = [
    "AgentCollector",
    "AlertCollector",
    "AnomalyCollector",
    "GpuCollector",
    "HostCollector",
    "LogShippingCollector",
    "register_collectors",
]

_MIB = 1024 * 1024
_HEALTH_STATES = ("passing", "warning", "critical", "unknown")
#: Series labels the anomaly families carry (a missing one is "").
_SERIES_LABELS = ("host", "gpu", "agent")


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class HostCollector(Collector):
    """Per-host CPU, memory, disk and network figures, measured on each host by its probe."""

    def __init__(self, state: HubState, clock: Callable[[], float]) -> None:
        self._state = state
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        up = _gauge("aisys_host_up", "1 if the host's probe answered the last sample.", ["host"])
        info = _gauge(
            "aisys_host_info",
            "1 per host, labelled with the address and name its probe reports (where it ran).",
            ["host", "ip", "hostname"],
        )
        age = _gauge("aisys_host_sample_age_seconds", "Age of the host's last sample.", ["host"])
        cpu = _gauge("aisys_host_cpu_used_ratio", "CPU use, 0-1.", ["host"])
        mem = _gauge("aisys_host_memory_used_ratio", "Memory use, 0-1.", ["host"])
        avail = _gauge("aisys_host_memory_available_bytes", "Available memory.", ["host"])
        total = _gauge("aisys_host_memory_total_bytes", "Installed memory.", ["host"])
        disk = _gauge("aisys_host_disk_used_ratio", "Use of the data dir's disk, 0-1.", ["host"])
        free = _gauge("aisys_host_disk_free_bytes", "Free space of the data dir's disk.", ["host"])
        rx = CounterMetricFamily(
            "aisys_host_network_received_bytes", "Bytes received, all interfaces.", labels=["host"]
        )
        tx = CounterMetricFamily(
            "aisys_host_network_sent_bytes", "Bytes sent, all interfaces.", labels=["host"]
        )
        now = self._clock()
        for host, sample in sorted(self._state.hosts.items()):
            up.add_metric([host], 0.0 if sample.error else 1.0)
            age.add_metric([host], max(0.0, now - sample.taken_at))
            if sample.reading is not None:
                cpu.add_metric([host], sample.reading.cpu_percent / 100.0)
                mem.add_metric([host], sample.reading.memory_percent / 100.0)
                avail.add_metric([host], sample.reading.memory_available_mb * _MIB)
            if sample.system is not None:
                info.add_metric([host, sample.system.ip, sample.system.hostname], 1.0)
                total.add_metric([host], sample.system.memory_total_mb * _MIB)
                disk.add_metric([host], sample.system.disk_percent / 100.0)
                free.add_metric([host], sample.system.disk_free_mb * _MIB)
            if sample.counters is not None:
                rx.add_metric([host], sample.counters.network_received_bytes)
                tx.add_metric([host], sample.counters.network_sent_bytes)
        yield from (up, info, age, cpu, mem, avail, total, disk, free, rx, tx)


class GpuCollector(Collector):
    """Per-GPU memory, utilisation, temperature and power (see the module note on declared)."""

    def __init__(self, state: HubState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        labels = ["host", "gpu", "name", "source"]
        devices = _gauge("aisys_gpu_devices", "GPUs of the host by source.", ["host", "source"])
        total = _gauge("aisys_gpu_memory_total_bytes", "GPU memory.", labels)
        used = _gauge("aisys_gpu_memory_used_bytes", "GPU memory in use.", labels)
        free = _gauge("aisys_gpu_memory_free_bytes", "GPU memory free.", labels)
        ratio = _gauge("aisys_gpu_memory_used_ratio", "GPU memory use, 0-1.", labels)
        util = _gauge("aisys_gpu_utilization_ratio", "GPU busy time, 0-1.", labels)
        temp = _gauge("aisys_gpu_temperature_celsius", "GPU core temperature.", labels)
        power = _gauge("aisys_gpu_power_watts", "GPU power draw.", labels)
        for host, sample in sorted(self._state.hosts.items()):
            self._add_host(host, sample, devices, total, (used, free, ratio, util, temp, power))
        yield from (devices, total, used, free, ratio, util, temp, power)

    @staticmethod
    def _add_host(
        host: str,
        sample: HostSample,
        devices: GaugeMetricFamily,
        total: GaugeMetricFamily,
        measured: tuple[GaugeMetricFamily, ...],
    ) -> None:
        if sample.reading is None:
            return
        used, free, ratio, util, temp, power = measured
        temperatures = sample.system.gpu_temperatures_c if sample.system else {}
        watts = sample.counters.gpu_power_watts if sample.counters else {}
        by_source: dict[str, int] = {}
        for gpu in sample.reading.gpus:
            by_source[gpu.source] = by_source.get(gpu.source, 0) + 1
            total.add_metric([host, str(gpu.index), gpu.name, gpu.source], gpu.total_mb * _MIB)
            if gpu.source == "declared":
                continue
            key = [host, str(gpu.index), gpu.name, gpu.source]
            used.add_metric(key, gpu.used_mb * _MIB)
            free.add_metric(key, gpu.free_mb * _MIB)
            ratio.add_metric(key, gpu.used_mb / gpu.total_mb)
            if gpu.utilization_percent is not None:
                util.add_metric(key, gpu.utilization_percent / 100.0)
            if gpu.uuid in temperatures:
                temp.add_metric(key, float(temperatures[gpu.uuid]))
            if gpu.uuid in watts:
                power.add_metric(key, watts[gpu.uuid])
        for source, count in sorted(by_source.items()):
            devices.add_metric([host, source], count)


class AgentCollector(Collector):
    """Per-agent health state, heartbeat age, probe result, error counts, perf-log aggregates."""

    def __init__(self, state: HubState, clock: Callable[[], float]) -> None:
        self._state = state
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        labels = ["agent", "host"]
        up = _gauge("aisys_agent_up", "1 if the agent answered its last health probe.", labels)
        health = _gauge(
            "aisys_agent_health_state",
            "Registry health state (1 for the current one).",
            [*labels, "state"],
        )
        age = _gauge(
            "aisys_agent_last_heartbeat_age_seconds",
            "Since the agent was last known alive: its last registry heartbeat that was not "
            "critical or its last answered health probe, whichever is later (no series until "
            "the hub has seen either).",
            labels,
        )
        latency = _gauge(
            "aisys_agent_probe_latency_seconds", "Round trip of the last health probe.", labels
        )
        # A gauge: ErrorBus retention prunes old errors, so these totals can go down.
        errors = _gauge(
            "aisys_agent_errors_retained",
            "Errors the ErrorBus still holds, by severity.",
            ["agent", "severity"],
        )
        now = self._clock()
        tags = self._state.host_tags()
        for agent in sorted(self._state.agents, key=lambda a: a.agent_id):
            # Agents register with an address; label them with the host tag that address
            # belongs to, so host alerts inhibit agent alerts of the same host.
            key = [agent.agent_id, tags.get(agent.host, agent.host)]
            for state in _HEALTH_STATES:
                health.add_metric([*key, state], 1.0 if agent.health == state else 0.0)
            alive_at = self._state.alive_at(agent.agent_id)
            if alive_at is not None:
                age.add_metric(key, max(0.0, now - alive_at))
            probe = self._state.probes.get(agent.agent_id)
            if probe is not None:
                up.add_metric(key, 1.0 if probe.up else 0.0)
                latency.add_metric(key, probe.latency_s)
        for agent_id, by_severity in sorted(self._state.error_counts.items()):
            for severity, count in sorted(by_severity.items()):
                errors.add_metric([agent_id, severity], count)
        yield from (up, health, age, latency, errors)
        yield from self._perf()

    def _perf(self) -> Iterator[Metric]:
        labels = ["agent", "action"]
        count = _gauge("aisys_perf_actions", "Logged actions in the recent window.", labels)
        mean = _gauge(
            "aisys_perf_action_duration_mean_seconds",
            "Mean logged duration, recent window.",
            labels,
        )
        top = _gauge(
            "aisys_perf_action_duration_max_seconds",
            "Longest logged duration, recent window.",
            labels,
        )
        for row in self._state.perf:
            key = [row.agent, row.action]
            count.add_metric(key, row.count)
            mean.add_metric(key, row.mean_duration_s)
            top.add_metric(key, row.max_duration_s)
        yield from (count, mean, top)


class LogShippingCollector(Collector):
    """Lines and bytes each host's log shipper stored in ``LOGS``, and how far behind it is.

    The counters count since the shipper actor started (a restart resets them, as a process
    restart resets any Prometheus counter). ``class`` is the line's error type, ``none`` for a
    line no pattern matched.
    """

    def __init__(self, state: HubState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        up = _gauge("aisys_log_shipper_up", "1 if the host's log shipper answered.", ["host"])
        connected = _gauge(
            "aisys_log_shipper_connected", "1 while the shipper is connected to NATS.", ["host"]
        )
        labels = ["host", "source"]
        files = _gauge("aisys_log_files", "Log files followed.", labels)
        behind = _gauge(
            "aisys_log_unshipped_bytes", "Bytes of the followed files not shipped yet.", labels
        )
        lines = CounterMetricFamily(
            "aisys_log_lines_shipped", "Log lines stored in LOGS.", labels=[*labels, "class"]
        )
        size = CounterMetricFamily(
            "aisys_log_bytes_shipped", "Bytes of those lines.", labels=labels
        )
        duplicates = CounterMetricFamily(
            "aisys_log_lines_duplicate",
            "Lines published again after a restart that LOGS had stored already.",
            labels=labels,
        )
        for shipper in sorted(self._state.log_shippers, key=lambda s: s.host):
            up.add_metric([shipper.host], 0.0 if shipper.error else 1.0)
            connected.add_metric([shipper.host], 1.0 if shipper.connected else 0.0)
            for source in shipper.sources:
                key = [shipper.host, source.source]
                files.add_metric(key, source.files)
                behind.add_metric(key, source.unshipped_bytes)
                size.add_metric(key, source.bytes)
                duplicates.add_metric(key, source.duplicates)
                for kind, count in sorted(source.lines.items()):
                    lines.add_metric([*key, kind], count)
        yield from (up, connected, files, behind, lines, size, duplicates)


class AnomalyCollector(Collector):
    """Anomaly score, flag and predicted seconds to breach of every watched series."""

    def __init__(self, bank: AnomalyBank) -> None:
        self._bank = bank

    def collect(self) -> Iterator[Metric]:
        labels = ["metric", *_SERIES_LABELS]
        score = _gauge("aisys_anomaly_score", "Distance from the EWMA mean in deviations.", labels)
        flagged = _gauge("aisys_anomaly_flagged", "1 while the series is anomalous.", labels)
        eta = _gauge(
            "aisys_breach_eta_seconds",
            "Predicted time until the series crosses its threshold.",
            [*labels, "threshold"],
        )
        for status in self._bank.statuses():
            series = status.labels
            key = [status.metric, *(series.get(name, "") for name in _SERIES_LABELS)]
            if status.score is not None:
                score.add_metric(key, status.score)
            flagged.add_metric(key, 1.0 if status.anomalous else 0.0)
            if status.breach_eta_s is not None and status.threshold is not None:
                eta.add_metric([*key, repr(status.threshold)], status.breach_eta_s)
        yield from (score, flagged, eta)


class AlertCollector(Collector):
    """One series per pending or firing alert with every label of the alert, like Prometheus'
    ``ALERTS``.

    A metric family has one label set, so the family's labels are the union of the current
    alerts' label names, "" where an alert lacks one (Prometheus treats an empty label as absent).
    """

    def __init__(self, engine: AlertEngine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        active = [a for a in self._engine.alerts() if a.state in ("pending", "firing")]
        names = sorted(
            {name for alert in active for name in alert.labels} - {"alertname", "severity", "state"}
        )
        alerts = _gauge(
            "aisys_alerts",
            "Pending and firing alerts (value 1), with every label of the alert.",
            ["alertname", "severity", "state", *names],
        )
        for alert in active:
            alerts.add_metric(
                [
                    alert.rule,
                    alert.severity,
                    alert.state,
                    *(alert.labels.get(name, "") for name in names),
                ],
                1.0,
            )
        yield alerts


def register_collectors(
    registry: CollectorRegistry,
    state: HubState,
    anomalies: AnomalyBank,
    alerts: AlertEngine,
    clock: Callable[[], float],
) -> None:
    """Register every hub collector with ``registry``."""
    for collector in (
        HostCollector(state, clock),
        GpuCollector(state),
        AgentCollector(state, clock),
        LogShippingCollector(state),
        AnomalyCollector(anomalies),
        AlertCollector(alerts),
        ServicesCollector(state, clock),
    ):
        registry.register(collector)
