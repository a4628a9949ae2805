"""HostProbeClient: typed calls of one host's probe actor (GPU, system and counter readings)."""

from __future__ import annotations

from typing import Any

from actors.calls import Call
from actors.probe.counters import HostCounters
from actors.probe.models import HostReading
from actors.probe.system import SystemReading

__all__ = ["HostProbeClient"]


class HostProbeClient:
    """The probe actor's calls, typed (its handle:
    :func:`actors.probe.actor.get_or_create_host_probe`)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def read(self) -> Call[HostReading]:
        """The host's GPUs as NVML (or the declared table) shows them now."""
        return Call(self.handle.read.remote())

    def system(self, disk_path: str) -> Call[SystemReading]:
        """CPU, memory and the disk holding ``disk_path``."""
        return Call(self.handle.system.remote(disk_path))

    def counters(self) -> Call[HostCounters]:
        return Call(self.handle.counters.remote())
