"""The real NVML probe code run against the NVML double: a 4090 host and a 3060 host, the
``NotSupported`` answers of consumer cards, per-process memory, a device that disappears."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pynvml
import pytest

from actors.probe import nvml as nvml_module
from actors.probe.counters import gpu_power_watts, read_counters
from actors.probe.gpu import DeclaredProbe, HostProbe, NvmlProbe
from actors.probe.models import GpuProcess
from actors.probe.nvml import NVML_DOUBLE_ENV, bind_host, nvml
from actors.probe.nvml_double import NvmlDouble, device_count
from actors.probe.system import gpu_temperatures, read_system
from cluster.base.errors import ConfigError
from cluster.base.settings import DeclaredGpu, ResourceSettings, load_settings
from cluster.ops._ray_node import ray_env

TABLE = Path(__file__).resolve().parent.parent / "fixtures" / "nvml" / "double_hosts.json"


def _device(uuid: str, **fields: Any) -> dict[str, Any]:
    device = {"uuid": uuid, "name": "NVIDIA GeForce RTX 3060", "total_mb": 12288, "used_mb": 500}
    return device | fields


def _write(path: Path, hosts: dict[str, list[dict[str, Any]]]) -> Path:
    path.write_text(json.dumps({"hosts": {h: {"devices": d} for h, d in hosts.items()}}))
    return path


@pytest.fixture
def use_double(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Select the double for this process (as Settings ``resources.nvml_double`` does)."""

    def select(table: Path, host: str) -> None:
        monkeypatch.setenv(NVML_DOUBLE_ENV, str(table))
        monkeypatch.setattr(nvml_module, "_doubles", {})
        bind_host(host)

    monkeypatch.setattr(nvml_module, "_host", None)
    return select


def test_without_the_setting_the_real_pynvml_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NVML_DOUBLE_ENV, raising=False)
    assert nvml() is pynvml


def test_the_4090_host_reads_through_the_real_probe(use_double: Any) -> None:
    use_double(TABLE, "mainpc")
    probe = NvmlProbe()
    snapshot = probe.read()
    assert snapshot.error is None
    (gpu,) = snapshot.gpus
    assert (gpu.index, gpu.uuid, gpu.name, gpu.source) == (
        0,
        "GPU-nvml-double-mainpc-4090-0",
        "NVIDIA GeForce RTX 4090 (nvml-double)",
        "nvml-double",
    )
    assert (gpu.total_mb, gpu.used_mb, gpu.free_mb, gpu.utilization_percent) == (
        24564,
        1830,
        22734,
        4,
    )
    assert gpu.processes == [GpuProcess(pid=1422, used_mb=412), GpuProcess(pid=20311, used_mb=1396)]
    assert gpu_temperatures() == {gpu.uuid: 41}
    assert gpu_power_watts() == {gpu.uuid: 38.5}
    assert probe.read() == snapshot  # still initialised after the per-device readers shut down
    probe.close()


def test_the_3060_host_answers_not_supported_for_power(use_double: Any, tmp_path: Path) -> None:
    use_double(TABLE, "pc2")
    (gpu,) = NvmlProbe().read().gpus
    assert (gpu.name, gpu.total_mb, gpu.used_mb, gpu.source) == (
        "NVIDIA GeForce RTX 3060 (nvml-double)",
        12288,
        310,
        "nvml-double",
    )
    assert gpu.processes == [GpuProcess(pid=2210, used_mb=None)]  # no per-process figure
    assert gpu_power_watts() == {}  # NotSupported: left out, never an invented figure
    system = read_system("pc2", "127.0.0.1", tmp_path)
    assert system.gpu_temperatures_c == {gpu.uuid: 36}
    assert read_counters("pc2").gpu_power_watts == {}


def test_not_supported_readings_become_none_or_are_left_out(
    use_double: Any, tmp_path: Path
) -> None:
    answers = ["utilization", "temperature", "power", "processes"]
    use_double(_write(tmp_path / "t.json", {"pc2": [_device("a", not_supported=answers)]}), "pc2")
    (gpu,) = NvmlProbe().read().gpus
    assert (gpu.utilization_percent, gpu.processes) == (None, [])
    assert gpu_temperatures() == {} and gpu_power_watts() == {}


