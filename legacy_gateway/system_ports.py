"""The system and resource agents' legacy ports, translated to CoreOrchestrator and the scheduler.

* VRAMOptimizerAgent (5572, and 5588 where ModelManagerAgent falls back; ``docs/legacy-protocol.md``
  4.13): the four ``action`` frames MMA really sends, answered by the ResourceScheduler's
  ledger, and the optimizer's own ``command`` dialect (``GET_VRAM_STATUS`` from NVML through the
  scheduler with the models held under leases and those ModelManagerAgent reported,
  ``SET_VRAM_THRESHOLD``/``SET_IDLE_TIMEOUT`` on the live thresholds).
* ResourceManager (7113, 4.10): host figures from the twin; ``allocate_resources`` of type
  ``gpu`` is a real VRAM lease (``amount`` MiB) owned by ``resource_id``.
* TaskScheduler (7115, 4.11) and AsyncProcessor (7101, 4.12): a task ``type`` runs as a Ray task
  through the scheduler when ``legacy_gateway.task_functions`` maps it to a function.
* UnifiedSystemAgent (7125, health 5569; 4.4): :mod:`legacy_gateway.unified_system_port`,
  re-exported here.
* RequestCoordinator's suggestion port (5591, 4.3): raw ``get_suggestion``; after
  ``suggestion_idle_s`` without a request the legacy reminder is suggested once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, Final

from pydantic import JsonValue
from ray.serve.exceptions import RayServeException

from actors.resources.models import GpuList, LeaseList, LeaseRequest, TaskRequest
from actors.resources.optimizer import LoadedModel, Thresholds
from cluster.base.constants import APP_CORE
from legacy_gateway._codec import (
    HEALTH_VERBS,
    ActionRequest,
    Dialect,
    InvalidRequest,
    LegacyRequest,
    RawRequest,
    Reply,
    TypedRequest,
    dialect_of,
    error_reply,
    iso_time,
)
from legacy_gateway._ports import (
    ActionPort,
    ActionTable,
    Fields,
    Services,
    guarded,
    number,
    probe_problem,
    text,
)
from legacy_gateway.server import Outcome, Received
from legacy_gateway.twin_cache import TwinCache
from legacy_gateway.unified_system_port import UnifiedSystemPort

__all__ = [
    "AsyncProcessorPort",
    "ResourceManagerPort",
    "SuggestionPort",
    "TaskSchedulerPort",
    "UnifiedSystemPort",
    "VramOptimizerPort",
]

_CORE: Final = ("CoreOrchestrator", APP_CORE)
#: The reminder RequestCoordinator queued after 300 s of inactivity (section 4.3).
IDLE_REMINDER: Final = "Paalala: Huwag kalimutang i-save ang iyong trabaho."
_MMA_ACTIONS: Final = (
    "register_model_manager",
    "update_vram_status",
    "can_accommodate_model",
    "make_room_for_model",
)


def _vram(gpus: GpuList, host: str) -> dict[str, JsonValue] | None:
    mine = [g for g in gpus.gpus if g.host == host]
    if not mine:
        return None
    total = sum(g.total_mb for g in mine)
    # A declared GPU's use is not measured: used, free and the ratio are unknown (None), and
    # the leases granted on it are the only accounting of its memory.
    declared = any(g.source == "declared" for g in mine)
    used = None if declared else sum(g.used_mb for g in mine)
    return {
        "total_mb": total,
        "used_mb": used,
        "free_mb": None if declared else sum(g.free_mb for g in mine),
        "leased_mb": sum(g.leased_mb for g in mine),
        "usage_ratio": round(used / total, 4) if used is not None and total else None,
        # "nvml", "nvml-double" (the test double) or "declared", comma-joined
        "source": ",".join(sorted({g.source for g in mine})),
        "declared": declared,
    }


class VramOptimizerPort(ActionPort):
    """VRAMOptimizerAgent: MMA's handshake and the optimizer's ``command`` dialect."""

    service = "VRAMOptimizerAgent"

    def __init__(self, services: Services, mainpc: str, pc2: str) -> None:
        super().__init__()
        self._services = services
        self._mainpc, self._pc2 = mainpc, pc2

    def probe(self) -> Awaitable[object]:
        return self._services.resources().thresholds()

    def health_reply(self, problem: str | None) -> Reply:
        if problem is None:
            return Reply(status="ok", service=self.service, timestamp=iso_time(time.time()))
        return Reply(
            status="degraded",
            service=self.service,
            message=problem,
            timestamp=iso_time(time.time()),
        )

    def actions(self) -> ActionTable:
        return {action: self._mma(action) for action in _MMA_ACTIONS}

    def _mma(self, action: str) -> Any:
        async def answer(fields: Fields) -> Reply:
            resources = self._services.resources()
            reply = await resources.model_manager({**fields, "action": action})
            return Reply.model_validate(reply)

        return answer

    def commands(self) -> ActionTable:
        return {
            "GET_VRAM_STATUS": self._status,
            "SET_VRAM_THRESHOLD": self._set_threshold,
            "SET_IDLE_TIMEOUT": self._set_idle,
            "HEALTH_CHECK": self._health_check,
        }

    async def _status(self, fields: Fields) -> Reply:  # noqa: ARG002
        resources = self._services.resources()
        gpus: GpuList = await resources.gpus()
        limits: Thresholds = await resources.thresholds()
        leases: LeaseList = await resources.list_leases()
        reported: list[LoadedModel] = await resources.mma_models()
        return Reply(
            status="SUCCESS",
            mainpc_vram=_vram(gpus, self._mainpc),
            pc2_vram=_vram(gpus, self._pc2),
            loaded_models=self._models(leases, reported),
            thresholds={"critical": limits.critical_ratio, "warning": limits.warning_ratio},
            idle_timeout_s=limits.idle_timeout_s,
        )

    def _models(self, leases: LeaseList, reported: list[LoadedModel]) -> dict[str, JsonValue]:
        """The models held under leases, then those ModelManagerAgent reported (a lease of the
        same name is shown), keyed by name in the shape MMA reports them (section 4.13)."""
        models: dict[str, JsonValue] = {}
        for lease in leases.granted:
            if lease.model_name is None:
                continue
            models[lease.model_name] = self._model(
                lease.host, lease.vram_mb, lease.last_used_at, lease.owner, lease.gpu_index
            )
        for model in reported:
            models.setdefault(
                model.model_name,
                self._model(
                    model.host, model.vram_mb, model.last_used_at, model.owner, model.gpu_index
                ),
            )
        return models

    def _model(
        self, host: str, vram_mb: int, last_used: float, owner: str, gpu_index: int | None
    ) -> JsonValue:
        return {
            "device": "PC2" if host == self._pc2 else "MainPC",
            "vram_usage_mb": vram_mb,
            "last_used": last_used,
            "owner": owner,
            "host": host,
            "gpu_index": gpu_index,
        }

    async def _set_threshold(self, fields: Fields) -> Reply:
        kind, value = text(fields, "threshold_type"), number(fields, "value")
        if kind not in ("critical", "warning") or value is None or not 0 < value < 1:
            return error_reply(
                Dialect.COMMAND,
                "Invalid threshold parameters: threshold_type critical|warning, 0 < value < 1",
            )
        resources = self._services.resources()
        current: Thresholds = await resources.thresholds()
        changed = current.model_copy(update={f"{kind}_ratio": value})
        Thresholds.model_validate(changed.model_dump())  # warning must stay below critical
        await resources.set_thresholds(changed)
        return Reply(status="SUCCESS", message=f"{kind} threshold set to {value}")

    async def _set_idle(self, fields: Fields) -> Reply:
        value = number(fields, "timeout_seconds")
        if value is None or value <= 0:
            return error_reply(Dialect.COMMAND, "Invalid timeout parameter")
        resources = self._services.resources()
        current: Thresholds = await resources.thresholds()
        await resources.set_thresholds(current.model_copy(update={"idle_timeout_s": value}))
        return Reply(status="SUCCESS", message=f"idle timeout set to {value:g}s")

    async def _health_check(self, fields: Fields) -> Reply:  # noqa: ARG002
        await self._services.resources().thresholds()  # the scheduler answers
        return Reply(
            status="SUCCESS",
            health_status={
                "status": "HEALTHY",
                "uptime_seconds": round(time.time() - self.started_at, 3),
            },
        )


class ResourceManagerPort(ActionPort):
    """ResourceManager: host figures from the twin, GPU allocations as VRAM leases."""

    service = "ResourceManager"

    def __init__(self, services: Services, twin: TwinCache, host: str) -> None:
        super().__init__()
        self._services = services
        self._twin = twin
        self._host = host
        self._limits = {"cpu": 80.0, "memory": 80.0, "gpu": 80.0}

    def probe(self) -> Awaitable[object]:
        return self._services.resources().thresholds()

    def actions(self) -> ActionTable:
        return {
            "get_stats": self._stats,
            "check_resources": self._check,
            "allocate_resources": self._allocate,
            "release_resources": self._release,
            "get_status": self._status,
            "set_thresholds": self._set_thresholds,
        }

    def _figures(self) -> dict[str, JsonValue]:
        host = self._twin.host(self._host)
        # Only measured GPUs have a use: without one the percent is unknown (None), so the
        # availability check leaves GPU memory out instead of reading it as empty.
        measured = [g for g in host.gpus if g.source != "declared"]
        total = sum(g.total_mb for g in measured)
        used = sum(g.used_mb for g in measured)
        return {
            "cpu_percent": host.cpu_percent,
            "memory_percent": host.memory_percent,
            "memory_available": host.memory_available_mb,
            "memory_total": host.memory_total_mb,
            "disk_usage": host.disk_percent,
            "timestamp": iso_time(host.taken_at or time.time()),
            "gpu_memory_percent": round(100.0 * used / total, 2) if total else None,
        }

    def _available(self, figures: dict[str, JsonValue]) -> bool:
        pairs = (
            ("cpu_percent", "cpu"),
            ("memory_percent", "memory"),
            ("gpu_memory_percent", "gpu"),
        )
        for key, limit in pairs:
            value = figures.get(key)
            if isinstance(value, int | float) and value > self._limits[limit]:
                return False
        return True

    def _stats(self, fields: Fields) -> Reply:  # noqa: ARG002
        return Reply(status="success", stats=self._figures())

    def _check(self, fields: Fields) -> Reply:  # noqa: ARG002
        return Reply(status="success", available=self._available(self._figures()))

    async def _allocate(self, fields: Fields) -> Reply:
        resource_id = text(fields, "resource_id")
        kind = text(fields, "resource_type") or "gpu"
        amount = number(fields, "amount")
        if resource_id is None:
            return error_reply(Dialect.ACTION, "Missing resource_id")
        if kind != "gpu":
            return error_reply(
                Dialect.ACTION,
                f"resource_type {kind!r} is not accounted: aisys leases GPU memory only "
                "(resource_type 'gpu', amount in MiB)",
            )
        if amount is None or amount < 1:
            return error_reply(Dialect.ACTION, "amount must be the MiB of GPU memory, >= 1")
        resources = self._services.resources()
        if await self._lease_of(resource_id) is not None:
            return error_reply(Dialect.ACTION, f"Resource ID {resource_id} already allocated")
        request = LeaseRequest(
            owner=f"legacy:{resource_id}", vram_mb=int(amount), host=self._host, max_wait_s=0
        )
        lease = await resources.request_lease(request)
        if lease.state != "granted":
            reason = getattr(lease, "reason", None) or lease.state
            return error_reply(Dialect.ACTION, f"Insufficient system resources: {reason}")
        return Reply(
            status="success",
            resource_id=resource_id,
            lease_id=lease.lease_id,
            message=f"Allocated {int(amount)} gpu",
        )

    async def _lease_of(self, resource_id: str) -> str | None:
        leases: LeaseList = await self._services.resources().list_leases()
        owner = f"legacy:{resource_id}"
        return next((g.lease_id for g in leases.granted if g.owner == owner), None)

    async def _release(self, fields: Fields) -> Reply:
        resource_id = text(fields, "resource_id")
        if resource_id is None:
            return error_reply(Dialect.ACTION, "Missing resource_id")
        lease_id = await self._lease_of(resource_id)
        if lease_id is None:
            return error_reply(Dialect.ACTION, f"Resource ID {resource_id} not found")
        await self._services.resources().release_lease(lease_id)
        return Reply(
            status="success", resource_id=resource_id, message="Resources released successfully"
        )

    async def _status(self, fields: Fields) -> Reply:  # noqa: ARG002
        figures = self._figures()
        leases: LeaseList = await self._services.resources().list_leases()
        allocated: dict[str, JsonValue] = {
            g.owner.removeprefix("legacy:"): {
                "type": "gpu",
                "amount": g.vram_mb,
                "allocated_at": iso_time(g.requested_at),
                "status": "active",
                "lease_id": g.lease_id,
            }
            for g in leases.granted
            if g.owner.startswith("legacy:")
        }
        return Reply(
            status="success",
            current_stats=figures,
            allocated_resources=allocated,
            resources_available=self._available(figures),
            thresholds=dict(self._limits),
        )

    def _set_thresholds(self, fields: Fields) -> Reply:
        for name in self._limits:
            value = number(fields, f"{name}_threshold")
            if f"{name}_threshold" in fields and (value is None or not 0 < value <= 100):
                return error_reply(Dialect.ACTION, f"{name}_threshold must be a percentage")
            if value is not None:
                self._limits[name] = value
        return Reply(status="success", thresholds=dict(self._limits))


class _TaskPort(ActionPort):
    """Legacy task types run as Ray tasks through the ResourceScheduler."""

    def __init__(self, services: Services, functions: dict[str, str], host: str) -> None:
        super().__init__()
        self._services = services
        self._functions = functions
        self._host = host

    def probe(self) -> Awaitable[object]:
        return self._services.resources().thresholds()

    async def run(self, kind: JsonValue, data: JsonValue, priority: JsonValue) -> Reply:
        if not isinstance(kind, str) or not kind or data in (None, "", {}, []):
            return error_reply(Dialect.ACTION, "Invalid task format. Required fields: type, data")
        function = self._functions.get(kind)
        if function is None:
            return error_reply(
                Dialect.ACTION,
                f"Unknown task type: {kind} (map it to a function in "
                "legacy_gateway.task_functions)",
            )
        level = priority if priority in ("high", "medium", "low") else "medium"
        request = TaskRequest.model_validate(
            {
                "function": function,
                "kwargs": {"data": data},
                "priority": {"high": 1, "medium": 10, "low": 20}[str(level)],
                "host": self._host,
            }
        )
        task = await self._services.resources().submit_task(request)
        return Reply(
            status="queued",
            message="Task queued for processing",
            task_id=task.task_id,
            task_state=task.state,
        )


class TaskSchedulerPort(_TaskPort):
    """TaskScheduler: ``schedule_task``."""

    service = "TaskScheduler"

    def actions(self) -> ActionTable:
        return {"schedule_task": self._schedule}

    def _schedule(self, fields: Fields) -> Any:
        return self.run(fields.get("type"), fields.get("data"), fields.get("priority"))


class AsyncProcessorPort(_TaskPort):
    """AsyncProcessor: ``type``-dispatched tasks (``action`` only for health)."""

    service = "AsyncProcessor"

    def actions(self) -> ActionTable:
        return {}

    def typed(self, request: TypedRequest) -> Outcome:
        fields = request.fields
        return self.run(request.type, fields.get("data"), fields.get("priority"))


class SuggestionPort:
    """RequestCoordinator's suggestion REP (5591): raw ``get_suggestion``."""

    service = "RequestCoordinator"

    def __init__(self, services: Services, idle_s: float) -> None:
        self._services = services
        self._idle_s = idle_s
        self._started_at = time.time()
        self._reminded_for: float | None = None

    def handle(self, request: LegacyRequest, received: Received) -> Outcome:  # noqa: ARG002
        if isinstance(request, RawRequest) and request.text == "get_suggestion":
            return guarded(self.service, Dialect.ACTION, self._suggest())
        verb = request.action if isinstance(request, ActionRequest) else None
        if verb in HEALTH_VERBS or (isinstance(request, RawRequest) and request.text == "ping"):
            return self._health()
        if isinstance(request, InvalidRequest):
            return error_reply(request.dialect, request.reason)
        return error_reply(dialect_of(request), "Send the raw string get_suggestion")

    async def _health(self) -> Reply:
        """``ok`` while CoreOrchestrator's queue (what ``get_suggestion`` reads) answers."""
        try:
            probe = self._services.deployment(*_CORE).queue.remote()
        except (ValueError, RayServeException) as exc:
            problem: str | None = f"{self.service}: the aisys service is unavailable ({exc!s:.200})"
        else:
            problem = await probe_problem(self.service, probe)
        if problem is None:
            return Reply(status="ok", service=self.service, message="suggestion port is healthy")
        return Reply(status="degraded", service=self.service, message=problem)

    async def _suggest(self) -> Reply:
        view = await self._services.deployment(*_CORE).queue.remote()
        last = view.last_submit_at or self._started_at
        idle = time.time() - last >= self._idle_s  # RC's rule: no request for that long
        if not idle or self._reminded_for == last:
            return Reply.model_validate({"suggestion": None, "status": "success"})
        self._reminded_for = last  # once per idle period, as the legacy agent queued it once
        return Reply.model_validate({"suggestion": IDLE_REMINDER, "status": "success"})
