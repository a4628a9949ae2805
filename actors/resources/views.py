"""Read-only views of the scheduler: the GPU table and per-GPU usage for the optimizer."""

from __future__ import annotations

from actors.resources.models import GpuList, GpuStatus, HostStatus
from actors.resources.optimizer import LoadedModel
from actors.resources.scheduler import GpuKey, LeaseScheduler

__all__ = ["gpu_list", "lease_models", "usage_ratio"]


def gpu_list(sched: LeaseScheduler) -> GpuList:
    """Every visible GPU with its accounting, and every host's latest reading."""
    gpus = []
    for key, account in sorted(sched.gpus.items()):
        reading = account.reading
        gpus.append(
            GpuStatus(
                host=key[0],
                index=key[1],
                uuid=reading.uuid,
                name=reading.name,
                source=reading.source,
                total_mb=reading.total_mb,
                used_mb=reading.used_mb,
                free_mb=reading.free_mb,
                leased_mb=sched.leased_mb(key),
                unseen_mb=sched.unseen_mb(key),
                available_mb=sched.available_mb(key),
                utilization_percent=reading.utilization_percent,
                processes=reading.processes,
                leases=[lease.lease_id for lease in sched.leases_on(key)],
            )
        )
    hosts = [
        HostStatus(
            host=host,
            taken_at=r.taken_at,
            gpu_devices=sum(1 for key in sched.gpus if key[0] == host),
            gpu_error=r.gpu_error,
            cpu_percent=r.cpu_percent,
            memory_percent=r.memory_percent,
        )
        for host, r in sorted(sched.hosts.items())
    ]
    return GpuList(gpu_devices=len(gpus), gpus=gpus, hosts=hosts)


def usage_ratio(sched: LeaseScheduler, key: GpuKey) -> float:
    """Accounted usage of a GPU: what NVML shows used plus leases it does not show yet."""
    reading = sched.gpus[key].reading
    return (reading.used_mb + sched.unseen_mb(key)) / reading.total_mb


def lease_models(sched: LeaseScheduler) -> list[LoadedModel]:
    """Models held under leases that name one; their last use is the last ``used`` heartbeat."""
    return [
        LoadedModel(
            model_name=lease.model_name,
            owner=lease.owner,
            host=lease.host,
            gpu_index=lease.gpu_index,
            vram_mb=lease.vram_mb,
            last_used_at=lease.last_used_at,
            endpoint=lease.unload_endpoint,
        )
        for lease in sched.leases().granted
        if lease.model_name is not None
    ]
