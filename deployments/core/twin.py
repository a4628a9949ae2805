"""DigitalTwin: the live model of the hosts, plus what Serve and the registry report.

Host figures come from each host's probe actor (measured on that host); the twin keeps the
latest reading and a short history per host and answers ``simulate_load`` from them with the
legacy SystemDigitalTwin's thresholds (deny VRAM above 95 %, caution CPU above 90 %, deny RAM
above 90 %). The ResourceScheduler's usage report adds, per GPU, each lease's leased vs
measured VRAM and the processes no lease explains. Services are parsed from Serve's instance
details; nothing here imports Ray.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from actors.probe.models import HostReading
from actors.probe.system import SystemReading
from actors.resources.models import GpuMemoryUse, LeaseUsage, UsageReport
from cluster.base.errors import ClusterError, UnknownHost
from cluster.base.settings import TwinSettings
from deployments.core.twin_models import (
    DeploymentTwin,
    GpuTwin,
    HostSample,
    HostTwin,
    Recommendation,
    ResourceCheck,
    ServiceTwin,
    SimulateLoadRequest,
    SimulateLoadResult,
)

__all__ = ["DigitalTwin", "services_from_details"]


class _Host:
    def __init__(self, tag: str, history_length: int) -> None:
        self.tag = tag
        self.reading: HostReading | None = None
        self.system: SystemReading | None = None
        self.error: str | None = "not sampled yet"
        self.history: deque[HostSample] = deque(maxlen=history_length)


class DigitalTwin:
    """Latest readings and history of every host tag.

    Args:
        settings: the ``core.twin`` section.
        hosts: the host tags to model.
        clock: seconds since the epoch.
    """

    def __init__(
        self, settings: TwinSettings, hosts: Iterable[str], clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._hosts = {tag: _Host(tag, settings.history_length) for tag in hosts}
        self._usage: UsageReport | None = None
        self._usage_error: str | None = "not read yet"

    @property
    def host_tags(self) -> list[str]:
        return sorted(self._hosts)

    def record(self, reading: HostReading, system: SystemReading | None) -> None:
        """Store a probe reading (and, when available, the host's system facts)."""
        host = self._require(reading.host)
        host.reading = reading
        host.system = system or host.system
        host.error = None
        host.history.append(
            HostSample(
                taken_at=reading.taken_at,
                cpu_percent=reading.cpu_percent,
                memory_percent=reading.memory_percent,
                disk_percent=None if system is None else system.disk_percent,
                vram_used_mb=sum(gpu.used_mb for gpu in reading.gpus),
            )
        )

    def record_error(self, tag: str, error: str) -> None:
        """Note that ``tag``'s probe did not answer; its last figures stay, marked stale."""
        self._require(tag).error = error

    def record_usage(self, usage: UsageReport | None, error: str | None = None) -> None:
        """Store the ResourceScheduler's leased vs used report; with ``error``, keep the last
        one, marked stale (None and an error: nothing is known)."""
        if usage is not None:
            self._usage = usage
        self._usage_error = error

    def hosts(self) -> list[HostTwin]:
        return [self._host_twin(self._hosts[tag]) for tag in self.host_tags]

    def host(self, tag: str) -> HostTwin:
        return self._host_twin(self._require(tag))

    def simulate_load(self, request: SimulateLoadRequest) -> SimulateLoadResult:
        """Answer "would this fit on the host now?" from the latest reading."""
        host = self._require(request.host)
        if host.reading is None:
            raise ClusterError(f"core: host '{request.host}' has not been sampled yet; retry")
        reading = host.reading
        checks = [self._cpu_check(reading, request.cpu_percent)]
        checks.append(self._ram_check(reading, host.system, request.ram_mb))
        if request.vram_mb > 0:
            checks.append(self._vram_check(reading, request.vram_mb))
        reasons = [c.detail for c in checks if c.verdict != "ok"]
        recommendation: Recommendation
        if any(c.verdict == "deny" for c in checks):
            recommendation = "deny_insufficient_resources"
        elif any(c.verdict == "caution" for c in checks):
            recommendation = "caution_high_cpu"
        else:
            recommendation = "proceed"
        return SimulateLoadResult(
            host=request.host,
            taken_at=reading.taken_at,
            recommendation=recommendation,
            reasons=reasons,
            checks=checks,
        )

    # -- checks ---------------------------------------------------------------------------

    def _cpu_check(self, reading: HostReading, requested: float) -> ResourceCheck:
        projected = min(100.0, reading.cpu_percent + requested)
        limit = self._settings.cpu_caution_percent
        over = projected > limit
        return ResourceCheck(
            resource="cpu",
            requested=requested,
            current=reading.cpu_percent,
            projected=projected,
            capacity=100.0,
            projected_percent=projected,
            threshold_percent=limit,
            verdict="caution" if over else "ok",
            detail=f"CPU would be at {projected:.1f}% (caution above {limit:g}%)",
        )

    def _ram_check(
        self, reading: HostReading, system: SystemReading | None, requested_mb: float
    ) -> ResourceCheck:
        limit = self._settings.ram_deny_percent
        if system is not None and system.memory_total_mb > 0:
            total = float(system.memory_total_mb)
            used = total - reading.memory_available_mb
        else:
            # Without the total, derive it from the used percentage and what is available.
            free_fraction = max(1e-9, 1 - reading.memory_percent / 100)
            total = reading.memory_available_mb / free_fraction
            used = total - reading.memory_available_mb
        projected = used + requested_mb
        percent = 100.0 * projected / total if total else 100.0
        over = percent > limit
        return ResourceCheck(
            resource="ram",
            requested=requested_mb,
            current=used,
            projected=projected,
            capacity=total,
            projected_percent=percent,
            threshold_percent=limit,
            verdict="deny" if over else "ok",
            detail=f"RAM would be at {percent:.1f}% of {total:.0f} MB (deny above {limit:g}%)",
        )

    def _vram_check(self, reading: HostReading, requested_mb: float) -> ResourceCheck:
        limit = self._settings.vram_deny_percent
        if not reading.gpus:
            why = reading.gpu_error or "no GPU"
            return ResourceCheck(
                resource="vram",
                requested=requested_mb,
                current=0,
                projected=requested_mb,
                capacity=None,
                projected_percent=100.0,
                threshold_percent=limit,
                verdict="deny",
                detail=f"host '{reading.host}' has no GPU to hold {requested_mb:g} MB ({why})",
            )
        # An agent lives on one device: the one with the most free memory is its best chance.
        gpu = max(reading.gpus, key=lambda g: g.free_mb)
        projected = gpu.used_mb + requested_mb
        percent = 100.0 * projected / gpu.total_mb
        over = percent > limit
        return ResourceCheck(
            resource="vram",
            requested=requested_mb,
            current=gpu.used_mb,
            projected=projected,
            capacity=gpu.total_mb,
            projected_percent=percent,
            threshold_percent=limit,
            verdict="deny" if over else "ok",
            detail=f"VRAM of GPU {gpu.index} ({gpu.name}) would be at {percent:.1f}% of "
            f"{gpu.total_mb} MB (deny above {limit:g}%)",
        )

    # -- views ----------------------------------------------------------------------------

    def _require(self, tag: str) -> _Host:
        host = self._hosts.get(tag)
        if host is None:
            raise UnknownHost(tag, self.host_tags)
        return host

    def _host_twin(self, host: _Host) -> HostTwin:
        reading, system, usage = host.reading, host.system, self._usage
        temperatures = system.gpu_temperatures_c if system else {}
        gpus = [
            GpuTwin(
                index=g.index,
                uuid=g.uuid,
                name=g.name,
                total_mb=g.total_mb,
                used_mb=g.used_mb,
                free_mb=g.free_mb,
                utilization_percent=g.utilization_percent,
                temperature_c=temperatures.get(g.uuid),
                source=g.source,
                leases=_on_gpu(usage.leases, host.tag, g.index) if usage else None,
                unexplained=_on_gpu(usage.unexplained, host.tag, g.index) if usage else None,
            )
            for g in (reading.gpus if reading else [])
        ]
        return HostTwin(
            host=host.tag,
            ip=system.ip if system else None,
            hostname=system.hostname if system else None,
            taken_at=reading.taken_at if reading else None,
            cpu_count=system.cpu_count if system else None,
            cpu_percent=reading.cpu_percent if reading else None,
            memory_total_mb=system.memory_total_mb if system else None,
            memory_percent=reading.memory_percent if reading else None,
            memory_available_mb=reading.memory_available_mb if reading else None,
            disk_percent=system.disk_percent if system else None,
            disk_free_mb=system.disk_free_mb if system else None,
            gpus=gpus,
            gpu_error=reading.gpu_error if reading else None,
            error=host.error,
            history=list(host.history),
            usage_error=self._usage_error,
        )


_OnGpu = TypeVar("_OnGpu", LeaseUsage, GpuMemoryUse)


def _on_gpu(rows: list[_OnGpu], host: str, index: int) -> list[_OnGpu]:
    return [row for row in rows if (row.host, row.gpu_index) == (host, index)]


def _text(value: Any) -> str:
    # Serve's details hold its status enums (str subclasses whose str() is "Enum.NAME").
    return str(getattr(value, "value", value))


def _pinned_tag(deployment_config: Mapping[str, Any], host_tags: set[str]) -> str | None:
    resources = (deployment_config.get("ray_actor_options") or {}).get("resources") or {}
    pinned = sorted(tag for tag in resources if tag in host_tags)
    return pinned[0] if pinned else None


def services_from_details(details: Mapping[str, Any], host_tags: set[str]) -> list[ServiceTwin]:
    """Turn Serve's instance details (``get_serve_instance_details``) into service twins."""
    services = []
    for name, app in sorted((details.get("applications") or {}).items()):
        config = app.get("deployed_app_config") or {}
        pins = {d.get("name"): _pinned_tag(d, host_tags) for d in config.get("deployments") or []}
        deployments = []
        for dep_name, dep in sorted((app.get("deployments") or {}).items()):
            states: dict[str, int] = {}
            ips: set[str] = set()
            ids: list[str] = []
            for replica in dep.get("replicas") or []:
                state = _text(replica.get("state", "UNKNOWN"))
                states[state] = states.get(state, 0) + 1
                ids.append(str(replica.get("replica_id", "")))
                if state == "RUNNING" and replica.get("node_ip"):
                    ips.add(str(replica["node_ip"]))
            deployments.append(
                DeploymentTwin(
                    name=dep_name,
                    status=_text(dep.get("status", "UNKNOWN")),
                    message=str(dep.get("message") or ""),
                    host_tag=pins.get(dep_name),
                    replica_states=states,
                    replica_ids=sorted(ids),
                    node_ips=sorted(ips),
                )
            )
        services.append(
            ServiceTwin(
                name=name,
                status=_text(app.get("status", "UNKNOWN")),
                message=str(app.get("message") or ""),
                route_prefix=app.get("route_prefix"),
                deployments=deployments,
            )
        )
    return services