def test_a_device_that_disappears_is_no_longer_reported(use_double: Any, tmp_path: Path) -> None:
    table = _write(tmp_path / "t.json", {"pc2": [_device("a"), _device("b", used_mb=900)]})
    use_double(table, "pc2")
    probe = NvmlProbe()
    assert [g.uuid for g in probe.read().gpus] == ["a", "b"]
    _write(table, {"pc2": [_device("a"), _device("b", used_mb=900, lost=True)]})
    assert [g.uuid for g in probe.read().gpus] == ["a"]  # fallen off the bus: left out
    assert gpu_temperatures() == {"a": 40}
    _write(table, {"pc2": [_device("a", lost=True)]})
    gone = probe.read()
    assert gone.gpus == [] and gone.error == "NVML: device 0: GPU is lost"
    _write(table, {"pc2": []})
    assert probe.read().error == "NVML sees no devices"
    _write(table, {"pc2": [_device("c", used_mb=1000)]})
    (back,) = probe.read().gpus
    assert (back.uuid, back.used_mb) == ("c", 1000)


def test_a_host_missing_from_the_table_has_no_driver(use_double: Any) -> None:
    use_double(TABLE, "laptop")
    snapshot = NvmlProbe().read()
    assert snapshot.gpus == [] and snapshot.error == "NVML: Driver Not Loaded"
    assert gpu_temperatures() == {} and gpu_power_watts() == {}
    declared = DeclaredProbe("laptop", [DeclaredGpu(index=0, name="RTX 3060", total_mb=12288)])
    reading = HostProbe("laptop", NvmlProbe(), declared=declared).read()
    assert [g.source for g in reading.gpus] == ["declared"]
    assert reading.gpu_error == "NVML: Driver Not Loaded"


def test_the_host_probe_prefers_the_double_to_the_declared_table(use_double: Any) -> None:
    use_double(TABLE, "pc2")
    declared = DeclaredProbe("pc2", [DeclaredGpu(index=0, name="declared", total_mb=8192)])
    reading = HostProbe("pc2", NvmlProbe(), declared=declared).read()
    assert [(g.source, g.total_mb) for g in reading.gpus] == [("nvml-double", 12288)]


def test_the_double_keeps_nvml_call_rules(tmp_path: Path) -> None:
    double = NvmlDouble(_write(tmp_path / "t.json", {"pc2": [_device("a")]}), host="pc2")
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        double.nvmlDeviceGetCount()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        double.nvmlShutdown()
    double.nvmlInit()
    double.nvmlInit()
    double.nvmlShutdown()
    assert double.nvmlDeviceGetCount() == 1  # init is counted, as in NVML
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        double.nvmlDeviceGetHandleByIndex(1)
    handle = double.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        double.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU_MAX)
    assert double.nvmlDeviceGetPowerUsage(handle) == 20000  # milliwatts
    double.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        NvmlDouble(tmp_path / "missing.json", host="pc2").nvmlInit()
    only = NvmlDouble(tmp_path / "t.json")  # no host named: the table's only host
    only.nvmlInit()
    assert only.nvmlDeviceGetCount() == 1


def test_device_count_sums_the_hosts_of_a_node() -> None:
    assert device_count(TABLE, ["mainpc", "pc2"]) == 2
    assert device_count(TABLE, ["pc2"]) == 1
    assert device_count(TABLE, ["laptop"]) == 0
    with pytest.raises(ConfigError, match="resources.nvml_double: cannot read"):
        device_count(TABLE.with_name("missing.json"), ["pc2"])


def test_the_setting_reaches_the_nodes_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(NVML_DOUBLE_ENV, raising=False)
    settings = load_settings(data_dir=tmp_path, resources={"nvml_double": str(TABLE)})
    assert ray_env(settings, "token")[NVML_DOUBLE_ENV] == str(TABLE)
    monkeypatch.setenv(NVML_DOUBLE_ENV, str(TABLE))  # Settings decide, not a stray variable
    plain = load_settings(data_dir=tmp_path, resources=ResourceSettings())
    assert NVML_DOUBLE_ENV not in ray_env(plain, "token")
