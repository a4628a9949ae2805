"""GPU probes behind one small interface: NVML on real hardware, recorded and declared tables.

NVML calls go through :func:`actors.probe.nvml.nvml`: the driver's ``pynvml``, or the NVML test
double where Settings ``resources.nvml_double`` selects it (devices then read
``source="nvml-double"``). No NVML (no driver, no library, no device) means zero GPUs, reported
with the NVML error; a probe never invents a device. A host NVML cannot see may have a table
declared in Settings, whose devices are marked ``source="declared"``.

Example::

    probe = HostProbe("pc2", NvmlProbe(), declared=DeclaredProbe("pc2", settings_table))
    reading = probe.read()   # HostReading(gpus=[...], cpu_percent=..., ...)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import psutil

from actors.probe.models import GpuProcess, GpuReading, GpuSnapshot, HostReading
from actors.probe.nvml import nvml
from actors.probe.nvml_double import NvmlDouble
from cluster.base.settings import DeclaredGpu

__all__ = [
    "nvml_per_device",
    "DeclaredProbe",
    "GpuProbe",
    "HostProbe",
    "NvmlProbe",
    "RecordedProbe",
]

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024


class GpuProbe(Protocol):
    """Anything that can read the GPUs of one host."""

    def read(self) -> GpuSnapshot:
        """Return the devices visible now (none, with ``error`` set, if NVML is missing)."""
        ...


def nvml_per_device(read: Callable[[Any], float], what: str) -> dict[str, float]:
    """``read(handle)`` of every NVML device by uuid; empty when NVML is unavailable.

    ``read`` calls :func:`~actors.probe.nvml.nvml`'s functions. A device that does not support
    the reading, or is lost (fallen off the bus), is left out; any other NVML error is logged and
    gives an empty result (never an invented figure).
    """
    lib = nvml()
    try:
        lib.nvmlInit()
    except lib.NVMLError:
        return {}
    try:
        values: dict[str, float] = {}
        for index in range(lib.nvmlDeviceGetCount()):
            try:
                handle = lib.nvmlDeviceGetHandleByIndex(index)
                values[_text(lib.nvmlDeviceGetUUID(handle))] = read(handle)
            except (lib.NVMLError_NotSupported, lib.NVMLError_GpuIsLost):
                continue
        return values
    except lib.NVMLError as exc:
        logger.warning("NVML %s read failed: %s", what, exc)
        return {}
    finally:
        lib.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NvmlProbe:
    """Reads every device through ``nvidia-ml-py`` (or the NVML double Settings select).

    NVML is initialised on the first read and again after a failure, so a driver that appears
    later is picked up; an ``NVMLError`` from init means zero devices, as in Ray's
    ``NvidiaGPUAcceleratorManager``. A device that is lost (``GpuIsLost``: fallen off the bus)
    is left out of the reading and logged; the others are still reported.

    Args:
        library: the ``pynvml``-like object to read through; None (the default) means
            :func:`~actors.probe.nvml.nvml`, the one the Settings select. ``make gpu-check``
            passes ``pynvml`` itself: it reads the driver, never the double.
    """

    def __init__(self, library: Any = None) -> None:
        self._library = library
        self._nvml: Any = None

    def read(self) -> GpuSnapshot:
        lost: list[str] = []
        if self._nvml is not None:
            lib = self._nvml
        else:
            lib = self._library if self._library is not None else nvml()
        try:
            if self._nvml is None:
                lib.nvmlInit()
                self._nvml = lib
            gpus: list[GpuReading] = []
            for index in range(lib.nvmlDeviceGetCount()):
                try:
                    gpus.append(self._device(lib, index))
                except lib.NVMLError_GpuIsLost as exc:
                    logger.warning("NVML device %d left out: %s", index, exc)
                    lost.append(f"device {index}: {exc}")
        except lib.NVMLError as exc:
            self.close()
            return GpuSnapshot(error=f"NVML: {exc}")
        if not gpus:
            return GpuSnapshot(error=f"NVML: {'; '.join(lost)}" if lost else "NVML sees no devices")
        return GpuSnapshot(gpus=gpus)

    def close(self) -> None:
        lib, self._nvml = self._nvml, None
        if lib is not None:
            try:
                lib.nvmlShutdown()
            except lib.NVMLError as exc:
                logger.warning("nvmlShutdown failed: %s", exc)

    @staticmethod
    def _device(lib: Any, index: int) -> GpuReading:
        handle = lib.nvmlDeviceGetHandleByIndex(index)
        memory = lib.nvmlDeviceGetMemoryInfo(handle)
        try:
            utilization: int | None = int(lib.nvmlDeviceGetUtilizationRates(handle).gpu)
        except lib.NVMLError_NotSupported:
            utilization = None
        try:
            running = lib.nvmlDeviceGetComputeRunningProcesses(handle)
        except lib.NVMLError_NotSupported:
            running = []
        processes = [
            GpuProcess(
                pid=int(proc.pid),
                used_mb=None if proc.usedGpuMemory is None else int(proc.usedGpuMemory) // _MIB,
            )
            for proc in running
        ]
        return GpuReading(
            index=index,
            uuid=_text(lib.nvmlDeviceGetUUID(handle)),
            name=_text(lib.nvmlDeviceGetName(handle)),
            total_mb=int(memory.total) // _MIB,
            used_mb=int(memory.used) // _MIB,
            free_mb=int(memory.free) // _MIB,
            utilization_percent=utilization,
            processes=processes,
            source="nvml-double" if isinstance(lib, NvmlDouble) else "nvml",
        )


class RecordedProbe:
    """Replays recorded readings (a JSON fixture), one sample per read, then holds the last.

    The fixture is ``{"host": ..., "samples": [{"gpus": [GpuReading fields but source]}]}``.
    """

    def __init__(self, samples: Sequence[GpuSnapshot]) -> None:
        if not samples:
            raise ValueError("a recorded probe needs at least one sample")
        self._samples = list(samples)
        self._next = 0

    @classmethod
    def from_file(cls, path: Path) -> RecordedProbe:
        data: dict[str, Any] = json.loads(path.read_text())
        samples = [
            GpuSnapshot(gpus=[GpuReading(**gpu, source="recorded") for gpu in sample["gpus"]])
            for sample in data["samples"]
        ]
        return cls(samples)

    def read(self) -> GpuSnapshot:
        sample = self._samples[min(self._next, len(self._samples) - 1)]
        self._next += 1
        return sample


class DeclaredProbe:
    """The static table of Settings ``resources.declared_gpus`` for one host.

    Nothing measures these devices, so they read as empty (``used_mb=0``); the lease ledger is
    then the only accounting of their memory.
    """

    def __init__(self, tag: str, table: Sequence[DeclaredGpu]) -> None:
        self._gpus = [
            GpuReading(
                index=gpu.index,
                uuid=gpu.uuid or f"declared-{tag}-{gpu.index}",
                name=gpu.name,
                total_mb=gpu.total_mb,
                used_mb=0,
                free_mb=gpu.total_mb,
                source="declared",
            )
            for gpu in table
        ]

    def read(self) -> GpuSnapshot:
        return GpuSnapshot(gpus=self._gpus)


class HostProbe:
    """One host's reading: GPUs from ``gpu`` (else ``declared``), CPU and memory from psutil.

    Args:
        tag: the host tag the reading is labelled with.
        gpu: the hardware probe.
        declared: used only when ``gpu`` sees no device.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        tag: str,
        gpu: GpuProbe,
        declared: GpuProbe | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tag = tag
        self._gpu = gpu
        self._declared = declared
        self._clock = clock
        psutil.cpu_percent(interval=None)  # primes the counter; the first value is meaningless

    def read(self) -> HostReading:
        snapshot = self._gpu.read()
        if not snapshot.gpus and self._declared is not None:
            snapshot = GpuSnapshot(gpus=self._declared.read().gpus, error=snapshot.error)
        memory = psutil.virtual_memory()
        return HostReading(
            host=self._tag,
            taken_at=self._clock(),
            gpus=snapshot.gpus,
            gpu_error=snapshot.error,
            cpu_percent=psutil.cpu_percent(interval=None),
            memory_percent=memory.percent,
            memory_available_mb=memory.available // _MIB,
        )
