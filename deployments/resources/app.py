"""ResourceScheduler (``/resources``): the Serve application over the resources actor.

The deployment only adapts HTTP to the actor, which holds the lease ledger, the queue, tasks and
the optimizer, so a replica restart loses nothing and every replica sees the same ledger.

No ``from __future__ import annotations`` here: FastAPI reads the route annotations at runtime
to tell body models from query parameters.
"""

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from ray import serve
from ray.exceptions import RayError
from ray.serve import Application

from actors.resources.actor import get_or_create_resources
from actors.resources.client import ResourcesClient
from actors.resources.models import (
    GpuList,
    LeaseHeartbeat,
    LeaseList,
    LeaseRequest,
    LeaseStatus,
    TaskRequest,
    TaskStatus,
)
from actors.resources.optimizer import Thresholds
from actors.resources.worker_models import (
    WorkerCall,
    WorkerCallResult,
    WorkerList,
    WorkerRequest,
    WorkerStatus,
)
from actors.security.models import Scope
from cluster.base.errors import ClusterError, ValidationFailed
from cluster.base.nats_client import NatsClient
from cluster.base.settings import DeclaredGpu, ErrorBusSettings, ResourceSettings
from deployments.auth import AuthArgs, Authenticator, auth_first, install_auth, require
from deployments.http import install_error_handlers

__all__ = ["ResourceScheduler", "ResourcesAppArgs", "build_app"]

logger = logging.getLogger(__name__)


class ResourcesAppArgs(BaseModel):
    """Arguments of the ``resources`` application (the ``args`` block of its Serve config)."""

    model_config = ConfigDict(extra="forbid")

    settings: ResourceSettings
    data_dir: str
    host_tag: str
    hosts: dict[str, list[DeclaredGpu]]
    model_manager_host: str
    auth: AuthArgs
    nats: NatsClient | None = None
    errors: ErrorBusSettings | None = None


api = FastAPI(
    title="aisys ResourceScheduler",
    description="VRAM leases from NVML readings, one priority queue, Ray task placement.",
    version="1",
)
install_error_handlers(api)
auth_first(api)  # every scoped route checks its token before the request is parsed


