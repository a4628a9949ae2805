"""Shared helpers of the ResourceScheduler unit tests: fake clock, recorded readings."""

from __future__ import annotations

from pathlib import Path

from actors.probe.gpu import RecordedProbe
from actors.probe.models import GpuSnapshot, HostReading

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nvml"
RTX4090 = FIXTURES / "rtx4090_host.json"
RTX3060 = FIXTURES / "rtx3060_host.json"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def host_reading(host: str, snapshot: GpuSnapshot, now: float) -> HostReading:
    return HostReading(
        host=host,
        taken_at=now,
        gpus=snapshot.gpus,
        gpu_error=snapshot.error,
        cpu_percent=10.0,
        memory_percent=40.0,
        memory_available_mb=8000,
    )


def recorded(path: Path) -> RecordedProbe:
    return RecordedProbe.from_file(path)
