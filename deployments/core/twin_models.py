"""Pydantic models of the digital twin: hosts (with GPUs and history), services, agents, and the
``simulate_load`` question and answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from actors.probe.models import GpuSource
from actors.registry.models import AgentRecord
from actors.resources.models import GpuMemoryUse, LeaseUsage

__all__ = [
    "DeploymentTwin",
    "GpuTwin",
    "HostSample",
    "HostTwin",
    "Recommendation",
    "ResourceCheck",
    "ServiceTwin",
    "SimulateLoadRequest",
    "SimulateLoadResult",
    "TwinSnapshot",
]


Recommendation = Literal["proceed", "caution_high_cpu", "deny_insufficient_resources"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpuTwin(_Model):
    """One GPU as its host's probe saw it; memory in MiB."""

    index: int
    uuid: str
    name: str
    total_mb: int
    used_mb: int
    free_mb: int
    utilization_percent: int | None
    temperature_c: int | None
    source: GpuSource
    leases: list[LeaseUsage] | None = Field(
        default=None,
        description="The leases on this GPU, leased vs measured VRAM (used_mb None: none of "
        "the holder's processes measured yet); None: the ResourceScheduler's accounting is "
        "not known (usage_error of the host says why).",
    )
    unexplained: list[GpuMemoryUse] | None = Field(
        default=None, description="Processes on this GPU that no lease explains; None: unknown."
    )


class HostSample(_Model):
    """One point of a host's history."""

    taken_at: float
    cpu_percent: float
    memory_percent: float
    disk_percent: float | None
    vram_used_mb: int


class HostTwin(_Model):
    """A host, measured on that host by its probe actor. ``error`` says why figures are stale."""

    host: str
    ip: str | None
    hostname: str | None
    taken_at: float | None
    cpu_count: int | None
    cpu_percent: float | None
    memory_total_mb: int | None
    memory_percent: float | None
    memory_available_mb: int | None
    disk_percent: float | None
    disk_free_mb: int | None
    gpus: list[GpuTwin]
    gpu_error: str | None
    error: str | None
    history: list[HostSample]
    usage_error: str | None = Field(
        default=None,
        description="Why the leases on its GPUs are not known (or only as last read).",
    )


class DeploymentTwin(_Model):
    name: str
    status: str
    message: str
    host_tag: str | None = Field(description="The host tag the deployment is pinned to.")
    replica_states: dict[str, int]
    replica_ids: list[str]
    node_ips: list[str] = Field(description="Nodes of the running replicas.")


class ServiceTwin(_Model):
    """A Serve application with its deployments (from Serve's status API)."""

    name: str
    status: str
    message: str
    route_prefix: str | None
    deployments: list[DeploymentTwin]


class TwinSnapshot(_Model):
    """Answer of ``GET /core/twin``."""

    taken_at: float
    hosts: list[HostTwin]
    services: list[ServiceTwin]
    agents: list[AgentRecord]
    agent_health: dict[str, int]


class SimulateLoadRequest(_Model):
    """Would an agent needing this much fit on ``host`` now?"""

    host: str = Field(min_length=1, max_length=32)
    vram_mb: float = Field(default=0, ge=0)
    cpu_percent: float = Field(default=0, ge=0)
    ram_mb: float = Field(default=0, ge=0)


class ResourceCheck(_Model):
    resource: Literal["vram", "cpu", "ram"]
    requested: float
    current: float
    projected: float
    capacity: float | None
    projected_percent: float
    threshold_percent: float
    verdict: Literal["ok", "caution", "deny"]
    detail: str


class SimulateLoadResult(_Model):
    """The legacy recommendations: ``proceed``, ``caution_high_cpu``,
    ``deny_insufficient_resources``."""

    host: str
    taken_at: float
    recommendation: Recommendation
    reasons: list[str]
    checks: list[ResourceCheck]
