"""A model worker that holds VRAM on its leased GPU: the worker ``make gpu-check`` starts.

:class:`VramWorker` is the one worker class allowed out of the box
(``resources.workers.classes``). It allocates through the CUDA driver API (``libcuda`` via
ctypes, no framework needed) on the device ``CUDA_VISIBLE_DEVICES`` names, so NVML shows its
process holding what it allocated. Where the NVML test double answers for the hardware
(``resources.nvml_double``) nothing can be allocated: :meth:`VramWorker.hold` then only checks
the double's free memory of the device and raises the out-of-memory error CUDA would when the
request does not fit, and otherwise reports that nothing was allocated (``simulated``); the
memory a test wants NVML to show is written into the double's table by the test.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from actors.probe.nvml import double_table, nvml

__all__ = ["CudaMemory", "GpuOutOfMemory", "VramWorker"]

_MIB = 1024 * 1024
_CUDA_ERROR_OUT_OF_MEMORY = 2


class GpuOutOfMemory(RuntimeError):
    """CUDA out of memory (the resource service restarts such a worker once elsewhere)."""


class CudaMemory:
    """Just enough of the CUDA driver API (libcuda, via ctypes) to hold VRAM in this process.

    Raises:
        OSError: (constructor) no ``libcuda.so.1``: no NVIDIA driver here.
        RuntimeError: a CUDA call failed (:class:`GpuOutOfMemory` for out of memory).
    """

    def __init__(self) -> None:
        self._lib = ctypes.CDLL("libcuda.so.1")
        self._device = ctypes.c_int()
        self._ptrs: list[ctypes.c_uint64] = []
        self._call("cuInit", 0)
        self._call("cuDeviceGet", ctypes.byref(self._device), 0)
        self._ctx = ctypes.c_void_p()
        self._call("cuDevicePrimaryCtxRetain", ctypes.byref(self._ctx), self._device)
        self._call("cuCtxSetCurrent", self._ctx)

    def _call(self, name: str, *args: Any) -> None:
        code = getattr(self._lib, name)(*args)
        if code == _CUDA_ERROR_OUT_OF_MEMORY:
            raise GpuOutOfMemory(f"CUDA out of memory in {name}")
        if code != 0:
            raise RuntimeError(f"{name} failed with CUDA error {code}")

    def allocate(self, mb: int) -> None:
        ptr = ctypes.c_uint64()
        self._call("cuMemAlloc_v2", ctypes.byref(ptr), ctypes.c_size_t(mb * _MIB))
        self._ptrs.append(ptr)

    def free(self) -> None:
        for ptr in self._ptrs:
            self._lib.cuMemFree_v2(ptr)
        self._ptrs.clear()

    def close(self) -> None:
        self.free()
        self._lib.cuDevicePrimaryCtxRelease_v2(self._device)


class VramWorker:
    """Holds VRAM on the leased GPU until freed or stopped.

    Methods callable over ``POST /resources/workers/{id}/call``: ``report``, ``hold``, ``free``.
    """

    def __init__(self) -> None:
        self._cuda: CudaMemory | None = None
        self._held_mb = 0

    def report(self) -> dict[str, object]:
        """This process, its device, what Ray assigned it and what it holds."""
        import ray

        context = ray.get_runtime_context()
        return {
            "pid": os.getpid(),
            "assigned_resources": context.get_assigned_resources(),  # type: ignore[no-untyped-call]
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "held_mb": self._held_mb,
            "simulated": double_table() is not None,
        }

    def hold(self, mb: int) -> dict[str, object]:
        """Allocate ``mb`` MiB more on the visible GPU.

        Raises:
            GpuOutOfMemory: the device has not that much free.
            OSError: no NVIDIA driver here (and no NVML double).
        """
        if not 0 < mb <= 1_048_576:
            raise ValueError(f"mb must be 1..1048576, not {mb}")
        if double_table() is not None:
            self._check_double_fits(mb)
            return {**self.report(), "allocated_mb": 0}
        if self._cuda is None:
            self._cuda = CudaMemory()
        self._cuda.allocate(mb)
        self._held_mb += mb
        return {**self.report(), "allocated_mb": mb}

    def free(self) -> dict[str, object]:
        if self._cuda is not None:
            self._cuda.free()
        self._held_mb = 0
        return self.report()

    @staticmethod
    def _check_double_fits(mb: int) -> None:
        lib = nvml()
        lib.nvmlInit()
        try:
            index = int((os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0])
            free = int(lib.nvmlDeviceGetMemoryInfo(lib.nvmlDeviceGetHandleByIndex(index)).free)
        finally:
            lib.nvmlShutdown()
        if mb * _MIB > free:
            raise GpuOutOfMemory(
                f"CUDA out of memory: tried to allocate {mb} MiB, {free // _MIB} MiB free "
                "(NVML double)"
            )
