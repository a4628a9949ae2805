"""ResourcesClient: typed calls of the resource ledger's actor (GPU leases, tasks, thresholds).

Every caller of the ResourceScheduler's state (its Serve app, the legacy gateway's resource
and model-manager ports) goes through this class instead of the actor's untyped handle.

Example::

    resources = ResourcesClient.named()
    status = await resources.request_lease(LeaseRequest(owner="tts", vram_mb=2048))
"""

from __future__ import annotations

from typing import Any

import ray

from actors.calls import Call
from actors.resources.models import (
    GpuList,
    LeaseList,
    LeaseRequest,
    LeaseStatus,
    TaskRequest,
    TaskStatus,
)
from actors.resources.optimizer import LoadedModel, Thresholds
from actors.resources.worker_models import (
    WorkerCall,
    WorkerCallResult,
    WorkerList,
    WorkerRequest,
    WorkerStatus,
)
from cluster.base.constants import RAY_NAMESPACE, RESOURCES_ACTOR_NAME

__all__ = ["ResourcesClient"]


class ResourcesClient:
    """The resource ledger actor's calls, typed.

    Args:
        handle: the actor's handle (:func:`actors.resources.actor.get_or_create_resources`,
            or :meth:`named`).
    """

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    @classmethod
    def named(cls) -> ResourcesClient:
        """The client of the running resource actor, found by name.

        Raises:
            ValueError: no resource actor runs (its deployment has not started it yet).
        """
        return cls(ray.get_actor(RESOURCES_ACTOR_NAME, namespace=RAY_NAMESPACE))

    # Leases
    def request_lease(self, request: LeaseRequest) -> Call[LeaseStatus]:
        """Granted at once, or queued until VRAM frees up (``LeaseUnavailable`` if never)."""
        return Call(self.handle.request_lease.remote(request))

    def release_lease(self, lease_id: str) -> Call[LeaseStatus]:
        return Call(self.handle.release_lease.remote(lease_id))

    def heartbeat(self, lease_id: str, used: bool) -> Call[LeaseStatus]:
        return Call(self.handle.heartbeat.remote(lease_id, used))

    def get_lease(self, lease_id: str) -> Call[LeaseStatus]:
        return Call(self.handle.get_lease.remote(lease_id))

    def list_leases(self) -> Call[LeaseList]:
        return Call(self.handle.list_leases.remote())

    # GPUs and thresholds
    def gpus(self) -> Call[GpuList]:
        """The GPU table as last read."""
        return Call(self.handle.gpus.remote())

    def refresh(self) -> Call[GpuList]:
        """Read every host's GPUs now, then the table."""
        return Call(self.handle.refresh.remote())

    def thresholds(self) -> Call[Thresholds]:
        return Call(self.handle.thresholds.remote())

    def set_thresholds(self, thresholds: Thresholds) -> Call[Thresholds]:
        return Call(self.handle.set_thresholds.remote(thresholds))

    # The legacy ModelManagerAgent
    def model_manager(self, message: dict[str, Any]) -> Call[dict[str, object]]:
        """Answer a legacy ModelManagerAgent ``action`` frame."""
        return Call(self.handle.model_manager.remote(message))

    def mma_models(self) -> Call[list[LoadedModel]]:
        return Call(self.handle.mma_models.remote())

    # Tasks
    def submit_task(self, request: TaskRequest) -> Call[TaskStatus]:
        return Call(self.handle.submit_task.remote(request))

    def task_status(self, task_id: str) -> Call[TaskStatus]:
        return Call(self.handle.task_status.remote(task_id))

    # Model workers
    def start_worker(self, request: WorkerRequest) -> Call[WorkerStatus]:
        """Ready, or waiting for its lease; ``WorkerFailed`` when it failed to start."""
        return Call(self.handle.start_worker.remote(request))

    def list_workers(self) -> Call[WorkerList]:
        return Call(self.handle.list_workers.remote())

    def get_worker(self, worker_id: str) -> Call[WorkerStatus]:
        return Call(self.handle.get_worker.remote(worker_id))

    def call_worker(self, worker_id: str, call: WorkerCall) -> Call[WorkerCallResult]:
        return Call(self.handle.call_worker.remote(worker_id, call))

    def stop_worker(self, worker_id: str) -> Call[WorkerStatus]:
        return Call(self.handle.stop_worker.remote(worker_id))
