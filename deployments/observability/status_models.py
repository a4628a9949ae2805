"""Pydantic models of the status page: the aggregated snapshot and the stream ticket.

The snapshot reuses the models of the routes it is built from (``GET /core/twin``, ``/core/queue``,
``/core/breakers``, ``/resources/gpus``, ``/resources/leases``, ``/errors``,
``/observability/alerts``). A panel whose source did not answer is None, and ``unknown`` says why:
the page shows it as unknown, never as zero.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from actors.errors.models import StoredEvent
from actors.probe.models import GpuSource
from actors.registry.models import AgentRecord
from actors.resources.models import GpuMemoryUse
from deployments.core.models import BreakerView, QueueView
from deployments.core.twin_models import HostTwin, ServiceTwin
from deployments.observability.alert_models import Alert

__all__ = ["PANELS", "GpuRow", "LeaseShare", "StatusSnapshot", "StreamTicket"]

#: The panels of the page, in page order.
PANELS = ("hosts", "gpus", "services", "agents", "alerts", "errors", "queue")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LeaseShare(_Model):
    """A granted lease on a GPU."""

    lease_id: str
    owner: str
    vram_mb: int
    model_name: str | None
    used_mb: int | None = Field(
        default=None, description="Measured for its processes; None: not measured (unknown)."
    )
    over: bool = Field(default=False, description="Above its lease beyond the tolerance.")


class GpuRow(_Model):
    """One GPU: the twin's reading joined with the scheduler's lease accounting (MiB).

    ``leased_mb``, ``unseen_mb``, ``leases`` and ``unexplained`` are None when the
    ResourceScheduler did not answer (``unexplained`` also when it measured nothing);
    ``temperature_c`` is None when the twin did not (or NVML has no sensor).
    """

    host: str
    index: int
    uuid: str
    name: str
    source: GpuSource
    total_mb: int
    used_mb: int
    free_mb: int
    leased_mb: int | None
    unseen_mb: int | None = Field(description="Leased VRAM not yet visible as used.")
    utilization_percent: int | None
    temperature_c: int | None
    leases: list[LeaseShare] | None
    unexplained: list[GpuMemoryUse] | None = Field(
        default=None, description="Processes on the GPU that no lease explains."
    )


class StatusSnapshot(_Model):
    """Answer of ``GET /observability/status/snapshot``: every panel of the page at once."""

    taken_at: float
    hosts: list[HostTwin] | None = Field(description="Without their history.")
    gpus: list[GpuRow] | None
    lease_queue: int | None = Field(description="Lease requests waiting for VRAM.")
    services: list[ServiceTwin] | None
    agents: list[AgentRecord] | None
    alerts: list[Alert] | None
    errors: list[StoredEvent] | None = Field(description="The latest error events, newest first.")
    queue: QueueView | None
    breakers: list[BreakerView] | None
    unknown: dict[str, str] = Field(
        description="Why a source did not answer, by source (twin, gpus, leases, errors, ...)."
    )


class StreamTicket(_Model):
    """Answer of ``POST /observability/status/ticket``: opens ``/status/events`` once."""

    ticket: str
    expires_at: float
    events_url: str = Field(description="Where to use it, as a path with the ticket.")
