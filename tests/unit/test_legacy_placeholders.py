"""Figures at the legacy boundary: what is known is answered, what is not is None, never 0.

No Ray: PerformanceMonitor's figures are computed from hub rows and aggregates given here; the
VRAM replies from twin and scheduler models built here (a declared GPU, no GPU, unknown host).
"""

from __future__ import annotations

import time
from typing import Any

from deployments.core.twin_models import GpuTwin, HostTwin, TwinSnapshot
from deployments.observability.perflog import MetricRecord
from deployments.observability.state import PerfAggregate
from legacy_gateway import monitor_ports, system_ports, twin_actions
from legacy_gateway._ports import Services
from legacy_gateway.twin_cache import TwinCache


def _row(i: int, agent: str, action: str, duration: float | None, **meta: Any) -> MetricRecord:
    return MetricRecord(
        id=i, agent=agent, action=action, duration_s=duration, metadata=meta, at=1000.0 - i
    )


def test_performance_monitor_averages_durations_only_and_counts_past_the_row_cap() -> None:
    aggregates = [
        PerfAggregate(
            agent="tts", action="speak", count=5000, mean_duration_s=0.2, max_duration_s=1
        ),
        PerfAggregate(
            agent="tts",
            action="monitor:response_time",
            count=1000,
            mean_duration_s=0.8,
            max_duration_s=2,
        ),
    ]
    rows = [
        _row(1, "tts", "monitor:queue_size", None, metric_type="queue_size", value=7),
        _row(2, "tts", "monitor:error", None, metric_type="error", value=1),
        _row(3, "tts", "speak", 0.4),
        _row(4, "tts", "monitor:queue_size", None, metric_type="queue_size", value=3),
        _row(5, "nlu", "monitor:request", None, metric_type="request", value=12),
    ]
    services = monitor_ports._service_metrics(aggregates, rows, None)
    tts = services["tts"]
    assert isinstance(tts, dict)
    assert tts["response_time"] == {"current": 0.4, "average": (5000 * 0.2 + 1000 * 0.8) / 6000}
    assert tts["throughput"] == 6000 / 3600.0  # 6000 logged actions, not the 1000 rows read
    assert tts["reported"] == {"queue_size": 7, "error": 1}  # the newest of each kind
    # Only reported figures, no durations: the response time is unknown, not 0.
    assert services["nlu"] == {
        "response_time": {"current": None, "average": None},
        "throughput": 0.0,
        "reported": {"request": 12},
    }


def _gpu(source: str, used: int = 0) -> GpuTwin:
    return GpuTwin(
        index=0,
        uuid=f"gpu-{source}",
        name="RTX",
        total_mb=12288,
        used_mb=used,
        free_mb=12288 - used,
        utilization_percent=None,
        temperature_c=None,
        source=source,
    )


def _host(tag: str, gpus: list[GpuTwin]) -> HostTwin:
    return HostTwin(
        host=tag,
        ip=None,
        hostname=tag,
        taken_at=time.time(),
        cpu_count=2,
        cpu_percent=10.0,
        memory_total_mb=1000,
        memory_percent=50.0,
        memory_available_mb=500,
        disk_percent=10.0,
        disk_free_mb=100,
        gpus=gpus,
        gpu_error=None if gpus else "no NVML",
        error=None,
        history=[],
    )


class _Twin(TwinCache):
    def __init__(self, hosts: list[HostTwin]) -> None:
        super().__init__(Services(), 5.0)
        self._hosts = hosts

    def snapshot(self) -> TwinSnapshot:
        return TwinSnapshot(
            taken_at=time.time(), hosts=self._hosts, services=[], agents=[], agent_health={}
        )

    def host(self, tag: str) -> HostTwin:
        return next(h for h in self._hosts if h.host == tag)


def test_vram_of_a_declared_gpu_or_an_unknown_host_is_unknown_not_zero() -> None:
    twin = _Twin([_host("mainpc", [_gpu("nvml", used=2048)]), _host("pc2", [_gpu("declared")])])
    actions = twin_actions.TwinActions(twin, Services(), None, "mainpc", ("mainpc", "pc2"))
    payload = actions.get_metrics_command({}).model_dump()["payload"]
    assert (payload["mainpc_vram_used_mb"], payload["mainpc_vram_free_mb"]) == (2048, 10240)
    assert payload["pc2_vram_total_mb"] == 12288
    assert (payload["pc2_vram_used_mb"], payload["pc2_vram_free_mb"]) == (None, None)
    assert payload["pc2_gpu_source"] == "declared"
    lone = twin_actions.TwinActions(_Twin([]), Services(), None, "mainpc", ("mainpc", "pc2"))
    unknown = lone.get_metrics_command({}).model_dump()["payload"]
    assert [unknown[f"mainpc_vram_{k}_mb"] for k in ("total", "used", "free")] == [None] * 3


def test_resource_manager_without_a_measured_gpu_has_no_gpu_percent_to_refuse_on() -> None:
    for gpus in ([], [_gpu("declared")]):
        port = system_ports.ResourceManagerPort(Services(), _Twin([_host("pc2", gpus)]), "pc2")
        figures = port._figures()
        assert figures["gpu_memory_percent"] is None
        port._limits["gpu"] = 0.0  # any GPU figure would be over it
        assert port._available(figures) is True
    busy = system_ports.ResourceManagerPort(
        Services(), _Twin([_host("pc2", [_gpu("nvml", used=6144)])]), "pc2"
    )
    assert busy._figures()["gpu_memory_percent"] == 50.0
