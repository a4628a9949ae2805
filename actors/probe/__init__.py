"""Per-host probe: GPU readings from NVML (or a declared table) plus CPU and memory load."""

from actors.probe.gpu import DeclaredProbe, GpuProbe, HostProbe, NvmlProbe, RecordedProbe
from actors.probe.models import GpuProcess, GpuReading, GpuSnapshot, GpuSource, HostReading

__all__ = [
    "DeclaredProbe",
    "GpuProbe",
    "GpuProcess",
    "GpuReading",
    "GpuSnapshot",
    "GpuSource",
    "HostProbe",
    "HostReading",
    "NvmlProbe",
    "RecordedProbe",
]
