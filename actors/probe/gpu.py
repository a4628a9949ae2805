"""GPU probes behind one small interface: NVML on real hardware, recorded and declared tables.

No NVML (no driver, no library, no device) means zero GPUs, reported with the NVML error; a
probe never invents a device. A host NVML cannot see may have a table declared in Settings,
whose devices are marked ``source="declared"``.

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
import pynvml

from actors.probe.models import GpuProcess, GpuReading, GpuSnapshot, HostReading
from cluster.settings import DeclaredGpu

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

    A device that does not support the reading is left out; any other NVML error is logged and
    gives an empty result (never an invented figure).
    """
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return {}
    try:
        values: dict[str, float] = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            try:
                values[_text(pynvml.nvmlDeviceGetUUID(handle))] = read(handle)
            except pynvml.NVMLError_NotSupported:
                continue
        return values
    except pynvml.NVMLError as exc:
        logger.warning("NVML %s read failed: %s", what, exc)
        return {}
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NvmlProbe:
    """Reads every device through ``nvidia-ml-py``.

    NVML is initialised on the first read and again after a failure, so a driver that appears
    later is picked up; an ``NVMLError`` from init means zero devices, as in Ray's
    ``NvidiaGPUAcceleratorManager``.
    """

    def __init__(self) -> None:
        self._initialised = False

    def read(self) -> GpuSnapshot:
        try:
            if not self._initialised:
                pynvml.nvmlInit()
                self._initialised = True
            count = pynvml.nvmlDeviceGetCount()
            gpus = [self._device(index) for index in range(count)]
        except pynvml.NVMLError as exc:
            self.close()
            return GpuSnapshot(error=f"NVML: {exc}")
        if not gpus:
            return GpuSnapshot(error="NVML sees no devices")
        return GpuSnapshot(gpus=gpus)

    def close(self) -> None:
        if self._initialised:
            self._initialised = False
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError as exc:
                logger.warning("nvmlShutdown failed: %s", exc)

    @staticmethod
    def _device(index: int) -> GpuReading:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        try:
            utilization: int | None = int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except pynvml.NVMLError_NotSupported:
            utilization = None
        processes = [
            GpuProcess(
                pid=int(proc.pid),
                used_mb=None if proc.usedGpuMemory is None else int(proc.usedGpuMemory) // _MIB,
            )
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        ]
        return GpuReading(
            index=index,
            uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
            name=_text(pynvml.nvmlDeviceGetName(handle)),
            total_mb=int(memory.total) // _MIB,
            used_mb=int(memory.used) // _MIB,
            free_mb=int(memory.free) // _MIB,
            utilization_percent=utilization,
            processes=processes,
            source="nvml",
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
