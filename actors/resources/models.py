"""Pydantic models of ResourceScheduler: lease requests and states, GPU views, tasks."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from actors.probe.models import GpuProcess, GpuSource

__all__ = [
    "EndedLease",
    "GpuList",
    "GpuMemoryUse",
    "GpuStatus",
    "HostStatus",
    "LeaseGrant",
    "LeaseHeartbeat",
    "LeaseList",
    "LeaseRequest",
    "LeaseStatus",
    "LeaseUsage",
    "PRIORITY_NAMES",
    "QueuedLease",
    "TaskRequest",
    "TaskState",
    "TaskStatus",
    "UnloadEndpoint",
    "UsageReport",
    "priority_value",
]

_OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")

#: The legacy AsyncProcessor's priority names, as queue priorities (higher goes first).
PRIORITY_NAMES: dict[str, int] = {"high": 20, "medium": 10, "low": 0}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def priority_value(value: object) -> object:
    """Map a priority name (``high``/``medium``/``low``) to its number; pass numbers through."""
    if isinstance(value, str) and value in PRIORITY_NAMES:
        return PRIORITY_NAMES[value]
    return value


Priority = Annotated[int, Field(ge=0, le=100)]


class UnloadEndpoint(_Model):
    """How the owner of a model is asked to unload it.

    ``zmq``: a legacy ModelManagerAgent REP socket (``tcp://host:port``), sent
    ``{"command": "UNLOAD_MODEL", "model_name": ...}``. ``http``: a URL that is POSTed the same
    JSON and answers 2xx.
    """

    protocol: Literal["zmq", "http"]
    address: str = Field(max_length=512)

    @model_validator(mode="after")
    def address_matches_the_protocol(self) -> UnloadEndpoint:
        prefixes = ("tcp://",) if self.protocol == "zmq" else ("http://", "https://")
        if not self.address.startswith(prefixes):
            raise ValueError(f"a {self.protocol} unload endpoint must start with {prefixes}")
        return self


class LeaseRequest(_Model):
    """``POST /resources/leases``: VRAM on one GPU for ``owner``."""

    owner: str
    vram_mb: int = Field(gt=0, le=1_048_576)
    host: str = Field(default="any", description="A host tag, or 'any'.")
    gpu: int | str = Field(default="any", description="Device index or UUID, or 'any'.")
    priority: Priority = 10
    ttl_s: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        description="Expire unless heartbeated within; None: default.",
    )
    max_wait_s: float | None = Field(
        default=None, ge=0, le=86_400, description="Longest time queued; 0 never queues."
    )
    exclusive: bool = Field(default=False, description="No other lease on the GPU while held.")
    prefer_hosts: list[str] = Field(default_factory=list, description="Order tried for 'any'.")
    model_name: str | None = Field(default=None, max_length=256)
    unload_endpoint: UnloadEndpoint | None = None

    @field_validator("priority", mode="before")
    @classmethod
    def priority_names_map_to_numbers(cls, value: object) -> object:
        return priority_value(value)

    @field_validator("owner")
    @classmethod
    def owner_is_a_short_identifier(cls, value: str) -> str:
        if not _OWNER_RE.match(value):
            raise ValueError(
                f"owner {value!r} must be 1-128 characters: letters, digits and _ . : @ / -"
            )
        return value

    @model_validator(mode="after")
    def a_device_index_needs_a_host(self) -> LeaseRequest:
        if isinstance(self.gpu, int) and self.host == "any":
            raise ValueError("gpu names a device index, so host must name a host tag too")
        if self.unload_endpoint is not None and self.model_name is None:
            raise ValueError("unload_endpoint needs model_name: the model the owner unloads")
        return self


class LeaseGrant(_Model):
    """A granted lease: where the VRAM is and how to place Ray work there."""

    state: Literal["granted"] = "granted"
    lease_id: str
    owner: str
    vram_mb: int
    priority: int
    exclusive: bool
    host: str
    gpu_index: int
    gpu_uuid: str
    num_gpus: float = Field(description="The Ray num_gpus fraction for work under this lease.")
    resources: dict[str, float] = Field(description="Ray custom resources pinning the host.")
    requested_at: float
    granted_at: float
    ttl_s: float
    expires_at: float
    last_used_at: float
    model_name: str | None = None
    unload_endpoint: UnloadEndpoint | None = None


class QueuedLease(_Model):
    """A request waiting in the queue; ``position`` 1 is served first."""

    state: Literal["queued"] = "queued"
    lease_id: str
    request: LeaseRequest
    requested_at: float
    wait_until: float
    seq: int
    position: int = 0
    effective_priority: float = 0.0


class EndedLease(_Model):
    """A lease (or queued request) that is over."""

    state: Literal["released", "expired", "cancelled", "timed_out"]
    lease_id: str
    owner: str
    ended_at: float
    reason: str


LeaseStatus = Annotated[LeaseGrant | QueuedLease | EndedLease, Field(discriminator="state")]


class LeaseHeartbeat(_Model):
    """``PUT /resources/leases/{id}/heartbeat``: renew the TTL; ``used`` marks the model used."""

    used: bool = False


class LeaseList(_Model):
    """``GET /resources/leases``: granted leases and the queue in serving order."""

    granted: list[LeaseGrant]
    queued: list[QueuedLease]
    usage: UsageReport | None = Field(default=None, description="Leased vs measured VRAM.")


class GpuStatus(_Model):
    """One GPU as the scheduler accounts it (MiB)."""

    host: str
    index: int
    uuid: str
    name: str
    source: GpuSource
    total_mb: int
    used_mb: int
    free_mb: int
    leased_mb: int
    unseen_mb: int = Field(description="Leased VRAM not yet visible as used in the readings.")
    available_mb: int = Field(description="free - unseen - safety margin: what can be leased.")
    utilization_percent: int | None
    processes: list[GpuProcess]
    leases: list[str]


class HostStatus(_Model):
    """One host's latest reading; ``gpu_error`` says why it has no GPU."""

    host: str
    taken_at: float
    gpu_devices: int
    gpu_error: str | None
    cpu_percent: float
    memory_percent: float


class GpuList(_Model):
    """``GET /resources/gpus``."""

    gpu_devices: int
    gpus: list[GpuStatus]
    hosts: list[HostStatus]


TaskState = Literal["waiting", "running", "succeeded", "failed"]


class TaskRequest(_Model):
    """``POST /resources/tasks``: run ``function`` (``module:name``) as a Ray task.

    With ``lease_id`` the task runs under that lease; with ``vram_mb`` it gets a lease of its
    own (queued by ``priority``, released when the task ends); with neither it is CPU work on
    ``host``.
    """

    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    args: list[JsonValue] = Field(default_factory=list)
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)
    priority: Priority = 10
    lease_id: str | None = None
    vram_mb: int | None = Field(default=None, gt=0)
    host: str = Field(default="any", description="Host tag for CPU work or a task's own lease.")
    num_cpus: float = Field(default=0.0, ge=0, le=64)

    @field_validator("priority", mode="before")
    @classmethod
    def priority_names_map_to_numbers(cls, value: object) -> object:
        return priority_value(value)

    @model_validator(mode="after")
    def lease_or_vram_not_both(self) -> TaskRequest:
        if self.lease_id is not None and self.vram_mb is not None:
            raise ValueError("give lease_id (use that lease) or vram_mb (get one), not both")
        return self


class TaskStatus(_Model):
    """``GET /resources/tasks/{id}``."""

    task_id: str
    state: TaskState
    function: str
    lease_id: str | None
    host: str | None
    submitted_at: float
    finished_at: float | None = None
    pid: int | None = Field(default=None, description="Its process while it runs under a lease.")
    result: JsonValue = None
    error: str | None = None


class GpuMemoryUse(_Model):
    """A process on a GPU that no lease explains."""

    host: str
    gpu_index: int
    pid: int
    used_mb: int | None


class LeaseUsage(_Model):
    """A lease's VRAM: leased vs what NVML measures for the processes holding it."""

    lease_id: str
    owner: str
    host: str
    gpu_index: int
    leased_mb: int
    used_mb: int | None = Field(description="None: no process of the holder is on the GPU.")
    pids: list[int]
    over: bool = Field(description="used_mb is above leased_mb by more than the tolerance.")


class UsageReport(_Model):
    """``GET /resources/usage`` (also in ``GET /resources/leases``)."""

    leases: list[LeaseUsage]
    unexplained: list[GpuMemoryUse]
    learned_peaks: dict[str, int] = Field(description="Kind -> highest VRAM measured (MiB).")
