"""The per-host probe actor: one per host tag, pinned there, answering ``read()``.

ResourceScheduler polls it for GPU readings; CoreOrchestrator's digital twin can reuse it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

from actors.probe.counters import HostCounters, read_counters
from actors.probe.gpu import DeclaredProbe, HostProbe, NvmlProbe
from actors.probe.models import HostReading
from actors.probe.nvml import bind_host
from actors.probe.system import SystemReading, read_system
from cluster.base.constants import RAY_NAMESPACE, host_probe_actor_name
from cluster.base.settings import DeclaredGpu

__all__ = ["HostProbeActor", "get_or_create_host_probe"]


class HostProbeActor:
    """Ray actor reading NVML, CPU and memory on the host it is pinned to."""

    def __init__(self, tag: str, declared: list[DeclaredGpu]) -> None:
        self._tag = tag
        bind_host(tag)  # the NVML double, where Settings select it, answers for this host
        self._probe = HostProbe(
            tag, NvmlProbe(), declared=DeclaredProbe(tag, declared) if declared else None
        )

    def read(self) -> HostReading:
        return self._probe.read()

    def system(self, disk_path: str) -> SystemReading:
        """Address, totals, disk use of ``disk_path`` and GPU temperatures of this host."""
        ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        return read_system(self._tag, ip, Path(disk_path))

    def counters(self) -> HostCounters:
        """Network byte counters and GPU power draw of this host."""
        return read_counters(self._tag)


def get_or_create_host_probe(tag: str, declared: list[DeclaredGpu]) -> Any:
    """Return the probe actor of host ``tag``, creating it pinned to that host if absent.

    Args:
        tag: the Ray host tag; the actor asks for a sliver of it, so it runs on that host.
        declared: GPUs to report when NVML sees none there (Settings ``declared_gpus``).
    """
    remote_cls = ray.remote(HostProbeActor)
    return remote_cls.options(
        name=host_probe_actor_name(tag),
        namespace=RAY_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=-1,
        num_cpus=0,
        resources={tag: 0.001},
        enable_task_events=False,  # as the other singletons (actors/_singleton.py)
    ).remote(tag, declared)
