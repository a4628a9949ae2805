"""Host facts the digital twin shows beside a :class:`HostReading`: address, disk, totals, GPU
temperatures. Read on the host itself by the probe actor's ``system()`` method.

GPU temperatures come from NVML like the devices in :class:`HostReading`; without NVML there
are none (an empty mapping), never an invented figure.
"""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, Field

from actors.probe.gpu import nvml_per_device
from actors.probe.nvml import nvml

__all__ = ["SystemReading", "read_system"]


_MIB = 1024 * 1024


class SystemReading(BaseModel):
    """Slow-changing facts and disk use of one host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    ip: str
    hostname: str
    cpu_count: int = Field(ge=1)
    memory_total_mb: int = Field(ge=0)
    disk_path: str
    disk_percent: float = Field(ge=0, le=100)
    disk_free_mb: int = Field(ge=0)
    gpu_temperatures_c: dict[str, int] = Field(
        default_factory=dict, description="GPU uuid -> core temperature; empty without NVML."
    )


def _existing(path: Path) -> Path:
    # The data dir may not exist on every host yet; measure the filesystem that would hold it.
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def gpu_temperatures() -> dict[str, int]:
    """Core temperature of every NVML device by uuid; empty when NVML is unavailable."""
    lib = nvml()
    read = lambda h: lib.nvmlDeviceGetTemperature(h, lib.NVML_TEMPERATURE_GPU)  # noqa: E731
    return {uuid: int(t) for uuid, t in nvml_per_device(read, "temperature").items()}


def read_system(host: str, ip: str, disk_path: Path) -> SystemReading:
    """Read this machine's facts; ``ip`` is the node address Ray knows it by."""
    path = _existing(disk_path)
    disk = psutil.disk_usage(str(path))
    return SystemReading(
        host=host,
        ip=ip,
        hostname=socket.gethostname(),
        cpu_count=psutil.cpu_count() or 1,
        memory_total_mb=psutil.virtual_memory().total // _MIB,
        disk_path=str(path),
        disk_percent=disk.percent,
        disk_free_mb=disk.free // _MIB,
        gpu_temperatures_c=gpu_temperatures(),
    )
