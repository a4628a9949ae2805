"""Builders shared by the ObservabilityHub unit tests: host samples, agents, a clock."""

from __future__ import annotations

from actors.probe.counters import HostCounters
from actors.probe.models import GpuReading, HostReading
from actors.probe.system import SystemReading
from actors.registry.models import AgentRecord, Health
from deployments.observability.state import HostSample

MIB = 1024 * 1024


class Clock:
    """A settable clock (epoch seconds)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def gpu(index: int = 0, used: int = 3000, total: int = 12000, source: str = "nvml") -> GpuReading:
    return GpuReading.model_validate(
        {
            "index": index,
            "uuid": f"GPU-{index}",
            "name": "RTX test",
            "total_mb": total,
            "used_mb": used,
            "free_mb": total - used,
            "utilization_percent": 40,
            "source": source,
        }
    )


def host_sample(
    host: str,
    at: float,
    *,
    cpu: float = 25.0,
    memory: float = 50.0,
    gpus: list[GpuReading] | None = None,
    ip: str = "10.0.0.1",
    temperatures: dict[str, int] | None = None,
    power: dict[str, float] | None = None,
) -> HostSample:
    return HostSample(
        host=host,
        taken_at=at,
        reading=HostReading(
            host=host,
            taken_at=at,
            gpus=gpus or [],
            cpu_percent=cpu,
            memory_percent=memory,
            memory_available_mb=4096,
        ),
        system=SystemReading(
            host=host,
            ip=ip,
            hostname=f"{host}-box",
            cpu_count=2,
            memory_total_mb=8192,
            disk_path="/",
            disk_percent=40.0,
            disk_free_mb=1000,
            gpu_temperatures_c=temperatures or {},
        ),
        counters=HostCounters(
            host=host,
            network_received_bytes=123,
            network_sent_bytes=456,
            gpu_power_watts=power or {},
        ),
    )


def agent(
    agent_id: str,
    host: str = "10.0.0.1",
    health: Health = Health.PASSING,
    last_seen_at: float = 0.0,
    health_check_port: int | None = 5710,
) -> AgentRecord:
    return AgentRecord(
        agent_id=agent_id,
        agent_type=agent_id,
        host=host,
        port=5709,
        health_check_port=health_check_port,
        capabilities=[],
        tags=[],
        metadata={},
        check="ttl",
        ttl_s=30.0,
        deregister_critical_after_s=600.0,
        health=health,
        health_note="",
        registered_at=last_seen_at,
        last_seen_at=last_seen_at,
        critical_since=None,
    )
