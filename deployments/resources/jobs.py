"""Jobs that ``POST /resources/tasks`` may run out of the box (``resources.task_modules``)."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

import ray

from deployments.resources.vram_worker import VramWorker

__all__ = ["hold_vram", "log_task", "placement_report"]

logger = logging.getLogger(__name__)


def placement_report() -> dict[str, object]:
    """Where this task runs and what Ray gave it: a check that a lease's placement holds.

    Returns:
        the node's host label, the resources Ray assigned, Ray's GPU ids and the
        ``CUDA_VISIBLE_DEVICES`` the task sees.
    """
    context = ray.get_runtime_context()
    node_id = context.get_node_id()
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    labels: dict[str, str] = next(
        (n.get("Labels", {}) for n in nodes if n["NodeID"] == node_id), {}
    )
    return {
        "hostname": socket.gethostname(),
        "node_id": node_id,
        "host_label": labels.get("host"),
        "assigned_resources": context.get_assigned_resources(),  # type: ignore[no-untyped-call]
        "ray_gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def log_task(data: Any) -> dict[str, object]:
    """What the legacy AsyncProcessor did with ``logging``/``analysis``/``memory`` tasks: log it.

    Returns:
        where it ran and how many bytes of JSON the task's data had.
    """
    text = json.dumps(data, sort_keys=True, default=str)
    logger.info("legacy task processed on %s: %s", socket.gethostname(), text[:2000])
    return {"hostname": socket.gethostname(), "logged_bytes": len(text.encode())}


def hold_vram(mb: int, seconds: float) -> dict[str, object]:
    """Hold ``mb`` MiB on the leased GPU for ``seconds`` (at most 600), then free it.

    A load that NVML sees under its lease (with the NVML double, only the fit is checked:
    :class:`~deployments.resources.vram_worker.VramWorker`).
    """
    if not 0 <= seconds <= 600:
        raise ValueError(f"seconds must be 0..600, not {seconds}")
    worker = VramWorker()
    report = worker.hold(mb)
    try:
        time.sleep(seconds)
    finally:
        worker.free()
    return report
