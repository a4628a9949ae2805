"""The GPU probes: NVML without a driver, recorded and declared readings, the host probe."""

from __future__ import annotations

import pynvml
import pytest

from actors.probe.gpu import DeclaredProbe, HostProbe, NvmlProbe, RecordedProbe
from actors.probe.models import GpuSnapshot
from cluster.base.settings import DeclaredGpu
from tests.unit._resources_helpers import RTX3060, RTX4090, FakeClock


def _nvml_available() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_nvml_available(), reason="this machine has NVML; tested on GPU hosts")
def test_no_nvml_means_zero_gpus_with_the_nvml_error() -> None:
    snapshot = NvmlProbe().read()
    assert snapshot.gpus == []
    assert snapshot.error is not None and snapshot.error.startswith("NVML: ")


@pytest.mark.skipif(not _nvml_available(), reason="needs an NVIDIA driver")
def test_nvml_readings_are_consistent() -> None:
    snapshot = NvmlProbe().read()
    assert snapshot.gpus, snapshot.error
    for gpu in snapshot.gpus:
        assert gpu.source == "nvml"
        assert gpu.used_mb + gpu.free_mb <= gpu.total_mb + 1


@pytest.mark.parametrize(
    ("path", "name", "total"),
    [(RTX4090, "NVIDIA GeForce RTX 4090", 24564), (RTX3060, "NVIDIA GeForce RTX 3060", 12288)],
)
def test_recorded_probe_replays_samples_then_holds_the_last(path, name, total) -> None:
    probe = RecordedProbe.from_file(path)
    samples = [probe.read() for _ in range(5)]
    assert [s.gpus[0].name for s in samples] == [name] * 5
    assert {s.gpus[0].total_mb for s in samples} == {total}
    assert samples[0].gpus[0].used_mb < samples[1].gpus[0].used_mb
    assert samples[3] == samples[4] == samples[2]
    assert all(s.gpus[0].source == "recorded" for s in samples)


def test_recorded_probe_needs_a_sample() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        RecordedProbe([])


def test_declared_table_is_marked_declared_and_reads_empty() -> None:
    probe = DeclaredProbe("pc2", [DeclaredGpu(index=1, name="RTX 3060", total_mb=12288)])
    (gpu,) = probe.read().gpus
    assert (gpu.source, gpu.uuid, gpu.index, gpu.used_mb, gpu.free_mb) == (
        "declared",
        "declared-pc2-1",
        1,
        0,
        12288,
    )


class _NoDevices:
    def read(self) -> GpuSnapshot:
        return GpuSnapshot(error="NVML: NVML Shared Library Not Found")


def test_host_probe_falls_back_to_the_declared_table_and_keeps_the_nvml_error() -> None:
    declared = DeclaredProbe("pc2", [DeclaredGpu(index=0, name="RTX 3060", total_mb=12288)])
    clock = FakeClock(123.0)
    reading = HostProbe("pc2", _NoDevices(), declared=declared, clock=clock).read()
    assert reading.host == "pc2" and reading.taken_at == 123.0
    assert [g.source for g in reading.gpus] == ["declared"]
    assert reading.gpu_error == "NVML: NVML Shared Library Not Found"
    assert 0 <= reading.memory_percent <= 100 and reading.memory_available_mb > 0


def test_host_probe_without_declared_table_reports_zero_gpus() -> None:
    reading = HostProbe("mainpc", _NoDevices()).read()
    assert reading.gpus == [] and reading.gpu_error is not None


def test_host_probe_prefers_real_readings_over_the_declared_table() -> None:
    declared = DeclaredProbe("mainpc", [DeclaredGpu(index=0, name="x", total_mb=1000)])
    reading = HostProbe("mainpc", RecordedProbe.from_file(RTX4090), declared=declared).read()
    assert [g.source for g in reading.gpus] == ["recorded"]
