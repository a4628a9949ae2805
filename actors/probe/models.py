"""Pydantic models of host readings: what a probe saw on one host at one moment."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GpuProcess", "GpuReading", "GpuSnapshot", "GpuSource", "HostReading"]

#: Where a GPU figure comes from. ``declared`` devices come from Settings, not from hardware;
#: ``nvml-double`` ones from the NVML test double's device table (``resources.nvml_double``).
GpuSource = Literal["nvml", "nvml-double", "recorded", "declared"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpuProcess(_Model):
    """A process holding memory on a GPU; ``used_mb`` is None where the driver cannot tell."""

    pid: int = Field(ge=0)
    used_mb: int | None = Field(default=None, ge=0)


class GpuReading(_Model):
    """One device as the probe saw it. Memory in MiB."""

    index: int = Field(ge=0)
    uuid: str
    name: str
    total_mb: int = Field(gt=0)
    used_mb: int = Field(ge=0)
    free_mb: int = Field(ge=0)
    utilization_percent: int | None = Field(default=None, ge=0, le=100)
    processes: list[GpuProcess] = Field(default_factory=list)
    source: GpuSource


class GpuSnapshot(_Model):
    """What a :class:`~actors.probe.gpu.GpuProbe` returns: devices, or none and why."""

    gpus: list[GpuReading] = Field(default_factory=list)
    error: str | None = Field(default=None, description="Why no device is visible, if none is.")


class HostReading(_Model):
    """GPUs plus CPU and memory load of one host (a Ray host tag)."""

    host: str
    taken_at: float
    gpus: list[GpuReading]
    gpu_error: str | None = None
    cpu_percent: float = Field(ge=0)
    memory_percent: float = Field(ge=0, le=100)
    memory_available_mb: int = Field(ge=0)
