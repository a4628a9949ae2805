"""Fast-changing host counters for the ObservabilityHub: network bytes and GPU power draw.

Read on the host itself by the probe actor's ``counters()`` method. GPU power comes from NVML;
without NVML the mapping is empty, never an invented figure.
"""

from __future__ import annotations

import psutil
from pydantic import BaseModel, ConfigDict, Field

from actors.probe.gpu import nvml_per_device
from actors.probe.nvml import nvml

__all__ = ["HostCounters", "read_counters"]


class HostCounters(BaseModel):
    """Cumulative network counters (all interfaces) and GPU power of one host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    network_received_bytes: int = Field(ge=0)
    network_sent_bytes: int = Field(ge=0)
    gpu_power_watts: dict[str, float] = Field(
        default_factory=dict, description="GPU uuid -> power draw; empty without NVML."
    )


def gpu_power_watts() -> dict[str, float]:
    """Power draw of every NVML device by uuid; empty when NVML is unavailable."""
    lib = nvml()
    return nvml_per_device(lambda h: lib.nvmlDeviceGetPowerUsage(h) / 1000.0, "power")


def read_counters(tag: str) -> HostCounters:
    """Network counters and GPU power of the host this runs on, labelled ``tag``."""
    network = psutil.net_io_counters()
    return HostCounters(
        host=tag,
        network_received_bytes=network.bytes_recv,
        network_sent_bytes=network.bytes_sent,
        gpu_power_watts=gpu_power_watts(),
    )