@serve.deployment
@serve.ingress(api)
class ResourceScheduler:
    """Serve deployment of ResourceScheduler."""

    def __init__(self, args: ResourcesAppArgs) -> None:
        install_auth(api, Authenticator(args.auth))
        self._actor = ResourcesClient(
            get_or_create_resources(
                args.settings,
                Path(args.data_dir) / "resources.sqlite3",
                args.host_tag,
                args.hosts,
                args.model_manager_host,
                (args.nats, args.errors) if args.nats and args.errors else None,
            )
        )
        self._call_max_bytes = args.settings.workers.call_max_bytes

    async def check_health(self) -> None:
        try:
            await self._actor.thresholds()
        except RayError as exc:
            raise ClusterError(f"resources: the scheduler actor does not answer: {exc}") from exc

    @api.post(
        "/leases",
        summary="Request VRAM on a GPU: granted (201) or queued (202)",
        dependencies=[require(Scope.RESOURCES_LEASE)],
    )
    async def request_lease(self, request: LeaseRequest, response: Response) -> LeaseStatus:
        status: LeaseStatus = await self._actor.request_lease(request)
        response.status_code = 201 if status.state == "granted" else 202
        return status

    @api.get(
        "/leases",
        summary="Granted leases and the queue in serving order",
        dependencies=[require(Scope.READ)],
    )
    async def list_leases(self) -> LeaseList:
        leases: LeaseList = await self._actor.list_leases()
        return leases

    @api.get(
        "/leases/{lease_id}",
        summary="A lease: granted, queued (with position) or ended",
        dependencies=[require(Scope.READ)],
    )
    async def get_lease(self, lease_id: str) -> LeaseStatus:
        status: LeaseStatus = await self._actor.get_lease(lease_id)
        return status

    @api.delete(
        "/leases/{lease_id}",
        summary="Release a lease or withdraw a queued request",
        dependencies=[require(Scope.RESOURCES_LEASE)],
    )
    async def release_lease(self, lease_id: str) -> LeaseStatus:
        status: LeaseStatus = await self._actor.release_lease(lease_id)
        return status

    @api.put(
        "/leases/{lease_id}/heartbeat",
        summary="Renew a lease's TTL",
        dependencies=[require(Scope.RESOURCES_LEASE)],
    )
    async def heartbeat(self, lease_id: str, heartbeat: LeaseHeartbeat) -> LeaseStatus:
        status: LeaseStatus = await self._actor.heartbeat(lease_id, heartbeat.used)
        return status

    @api.get(
        "/gpus",
        summary="Every visible GPU with its lease accounting; hosts' readings",
        dependencies=[require(Scope.READ)],
    )
    async def gpus(self, refresh: bool = False) -> GpuList:
        return await (self._actor.refresh() if refresh else self._actor.gpus())

    @api.post(
        "/tasks",
        status_code=202,
        summary="Run a function as a Ray task (under a lease)",
        dependencies=[require(Scope.RESOURCES_LEASE)],
    )
    async def submit_task(self, request: TaskRequest) -> TaskStatus:
        status: TaskStatus = await self._actor.submit_task(request)
        return status

    @api.get(
        "/tasks/{task_id}",
        summary="A task's state and, once done, its result",
        dependencies=[require(Scope.READ)],
    )
    async def task_status(self, task_id: str) -> TaskStatus:
        status: TaskStatus = await self._actor.task_status(task_id)
        return status

    @api.post(
        "/workers",
        status_code=201,
        summary="Start a model worker (an allow-listed Ray actor class) under a VRAM lease",
        dependencies=[require(Scope.RESOURCES_LEASE)],
    )
    async def start_worker(self, request: WorkerRequest) -> WorkerStatus:
        status: WorkerStatus = await self._actor.start_worker(request)
        return status

    @api.get("/workers", summary="Live model workers", dependencies=[require(Scope.READ)])
    async def list_workers(self) -> WorkerList:
        workers: WorkerList = await self._actor.list_workers()
        return workers

    @api.get(
        "/workers/{worker_id}",
        summary="A model worker: state, lease, host and GPU, process",
        dependencies=[require(Scope.READ)],
    )
    async def get_worker(self, worker_id: str) -> WorkerStatus:
        status: WorkerStatus = await self._actor.get_worker(worker_id)
        return status

    @api.post(
        "/workers/{worker_id}/call",
        summary="Call an allow-listed method of a model worker with JSON arguments",
        dependencies=[require(Scope.RESOURCES_LEASE)],
        # Read as bytes (bounded by call_max_bytes before parsing): documented as a WorkerCall.
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": WorkerCall.model_json_schema()}},
            }
        },
    )
    async def call_worker(self, worker_id: str, raw: Request) -> WorkerCallResult:
        body = b""
        async for chunk in raw.stream():  # read no further than the limit
            body += chunk
            if len(body) > self._call_max_bytes:
                raise ValidationFailed(
                    f"call body is over resources.workers.call_max_bytes "
                    f"({self._call_max_bytes} bytes)"
                )
        try:
            call = WorkerCall.model_validate_json(body)
        except ValidationError as exc:
            raise ValidationFailed(f"not a worker call: {exc}") from exc
        result: WorkerCallResult = await self._actor.call_worker(worker_id, call)
        return result

    @api.delete(
        "/workers/{worker_id}",
        summary="Stop a model worker and release its lease",
        dependencies=[require(Scope.RESOURCES_LEASE)],
    )
    async def stop_worker(self, worker_id: str) -> WorkerStatus:
        status: WorkerStatus = await self._actor.stop_worker(worker_id)
        return status

    @api.get(
        "/optimizer", summary="The VRAM optimizer's thresholds", dependencies=[require(Scope.READ)]
    )
    async def thresholds(self) -> Thresholds:
        thresholds: Thresholds = await self._actor.thresholds()
        return thresholds

    @api.put(
        "/optimizer",
        summary="Change the VRAM optimizer's thresholds at run time",
        dependencies=[require(Scope.ADMIN)],
    )
    async def set_thresholds(self, thresholds: Thresholds) -> Thresholds:
        updated: Thresholds = await self._actor.set_thresholds(thresholds)
        return updated


def build_app(args: dict[str, Any]) -> Application:
    """Serve application builder named by the ``resources`` import path of the Serve config.

    Raises:
        pydantic.ValidationError: ``args`` is not a valid :class:`ResourcesAppArgs`.
    """
    return ResourceScheduler.bind(ResourcesAppArgs.model_validate(args))  # type: ignore[attr-defined,no-any-return]
