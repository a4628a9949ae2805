"""Fast-changing host counters for the ObservabilityHub: network bytes and GPU power draw.

Read on the host itself by the probe actor's ``counters()`` method. GPU power comes from NVML;
without NVML the mapping is empty, never an invented figure.
"""

from __future__ import annotations

import logging

import psutil
import pynvml
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["HostCounters", "read_counters"]

logger = logging.getLogger(__name__)


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
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return {}
    try:
        power: dict[str, float] = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            try:
                power[uuid] = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # milliwatts
            except pynvml.NVMLError_NotSupported:
                continue
        return power
    except pynvml.NVMLError as exc:
        logger.warning("NVML power read failed: %s", exc)
        return {}
    finally:
        pynvml.nvmlShutdown()


def read_counters(tag: str) -> HostCounters:
    """Network counters and GPU power of the host this runs on, labelled ``tag``."""
    network = psutil.net_io_counters()
    return HostCounters(
        host=tag,
        network_received_bytes=network.bytes_recv,
        network_sent_bytes=network.bytes_sent,
        gpu_power_watts=gpu_power_watts(),
    )
