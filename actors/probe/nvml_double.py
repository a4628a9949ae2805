"""The NVML test double: the ``pynvml`` calls the probes make, answered from a device table.

Selected by Settings ``resources.nvml_double`` (env ``AISYS_RESOURCES__NVML_DOUBLE``: the path
of a JSON table) through :func:`actors.probe.nvml.nvml`, so :class:`~actors.probe.gpu.NvmlProbe`
and the temperature and power readers run their real code against it. Every device it reports
is labelled ``source="nvml-double"`` by :class:`~actors.probe.gpu.NvmlProbe`, never ``nvml``,
and its name ends in ``(nvml-double)``.

The table, keyed by host tag (a host not in it has no driver: ``nvmlInit`` fails)::

    {"hosts": {"pc2": {"devices": [
        {"uuid": "GPU-nvml-double-pc2-0", "name": "NVIDIA GeForce RTX 3060",
         "total_mb": 12288, "used_mb": 310, "utilization_percent": 0,
         "temperature_c": 38, "power_w": 17.5,
         "processes": [{"pid": 8812, "used_mb": 4096}],
         "not_supported": ["utilization", "power"], "lost": false}]}}}

``not_supported`` names readings answered with ``NVMLError_NotSupported`` (``utilization``,
``temperature``, ``power``, ``processes``), as consumer cards answer some; a process whose
``used_mb`` is null reads ``usedGpuMemory=None``, as NVML reports it where the driver cannot
tell. A device marked ``lost`` answers ``NVMLError_GpuIsLost`` (fallen off the bus) but still
counts, as with real NVML; a device removed from the file is no longer counted and its old
handles answer ``GpuIsLost``. The file is read again whenever it changes on disk, so a test
changes readings or makes a device disappear by rewriting it. Errors are ``pynvml``'s own
exception classes, so code catching ``pynvml.NVMLError`` catches them.

Example::

    nvml = NvmlDouble(Path("tests/fixtures/nvml/double_hosts.json"), host="pc2")
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    nvml.nvmlDeviceGetName(handle)   # "NVIDIA GeForce RTX 3060"
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import pynvml
from pydantic import BaseModel, ConfigDict, Field

from cluster.base.errors import ConfigError

__all__ = [
    "NAME_MARK",
    "DoubleDevice",
    "DoubleHost",
    "DoubleProcess",
    "DoubleTable",
    "NvmlDouble",
    "device_count",
]

_MIB = 1024 * 1024

#: Appended to every device name the double reports, so no surface shows it as real hardware.
NAME_MARK: Final = "(nvml-double)"

Reading = Literal["utilization", "temperature", "power", "processes"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DoubleProcess(_Model):
    """A process holding memory on a simulated device; ``used_mb`` None: the driver cannot tell."""

    pid: int = Field(ge=0)
    used_mb: int | None = Field(default=None, ge=0)


class DoubleDevice(_Model):
    """One simulated device. Memory in MiB; ``free`` is ``total_mb - used_mb``."""

    uuid: str
    name: str
    total_mb: int = Field(gt=0)
    used_mb: int = Field(ge=0)
    utilization_percent: int = Field(default=0, ge=0, le=100)
    memory_utilization_percent: int = Field(default=0, ge=0, le=100)
    temperature_c: int = 40
    power_w: float = Field(default=20.0, ge=0)
    processes: list[DoubleProcess] = Field(default_factory=list)
    not_supported: list[Reading] = Field(default_factory=list)
    lost: bool = False


class DoubleHost(_Model):
    devices: list[DoubleDevice] = Field(default_factory=list)


class DoubleTable(_Model):
    """The whole device table: host tag -> its devices."""

    description: str = ""
    hosts: dict[str, DoubleHost] = Field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> DoubleTable:
        return cls.model_validate(json.loads(path.read_text()))


def device_count(path: Path, tags: Sequence[str]) -> int:
    """Devices the table gives the hosts ``tags`` together (one Ray node may carry several).

    Raises:
        ConfigError: the table cannot be read; the message names the setting.
    """
    try:
        table = DoubleTable.read(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"resources.nvml_double: cannot read the NVML double's table {path}: {exc}"
        ) from exc
    return sum(len(table.hosts[tag].devices) for tag in tags if tag in table.hosts)


@dataclass(frozen=True)
class _Handle:
    uuid: str


@dataclass(frozen=True)
class _Memory:
    total: int
    free: int
    used: int


@dataclass(frozen=True)
class _Utilization:
    gpu: int
    memory: int


@dataclass(frozen=True)
class _Process:
    pid: int
    usedGpuMemory: int | None  # noqa: N815 (pynvml's field name)


def _error(code: int) -> pynvml.NVMLError:
    error: pynvml.NVMLError = pynvml.NVMLError(code)  # pynvml maps the code to its subclass
    return error


class NvmlDouble:
    """The ``pynvml`` surface the probes use, for host ``host`` of the table at ``path``.

    ``host`` None means the table's only host. Like NVML, ``nvmlInit`` is counted: each needs
    its ``nvmlShutdown``, and device calls fail with ``Uninitialized`` outside them.
    """

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_GpuIsLost = pynvml.NVMLError_GpuIsLost
    NVMLError_Uninitialized = pynvml.NVMLError_Uninitialized
    NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def __init__(self, path: Path, host: str | None = None) -> None:
        self.path = path
        self.host = host
        self._lock = threading.Lock()
        self._inits = 0
        self._text = b""
        self._table = DoubleTable()

    # -- the table ----------------------------------------------------------------------------

    def _devices(self) -> list[DoubleDevice]:
        with self._lock:
            if self._inits == 0:
                raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
            try:
                text = self.path.read_bytes()  # small; read on every call, so edits show at once
            except OSError as exc:
                raise _error(pynvml.NVML_ERROR_DRIVER_NOT_LOADED) from exc
            if text != self._text:
                try:
                    self._table = DoubleTable.model_validate(json.loads(text))
                except ValueError as exc:  # half written, or not a table: an NVML failure
                    raise _error(pynvml.NVML_ERROR_UNKNOWN) from exc
                self._text = text
            host = self._host_entry()
            if host is None:
                raise _error(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
            return list(host.devices)

    def _host_entry(self) -> DoubleHost | None:
        if self.host is None:
            only = list(self._table.hosts.values())
            return only[0] if len(only) == 1 else None
        return self._table.hosts.get(self.host)

    def _device(self, handle: _Handle) -> DoubleDevice:
        for device in self._devices():
            if device.uuid == handle.uuid and not device.lost:
                return device
        raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)

    def _supported(self, handle: _Handle, reading: Reading) -> DoubleDevice:
        device = self._device(handle)
        if reading in device.not_supported:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return device

    # -- pynvml ---------------------------------------------------------------------------------

    def nvmlInit(self) -> None:  # noqa: N802 (pynvml's names)
        with self._lock:
            self._inits += 1
        try:
            self._devices()  # no file or no entry for this host: no driver, as NVML says
        except pynvml.NVMLError:
            with self._lock:
                self._inits -= 1
            raise

    def nvmlShutdown(self) -> None:  # noqa: N802
        with self._lock:
            if self._inits == 0:
                raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
            self._inits -= 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self._devices())

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:  # noqa: N802
        devices = self._devices()
        if not 0 <= index < len(devices):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if devices[index].lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return _Handle(devices[index].uuid)

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:  # noqa: N802
        return self._device(handle).uuid

    def nvmlDeviceGetName(self, handle: _Handle) -> str:  # noqa: N802
        return f"{self._device(handle).name} {NAME_MARK}"  # shown wherever the name is

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle) -> _Memory:  # noqa: N802
        device = self._device(handle)
        return _Memory(
            total=device.total_mb * _MIB,
            free=(device.total_mb - device.used_mb) * _MIB,
            used=device.used_mb * _MIB,
        )

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> _Utilization:  # noqa: N802
        device = self._supported(handle, "utilization")
        return _Utilization(
            gpu=device.utilization_percent, memory=device.memory_utilization_percent
        )

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[_Process]:  # noqa: N802
        device = self._supported(handle, "processes")
        return [
            _Process(p.pid, None if p.used_mb is None else p.used_mb * _MIB)
            for p in device.processes
        ]

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:  # noqa: N802
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._supported(handle, "temperature").temperature_c

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:  # noqa: N802
        return round(self._supported(handle, "power").power_w * 1000)  # milliwatts, as NVML

    def __repr__(self) -> str:
        return f"NvmlDouble({str(self.path)!r}, host={self.host!r})"
