"""Placing units of work as Ray tasks with a lease's GPU share and host tag.

A task under a lease asks Ray for the lease's ``num_gpus`` fraction and a sliver of its host
tag, so Ray's GPU accounting follows the lease; inside the task ``CUDA_VISIBLE_DEVICES`` names
the leased device (NVML index, with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA counts the same
way), whichever GPU id Ray's bookkeeping picked.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ray
from pydantic import JsonValue

from actors.probe.models import HostReading
from actors.probe.nvml import bind_host
from actors.resources.models import LeaseGrant
from actors.resources.scheduler import HOST_PIN
from cluster.base.constants import RAY_NAMESPACE, RESOURCES_ACTOR_NAME
from cluster.base.errors import ClusterError, HostOverloaded, ValidationFailed

__all__ = ["check_function_allowed", "host_has_gpus", "pick_host", "place_task"]


def check_function_allowed(function: str, modules: Sequence[str]) -> None:
    """Raise :class:`ValidationFailed` unless ``function``'s module is in ``modules``."""
    module = function.partition(":")[0]
    if not any(module == m or module.startswith(m + ".") for m in modules):
        raise ValidationFailed(
            f"function {function!r} is not in an allowed module; allowed: {list(modules)} "
            "(resources.task_modules)"
        )


def pick_host(
    readings: Sequence[HostReading], host: str, cpu_threshold: float, memory_threshold: float
) -> str:
    """The host tag to run on (the least loaded one for ``any``): backpressure on overload.

    Raises:
        HostOverloaded: the host (for ``any``: the least loaded host) is above a threshold.
    """
    candidates = [r for r in readings if host in ("any", r.host)]
    if not candidates:
        if host == "any":
            raise HostOverloaded(host, "no host has reported its load yet")
        return host  # not read yet: Ray's own queueing applies
    best = min(candidates, key=lambda r: (r.cpu_percent, r.memory_percent))
    if best.cpu_percent > cpu_threshold:
        raise HostOverloaded(best.host, f"CPU at {best.cpu_percent:.0f} % (> {cpu_threshold:g})")
    if best.memory_percent > memory_threshold:
        raise HostOverloaded(
            best.host, f"memory at {best.memory_percent:.0f} % (> {memory_threshold:g})"
        )
    return best.host


def host_has_gpus(tag: str, num_gpus: float) -> None:
    """Raise :class:`ClusterError` unless a live node with ``tag`` advertises ``num_gpus``."""
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    for node in nodes:
        resources = node.get("Resources", {})
        if node.get("Alive") and resources.get(tag, 0) > 0 and resources.get("GPU", 0) >= num_gpus:
            return
    raise ClusterError(
        f"no Ray node with host tag '{tag}' advertises {num_gpus} GPU; start that host's node "
        "with its GPUs visible (or set hosts.<name>.num_gpus)"
    )


def _report_pid(task_id: str, lease_id: str) -> None:
    """Tell the scheduler actor this process runs the task (its VRAM then counts for the lease)."""
    try:
        actor = ray.get_actor(RESOURCES_ACTOR_NAME, namespace=RAY_NAMESPACE)
    except ValueError:
        return  # no scheduler actor (make gpu-check places tasks without one)
    actor.task_started.remote(task_id, lease_id, os.getpid())


@ray.remote(max_retries=0)
def _run(
    function: str,
    args: list[JsonValue],
    kwargs: dict[str, JsonValue],
    gpu_index: int | None,
    owner: tuple[str, str] | None = None,
    host: str | None = None,
) -> Any:
    if owner is not None:
        _report_pid(*owner)
    if host is not None:
        bind_host(host)  # NVML (or its double) is read for the leased host's devices
    saved = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}
    if gpu_index is not None:
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_index)
    try:
        module_name, _, name = function.partition(":")
        return getattr(importlib.import_module(module_name), name)(*args, **kwargs)
    finally:  # Ray reuses workers: leave the environment as Ray set it
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def place_task(
    function: str,
    args: list[JsonValue],
    kwargs: Mapping[str, JsonValue],
    num_cpus: float,
    lease: LeaseGrant | None,
    host: str,
    task_id: str | None = None,
) -> Any:
    """Submit ``function`` as a Ray task; return its ObjectRef.

    Args:
        lease: the lease whose GPU share and host the task uses; None for CPU work on ``host``.
        host: the host tag of CPU work (ignored with a lease).
        task_id: the scheduler's id of the task; with a lease, the task reports its pid.
    """
    if lease is None:
        options: dict[str, Any] = {"num_gpus": 0, "resources": {host: HOST_PIN}}
        gpu_index = None
    else:
        host_has_gpus(lease.host, lease.num_gpus)
        options = {"num_gpus": lease.num_gpus, "resources": dict(lease.resources)}
        gpu_index = lease.gpu_index
    owner = (task_id, lease.lease_id) if task_id is not None and lease is not None else None
    return _run.options(num_cpus=num_cpus, **options).remote(
        function, args, dict(kwargs), gpu_index, owner, lease and lease.host
    )
