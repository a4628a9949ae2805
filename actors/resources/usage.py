"""Measured VRAM per holder: NVML's compute processes of each GPU matched to leases by pid.

A process whose pid belongs to the holder of a lease (a worker's actor process, a task's
worker process) counts for that lease; every other process on a GPU is memory no lease
explains. No Ray here.
"""

from __future__ import annotations

from collections.abc import Mapping

from actors.resources.models import GpuMemoryUse, LeaseUsage, UsageReport
from actors.resources.scheduler import LeaseScheduler

__all__ = ["measure"]


def measure(
    sched: LeaseScheduler,
    pid_leases: Mapping[int, str],
    tolerance_mb: int,
    learned_peaks: Mapping[str, int],
) -> UsageReport:
    """Leased vs used per granted lease, and the processes no lease explains.

    Args:
        pid_leases: process id -> the lease its holder runs under.
        tolerance_mb: how far above its lease a holder may go before it is ``over``.
    """
    used: dict[str, list[int | None]] = {}
    pids: dict[str, list[int]] = {}
    unexplained: list[GpuMemoryUse] = []
    for (host, index), account in sorted(sched.gpus.items()):
        leases_here = {lease.lease_id for lease in sched.leases_on((host, index))}
        for process in account.reading.processes:
            lease_id = pid_leases.get(process.pid)
            if lease_id is not None and lease_id in leases_here:
                used.setdefault(lease_id, []).append(process.used_mb)
                pids.setdefault(lease_id, []).append(process.pid)
            else:
                unexplained.append(
                    GpuMemoryUse(
                        host=host, gpu_index=index, pid=process.pid, used_mb=process.used_mb
                    )
                )
    rows = []
    for lease in sched.leases().granted:
        figures = [mb for mb in used.get(lease.lease_id, []) if mb is not None]
        total = sum(figures) if figures else None
        rows.append(
            LeaseUsage(
                lease_id=lease.lease_id,
                owner=lease.owner,
                host=lease.host,
                gpu_index=lease.gpu_index,
                leased_mb=lease.vram_mb,
                used_mb=total,
                pids=pids.get(lease.lease_id, []),
                over=total is not None and total > lease.vram_mb + tolerance_mb,
            )
        )
    return UsageReport(leases=rows, unexplained=unexplained, learned_peaks=dict(learned_peaks))
