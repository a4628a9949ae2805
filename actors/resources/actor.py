"""The ResourceScheduler's named, detached actor: the ledger, the queue, tasks, the optimizer.

A thin async shell over :class:`LeaseScheduler`. It owns the SQLite store (a restarted actor
reloads every granted lease and queued request), polls each host's probe actor and sweeps
expired leases every ``poll_interval_s``, runs the optimizer every ``optimizer.interval_s``, and
places and follows Ray tasks. All state is touched from the actor's one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from pathlib import Path
from typing import Any, cast

import ray
from pydantic import JsonValue, TypeAdapter, ValidationError

from actors._singleton import singleton_options
from actors._unusable import Unusable
from actors.errors.models import ErrorEvent
from actors.errors.publisher import ErrorPublisher
from actors.errors.spool import Spool
from actors.probe.actor import get_or_create_host_probe
from actors.probe.client import HostProbeClient
from actors.probe.models import HostReading
from actors.resources._owners import ask_to_unload
from actors.resources.models import (
    GpuList,
    LeaseGrant,
    LeaseList,
    LeaseRequest,
    LeaseStatus,
    TaskRequest,
    TaskStatus,
    UsageReport,
)
from actors.resources.optimizer import (
    LoadedModel,
    MmaRequest,
    ModelManagerLink,
    Thresholds,
    UnloadDecision,
    idle_sweep,
    plan_for_gpu,
)
from actors.resources.scheduler import LeaseScheduler
from actors.resources.store import SqliteLeaseStore
from actors.resources.task_records import TaskRecords
from actors.resources.tasks import check_function_allowed, pick_host, place_task
from actors.resources.usage import measure
from actors.resources.views import gpu_list, lease_models, usage_ratio
from actors.resources.worker_models import (
    WorkerCall,
    WorkerCallResult,
    WorkerList,
    WorkerRequest,
    WorkerStatus,
)
from actors.resources.worker_store import WorkerStore
from actors.resources.workers import WORKER_OWNER, WorkerPool
from cluster.base.constants import RESOURCES_ACTOR_NAME
from cluster.base.errors import DatabaseUnusable, ValidationFailed, WorkerFailed, WorkerNotFound
from cluster.base.nats_client import NatsClient
from cluster.base.settings import DeclaredGpu, ErrorBusSettings, ResourceSettings

__all__ = ["ResourcesActor", "get_or_create_resources"]

logger = logging.getLogger(__name__)

_MMA = TypeAdapter(MmaRequest)
_JSON = TypeAdapter(JsonValue)
_DECISIONS_KEPT = 100


class ResourcesActor:
    """Ray actor holding the scheduler state. Use :func:`get_or_create_resources`.

    When ``resources.sqlite3`` is not a usable database the actor still starts, without its
    poll and optimizer loops, and every call that needs the lease scheduler raises that
    :class:`~cluster.base.errors.DatabaseUnusable` (naming the file and the fix) rather than the
    constructor failing and Ray re-creating the actor.
    """

    def __init__(
        self,
        settings: ResourceSettings,
        db_path: str,
        hosts: dict[str, list[DeclaredGpu]],
        model_manager_host: str,
        errors: tuple[NatsClient, ErrorBusSettings] | None = None,
    ) -> None:
        self._settings = settings
        usable = True
        try:
            self._sched = LeaseScheduler(
                settings, SqliteLeaseStore(Path(db_path)), time.time, on_grant=self._on_grant
            )
            self._workers = WorkerPool(settings.workers, self._sched, WorkerStore(Path(db_path)))
        except DatabaseUnusable as exc:
            self._sched = cast(LeaseScheduler, Unusable(exc))
            self._workers = cast(WorkerPool, Unusable(exc))
            usable = False
        self._over: set[str] = set()  # leases whose over-use was reported (until back under)
        self._publisher: ErrorPublisher | None = None
        if errors is not None and usable:
            spool = Spool(
                Path(db_path).parent / "resources-error-spool.sqlite3",
                errors[1].spool_max_mb * 1024 * 1024,
            )
            self._publisher = ErrorPublisher(errors[0], errors[1], spool)
            self._publisher.start()
        opt = settings.optimizer
        self._thresholds = Thresholds(
            warning_ratio=opt.warning_ratio,
            critical_ratio=opt.critical_ratio,
            idle_timeout_s=opt.idle_timeout_s,
        )
        self._mma = ModelManagerLink(
            model_manager_host, self._best_available, lambda: self._thresholds, time.time
        )
        self.decisions: list[tuple[float, UnloadDecision, bool]] = []
        self._probes = {
            tag: HostProbeClient(get_or_create_host_probe(tag, table))
            for tag, table in hosts.items()
        }
        self._tasks = TaskRecords(
            settings.tasks_max_active, settings.tasks_kept, settings.task_retention_s, time.time
        )
        self._waiting: dict[str, tuple[str, TaskRequest]] = {}  # lease id -> task
        self._task_pids: dict[int, tuple[str, str]] = {}  # pid -> (task id, lease id)
        if not usable:
            self._loops: list[asyncio.Task[None]] = []
            return
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(self._poll_forever()), loop.create_task(self._optimize())]
        logger.info("resources: %d leases reloaded", len(self._sched.leases().granted))

    # Leases

    async def request_lease(self, request: LeaseRequest) -> LeaseStatus:
        return self._sched.request(request)

    async def release_lease(self, lease_id: str) -> LeaseStatus:
        return self._sched.release(lease_id)

    async def heartbeat(self, lease_id: str, used: bool) -> LeaseStatus:
        return self._sched.heartbeat(lease_id, used)

    async def get_lease(self, lease_id: str) -> LeaseStatus:
        return self._sched.get(lease_id)

    async def list_leases(self) -> LeaseList:
        return self._sched.leases().model_copy(update={"usage": self._usage()})

    def _usage(self) -> UsageReport:
        tolerance = self._settings.workers.usage_tolerance_mb
        pids = {pid: owner[1] for pid, owner in self._task_pids.items()}
        pids.update(self._workers.pid_leases())
        return measure(self._sched, pids, tolerance, self._workers.peaks)

    # Model workers

    async def start_worker(self, request: WorkerRequest) -> WorkerStatus:
        """The worker, ready or waiting for its lease; :class:`WorkerFailed` if it failed."""
        status = await self._workers.start(request)
        if status.state == "failed":
            raise WorkerFailed(status.worker_id, status.error or "the worker failed to start")
        return status

    async def list_workers(self) -> WorkerList:
        return self._workers.listing()

    async def get_worker(self, worker_id: str) -> WorkerStatus:
        return self._workers.get(worker_id)

    async def call_worker(self, worker_id: str, call: WorkerCall) -> WorkerCallResult:
        return await self._workers.call(worker_id, call)

    async def stop_worker(self, worker_id: str) -> WorkerStatus:
        return await self._workers.stop(worker_id)

    async def gpus(self) -> GpuList:
        return gpu_list(self._sched)

    async def refresh(self) -> GpuList:
        """Read every host now (instead of at the next poll) and return the GPU table."""
        await self._poll_once()
        return gpu_list(self._sched)

    # Optimizer

    async def thresholds(self) -> Thresholds:
        return self._thresholds

    async def set_thresholds(self, thresholds: Thresholds) -> Thresholds:
        self._thresholds = thresholds
        return thresholds

    async def model_manager(self, message: dict[str, Any]) -> dict[str, object]:
        """Answer a legacy ModelManagerAgent ``action`` frame (for the legacy gateway)."""
        try:
            request = _MMA.validate_python(message)
        except ValidationError as exc:
            raise ValidationFailed(f"not a ModelManagerAgent request: {exc}") from exc
        return self._mma.handle(request).wire()

    async def mma_models(self) -> list[LoadedModel]:
        """The models ModelManagerAgent last reported (``update_vram_status``,
        ``make_room_for_model``, or ``REPORT_MODEL_VRAM`` through the twin's port)."""
        return list(self._mma.models)

    # Tasks

    async def submit_task(self, request: TaskRequest) -> TaskStatus:
        check_function_allowed(request.function, self._settings.task_modules)
        self._tasks.check_room()
        task_id = uuid.uuid4().hex
        status = TaskStatus(
            task_id=task_id,
            state="waiting",
            function=request.function,
            lease_id=request.lease_id,
            host=None,
            submitted_at=time.time(),
        )
        if request.lease_id is not None:
            lease = self._sched.get(request.lease_id)
            if not isinstance(lease, LeaseGrant):
                raise ValidationFailed(f"lease '{request.lease_id}' is {lease.state}, not granted")
            self._check_load(lease.host)
            self._tasks[task_id] = status
            self._start(task_id, request, lease)
        elif request.vram_mb is not None:
            self._check_load(request.host)
            self._tasks[task_id] = status
            grant = self._sched.request(
                LeaseRequest(
                    owner=f"task:{task_id}",
                    vram_mb=self._workers.admission_mb(request.function, request.vram_mb),
                    host=request.host,
                    priority=request.priority,
                )
            )
            if isinstance(grant, LeaseGrant):
                self._start(task_id, request, grant, own_lease=True)
            else:  # started by _on_grant when the queue grants it
                self._waiting[grant.lease_id] = (task_id, request)
                self._tasks[task_id] = status.model_copy(update={"lease_id": grant.lease_id})
        else:
            host = self._check_load(request.host)
            self._tasks[task_id] = status
            self._start(task_id, request, None, host)
        return self._tasks[task_id]

    async def task_started(self, task_id: str, lease_id: str, pid: int) -> None:
        """A task under a lease runs in process ``pid`` (until it finishes)."""
        if task_id in self._tasks and self._tasks[task_id].finished_at is None:
            self._task_pids[pid] = (task_id, lease_id)
            self._tasks[task_id] = self._tasks[task_id].model_copy(update={"pid": pid})

    async def task_status(self, task_id: str) -> TaskStatus:
        """The task's record; raises :class:`TaskNotFound` (unknown, or aged out)."""
        return self._tasks[task_id]

    def _on_grant(self, lease: LeaseGrant) -> None:
        waiting = self._waiting.pop(lease.lease_id, None)
        if waiting is not None:
            self._start(waiting[0], waiting[1], lease, own_lease=True)
        elif lease.owner.startswith(WORKER_OWNER):
            asyncio.get_running_loop().create_task(self._workers.launch(lease))

    def _start(
        self,
        task_id: str,
        request: TaskRequest,
        lease: LeaseGrant | None,
        host: str | None = None,
        own_lease: bool = False,
    ) -> None:
        host = lease.host if lease is not None else host
        assert host is not None
        try:
            ref = place_task(
                request.function,
                request.args,
                request.kwargs,
                request.num_cpus,
                lease,
                host,
                task_id,
            )
        except Exception as exc:
            # Not left "waiting" forever (it would hold a place in tasks_max_active).
            self._tasks[task_id] = self._tasks[task_id].model_copy(
                update={"state": "failed", "error": str(exc)[-2000:], "finished_at": time.time()}
            )
            raise
        self._tasks[task_id] = self._tasks[task_id].model_copy(
            update={"state": "running", "host": host, "lease_id": lease and lease.lease_id}
        )
        release = lease.lease_id if lease is not None and own_lease else None
        asyncio.get_running_loop().create_task(self._follow(task_id, ref, release))

    async def _follow(self, task_id: str, ref: Any, own_lease: str | None) -> None:
        update: dict[str, object]
        try:
            update = {"state": "succeeded", "result": _JSON.validate_python(await ref)}
        except ValidationError:
            update = {"state": "failed", "error": "the task's result is not JSON"}
        except ray.exceptions.RayError as exc:
            update = {"state": "failed", "error": str(exc)[-2000:]}
        update["finished_at"] = time.time()
        self._tasks[task_id] = self._tasks[task_id].model_copy(update=update)
        self._task_pids = {p: o for p, o in self._task_pids.items() if o[0] != task_id}
        if own_lease is not None:
            self._sched.release(own_lease, "its task ended")

    def _check_load(self, host: str) -> str:
        settings = self._settings
        readings = list(self._sched.hosts.values())
        return pick_host(
            readings, host, settings.cpu_threshold_percent, settings.memory_threshold_percent
        )

    # Loops

    def _best_available(self, host: str) -> int:
        return max(
            (self._sched.available_mb(k) for k in self._sched.gpus if k[0] == host), default=0
        )

    async def _poll_once(self) -> None:
        timeout = self._settings.poll_interval_s * 5
        for tag, probe in self._probes.items():
            try:
                reading: HostReading = await asyncio.wait_for(probe.read(), timeout)
            except (TimeoutError, ray.exceptions.RayError) as exc:
                logger.warning("probe of host %s did not answer: %s", tag, exc)
                continue
            self._sched.observe(reading)
        self._workers.renew()
        for ended in self._sched.sweep():
            self._fail_waiting(ended.lease_id, ended.reason)
            await self._workers.lease_ended(ended.lease_id, ended.reason)
        report = self._usage()
        self._workers.learn_from(report)
        tasks = {lease: self._tasks[task].function for task, lease in self._task_pids.values()}
        for usage in report.leases:
            if usage.lease_id in tasks and usage.used_mb is not None:
                self._workers.learn(tasks[usage.lease_id], usage.used_mb)
        await self._report_over_use(report)

    async def _report_over_use(self, report: UsageReport) -> None:
        """One ErrorBus event per lease whose holder uses more than it leased (+ tolerance)."""
        over = [u for u in report.leases if u.over]
        new = [u for u in over if u.lease_id not in self._over]
        self._over = {u.lease_id for u in over}
        events = [
            ErrorEvent(
                host=u.host,
                agent="resources",
                error_type="vram_over_lease",
                severity="warning",
                message=f"{u.owner} uses {u.used_mb} MiB on {u.host} GPU {u.gpu_index}, "
                f"leased {u.leased_mb} MiB",
                details=u.model_dump(mode="json"),
            )
            for u in new
        ]
        for event in events:
            logger.warning("%s", event.message)
        if events and self._publisher is not None:
            try:
                await self._publisher.publish(events)
            except Exception:  # the spool is full or an event too large: logged, not fatal
                logger.exception("resources: over-use events not published")

    def _fail_waiting(self, lease_id: str, reason: str) -> None:
        """A task whose queued lease ended before it was granted fails (and stops counting)."""
        waiting = self._waiting.pop(lease_id, None)
        if waiting is not None:
            task_id = waiting[0]
            self._tasks[task_id] = self._tasks[task_id].model_copy(
                update={"state": "failed", "error": reason, "finished_at": time.time()}
            )

    async def _poll_forever(self) -> None:
        try:
            await self._workers.rediscover()
        except Exception:
            logger.exception("resources: finding the workers again failed")
        while True:
            try:
                await self._poll_once()
            except Exception:
                # Loop boundary: logged with its traceback, retried at the next interval.
                logger.exception("resources poll failed")
            await asyncio.sleep(self._settings.poll_interval_s)

    async def _optimize(self) -> None:
        while True:
            await asyncio.sleep(self._settings.optimizer.interval_s)
            now, thresholds = time.time(), self._thresholds
            models = lease_models(self._sched) + self._workers.idle_models(now)
            decisions = idle_sweep(models, thresholds, now)
            for key in list(self._sched.gpus):
                here = [m for m in models if (m.host, m.gpu_index) == key]
                decision = plan_for_gpu(usage_ratio(self._sched, key), here, thresholds, now)
                decisions += [decision] if decision else []
            for decision in {d.model_name + d.owner: d for d in decisions}.values():
                if decision.owner.startswith(WORKER_OWNER):
                    worker_id = decision.owner.removeprefix(WORKER_OWNER)
                    reason = f"unloaded by the VRAM optimizer ({decision.reason})"
                    with contextlib.suppress(WorkerNotFound):  # it ended meanwhile
                        await self._workers.stop(worker_id, reason)
                    self.decisions = [*self.decisions, (now, decision, True)][-_DECISIONS_KEPT:]
                    continue
                asked = decision.endpoint is not None and await asyncio.to_thread(
                    ask_to_unload,
                    decision.endpoint,
                    decision.model_name,
                    self._settings.optimizer.owner_timeout_s,
                )
                self.decisions = [*self.decisions, (now, decision, asked)][-_DECISIONS_KEPT:]


def get_or_create_resources(
    settings: ResourceSettings,
    db_path: Path,
    host_tag: str,
    hosts: dict[str, list[DeclaredGpu]],
    model_manager_host: str,
    errors: tuple[NatsClient, ErrorBusSettings] | None = None,
) -> Any:
    """Return the handle of the scheduler actor, creating it pinned to ``host_tag`` if absent.

    Args:
        settings: the ``resources`` section of Settings.
        db_path: SQLite file of the lease ledger, on the host carrying ``host_tag``.
        host_tag: the host the actor lives on.
        hosts: every host tag to read GPUs on, with its declared GPU table.
        model_manager_host: host tag of the legacy ModelManagerAgent's GPU.
        errors: NATS and the ErrorBus settings to publish over-use events with.
    """
    return (
        ray.remote(ResourcesActor)
        # A lease request retried after a crash at worst queues twice (until its TTL ends).
        .options(**singleton_options(RESOURCES_ACTOR_NAME, host_tag))
        .remote(settings, str(db_path), hosts, model_manager_host, errors)
    )
