"""``make gpu-check``: what NVML reports on this machine, and a leased Ray task on a real GPU.

With an NVIDIA driver it prints every device NVML reports (through the project's
:class:`~actors.probe.gpu.NvmlProbe`), starts a private local Ray node advertising those GPUs,
grants a VRAM lease through the ResourceScheduler's own ledger
(:class:`~actors.resources.scheduler.LeaseScheduler`, fed by that reading), places a Ray task
under the lease with its ``num_gpus`` share (:func:`~actors.resources.tasks.place_task`, as
``POST /resources/tasks`` does), and prints the task's ``CUDA_VISIBLE_DEVICES``, Ray's GPU ids
and the VRAM NVML measured for the task's process once it allocated the leased amount through
the CUDA driver API. Then it starts one model worker
(:class:`~deployments.resources.vram_worker.VramWorker`, through the same
:class:`~actors.resources.workers.WorkerPool` as ``POST /resources/workers``) under a lease
of its own, has it hold the same amount and prints the VRAM NVML measures for the worker's
process. Without a driver it says so and exits 0. It always reads the real driver:
the NVML double (``resources.nvml_double``) is ignored here. Nothing is invented: a figure NVML
does not give is printed as missing, with the reason.

Example::

    .venv/bin/python -m cluster.ops.gpu_check --vram-mb 256
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import pynvml

from actors.probe.gpu import NvmlProbe
from actors.probe.models import GpuReading, HostReading
from actors.probe.nvml import NVML_DOUBLE_ENV
from deployments.resources.vram_worker import CudaMemory

__all__ = ["hold_vram", "main"]

_MIB = 1024 * 1024
#: The host tag of the private node this check starts.
TAG = "gpu-check"


def _describe(gpu: GpuReading) -> str:
    util = "n/a" if gpu.utilization_percent is None else f"{gpu.utilization_percent} %"
    procs = ", ".join(
        f"pid {p.pid}: {'n/a' if p.used_mb is None else f'{p.used_mb} MiB'}" for p in gpu.processes
    )
    return (
        f"  GPU {gpu.index} {gpu.name} ({gpu.uuid}): {gpu.total_mb} MiB total, "
        f"{gpu.used_mb} used, {gpu.free_mb} free, utilization {util}; "
        f"processes: {procs or 'none'}"
    )


def _nvml_used_mb(index: int, pid: int) -> tuple[int | None, str]:
    """What NVML reports for ``pid`` on device ``index`` (None and why, if nothing)."""
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        deadline = time.monotonic() + 5.0
        while True:
            procs = {
                p.pid: p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            }
            if pid in procs or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if pid not in procs:
            return None, f"NVML lists no process {pid} on GPU {index} (pids seen: {sorted(procs)})"
        used = procs[pid]
        if used is None:
            return None, "NVML lists the process but cannot tell its memory (NotAvailable)"
        return int(used) // _MIB, "NVML's figure for the process, its CUDA context included"
    finally:
        pynvml.nvmlShutdown()


def hold_vram(mb: int) -> dict[str, Any]:
    """Run as the leased Ray task: allocate ``mb`` MiB on the visible GPU and report what
    NVML measures for this process, with the environment Ray and the lease gave it."""
    import ray

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    context = ray.get_runtime_context()
    report: dict[str, Any] = {
        "pid": os.getpid(),
        "cuda_visible_devices": visible,
        "ray_gpu_ids": [str(i) for i in ray.get_gpu_ids()],
        "assigned_resources": context.get_assigned_resources(),  # type: ignore[no-untyped-call]
    }
    try:
        cuda = CudaMemory()
    except (OSError, RuntimeError) as exc:
        report["error"] = f"CUDA driver API unavailable: {exc}"
        return report
    try:
        cuda.allocate(mb)
        report["allocated_mb"] = mb
        index = int((visible or "0").split(",")[0])
        report["nvml_used_mb"], report["nvml_note"] = _nvml_used_mb(index, os.getpid())
    except (RuntimeError, pynvml.NVMLError, ValueError) as exc:
        report["error"] = str(exc)
    finally:
        cuda.close()
    return report


async def _worker_check(scheduler: Any, work: Path, vram_mb: int, out: TextIO) -> bool:
    """Start one model worker (:class:`VramWorker`) under a lease, as ``POST
    /resources/workers`` does, have it hold ``vram_mb`` and print what NVML measures for it."""
    from actors.resources.worker_models import WorkerCall, WorkerRequest
    from actors.resources.worker_store import WorkerStore
    from actors.resources.workers import WorkerPool
    from cluster.base.settings import WorkerSettings

    pool = WorkerPool(WorkerSettings(), scheduler, WorkerStore(work / "leases.sqlite3"))
    worker = await pool.start(
        WorkerRequest(
            cls="deployments.resources.vram_worker:VramWorker",
            vram_mb=vram_mb,
            host=TAG,
            max_wait_s=0,
        )
    )
    try:
        if worker.state != "ready" or worker.pid is None:
            out.write(f"worker: not started: {worker.state}: {worker.error}\n")
            return False
        out.write(
            f"worker {worker.worker_id}: pid {worker.pid} on GPU {worker.gpu_index}, "
            f"lease {worker.vram_mb} MiB\n"
        )
        await pool.call(worker.worker_id, WorkerCall(method="hold", args=[vram_mb]))
        used, note = _nvml_used_mb(worker.gpu_index or 0, worker.pid)
        shown = "none" if used is None else f"{used} MiB"
        out.write(f"worker VRAM: held {vram_mb} MiB; NVML: {shown} ({note})\n")
        return used is not None
    finally:
        if worker.worker_id in pool.workers:
            await pool.stop(worker.worker_id, "gpu-check done")


def _lease_and_run(reading: HostReading, vram_mb: int, out: TextIO) -> int:
    import ray

    from actors.resources.models import LeaseGrant, LeaseRequest
    from actors.resources.scheduler import LeaseScheduler
    from actors.resources.store import SqliteLeaseStore
    from actors.resources.tasks import place_task
    from cluster.base.settings import ResourceSettings

    work = Path(tempfile.mkdtemp(prefix="aisys-gpu-check-"))
    try:
        ray.init(
            address="local",
            num_gpus=len(reading.gpus),
            resources={TAG: 1},
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            _temp_dir=str(work / "ray"),
        )
        gpus = ray.cluster_resources().get("GPU", 0)  # type: ignore[no-untyped-call]
        out.write(f"Ray: a private local node advertising {gpus:g} GPU\n")
        scheduler = LeaseScheduler(
            ResourceSettings(), SqliteLeaseStore(work / "leases.sqlite3"), time.time
        )
        scheduler.observe(reading)
        lease = scheduler.request(
            LeaseRequest(owner="gpu-check", vram_mb=vram_mb, host=TAG, max_wait_s=0, ttl_s=300)
        )
        assert isinstance(lease, LeaseGrant)  # max_wait_s=0: granted or LeaseUnavailable
        out.write(
            f"lease {lease.lease_id}: {vram_mb} MiB on GPU {lease.gpu_index} of {lease.host}, "
            f"num_gpus={lease.num_gpus:.4f}, resources={lease.resources}\n"
        )
        try:
            ref = place_task(f"{__name__}:hold_vram", [vram_mb], {}, 0, lease, TAG)
            report: dict[str, Any] = ray.get(ref, timeout=180)
        finally:
            scheduler.release(lease.lease_id, "gpu-check done")
        out.write(
            f"task pid {report['pid']}: CUDA_VISIBLE_DEVICES={report['cuda_visible_devices']}, "
            f"Ray GPU ids {report['ray_gpu_ids']}, assigned {report['assigned_resources']}\n"
        )
        if "error" in report:
            out.write(f"task VRAM: not measured: {report['error']}\n")
            return 1
        used = report["nvml_used_mb"]
        shown = "none" if used is None else f"{used} MiB"
        out.write(
            f"task VRAM: allocated {report['allocated_mb']} MiB; NVML: {shown} "
            f"({report['nvml_note']})\n"
        )
        worker_ok = asyncio.run(_worker_check(scheduler, work, vram_mb, out))
        return 0 if used is not None and worker_ok else 1
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None, library: Any = pynvml, out: TextIO = sys.stdout) -> int:
    """Run the check; ``library`` is the NVML to read (``pynvml``; tests pass the double)."""
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n")[0])
    parser.add_argument("--vram-mb", type=int, default=256, help="VRAM to lease and allocate")
    args = parser.parse_args(argv)
    if os.environ.pop(NVML_DOUBLE_ENV, None):
        out.write(f"{NVML_DOUBLE_ENV} ignored: gpu-check reads the real NVIDIA driver\n")
    try:
        library.nvmlInit()
    except library.NVMLError as exc:
        out.write(f"no NVIDIA driver here (NVML: {exc}); nothing to check\n")
        return 0
    library.nvmlShutdown()
    snapshot = NvmlProbe(library).read()
    out.write(f"NVML reports {len(snapshot.gpus)} GPU\n")
    for gpu in snapshot.gpus:
        out.write(_describe(gpu) + "\n")
    if not snapshot.gpus:
        out.write(f"nothing to lease ({snapshot.error})\n")
        return 0
    reading = HostReading(
        host=TAG,
        taken_at=time.time(),
        gpus=snapshot.gpus,
        cpu_percent=0,
        memory_percent=0,
        memory_available_mb=0,
    )
    return _lease_and_run(reading, args.vram_mb, out)


if __name__ == "__main__":
    raise SystemExit(main())
