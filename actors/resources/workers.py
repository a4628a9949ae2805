"""Model workers: long-lived Ray actors of an allow-listed class, each under a VRAM lease.

A worker's lease asks for its declared VRAM, or ``max(declared, learned peak) + margin`` once
NVML has measured its kind (``resources.workers.learned_margin_mb``). Placement prefers a GPU
where a worker of the same kind already runs, then the scheduler's best fit; when nothing fits,
idle workers (no call for ``resources.workers.idle_s``) on the GPU that can then hold it are
stopped, least recently used first (the largest first among equals), before the request
queues. The worker is a detached, named Ray actor (:class:`WorkerHost`) asking for the lease's
``num_gpus`` share and host tag, with ``CUDA_VISIBLE_DEVICES`` set to the leased device; the
lease is renewed while the actor lives and released when it stops or dies (a blocking
``wait_stopped`` call on the actor fails when its process goes). Live workers are stored, so a
restarted scheduler finds each actor again by name or releases the lease of one that is gone.
A call failing with a CUDA out-of-memory error stops the worker, raises its kind's learned peak
to ``oom_growth`` times its lease and starts it once more, on another GPU with room if any.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import ray
from pydantic import JsonValue, TypeAdapter, ValidationError

from actors.probe.nvml import bind_host
from actors.resources.models import LeaseGrant, LeaseRequest, UsageReport
from actors.resources.optimizer import LoadedModel
from actors.resources.scheduler import GpuKey, LeaseScheduler
from actors.resources.tasks import host_has_gpus
from actors.resources.worker_models import (
    WorkerCall,
    WorkerCallResult,
    WorkerList,
    WorkerRequest,
    WorkerStatus,
)
from actors.resources.worker_store import WorkerStore
from cluster.base.constants import RAY_NAMESPACE
from cluster.base.errors import (
    LeaseNotFound,
    QuotaExceeded,
    ValidationFailed,
    WorkerFailed,
    WorkerNotFound,
)
from cluster.base.settings import WorkerSettings

__all__ = ["WORKER_OWNER", "WorkerHost", "WorkerPool", "is_out_of_memory"]

logger = logging.getLogger(__name__)

_JSON = TypeAdapter(JsonValue)
#: Prefix of a worker's lease owner (``worker:<id>``), also its optimizer owner.
WORKER_OWNER = "worker:"
_LIVE = ("starting", "ready")
_ENDED_KEPT = 200


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` (or the remote error it wraps) is a GPU out-of-memory error."""
    text = f"{type(error).__name__} {error}".lower()
    return "out of memory" in text or "outofmemory" in text


class WorkerHost:
    """The Ray actor a worker runs in: constructs the allow-listed class on the leased GPU."""

    def __init__(
        self,
        cls: str,
        args: list[JsonValue],
        kwargs: dict[str, JsonValue],
        gpu_index: int,
        host: str,
    ) -> None:
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_index)
        bind_host(host)
        module_name, _, name = cls.partition(":")
        self._obj = getattr(importlib.import_module(module_name), name)(*args, **kwargs)
        self._stopped = threading.Event()

    def pid(self) -> int:
        return os.getpid()

    def call(self, method: str, args: list[JsonValue], kwargs: dict[str, JsonValue]) -> Any:
        return getattr(self._obj, method)(*args, **kwargs)

    def wait_stopped(self) -> None:
        """Returns when :meth:`stop` is called; fails when the actor dies (the watch)."""
        self._stopped.wait()

    def stop(self) -> None:
        self._stopped.set()


class WorkerPool:
    """The workers of the scheduler actor (one event loop; the actor owns this).

    Args:
        settings: ``resources.workers``.
        sched: the lease ledger the workers' leases live in.
        store: live workers and learned peaks.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        sched: LeaseScheduler,
        store: WorkerStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._sched = sched
        self._store = store
        self._clock = clock
        self.workers: dict[str, WorkerStatus] = {}
        self._handles: dict[str, Any] = {}
        self.ended: OrderedDict[str, WorkerStatus] = OrderedDict()
        self.peaks: dict[str, int] = store.peaks()

    # Requests

    def check_allowed(self, request: WorkerRequest) -> None:
        if request.cls not in self._settings.classes:
            raise ValidationFailed(
                f"class {request.cls!r} is not an allowed worker class; allowed: "
                f"{sorted(self._settings.classes)} (resources.workers.classes)"
            )
        live = sum(1 for w in self.workers.values() if w.state not in ("stopped", "failed"))
        if live >= self._settings.max_workers:
            raise QuotaExceeded(
                f"{live} workers are alive",
                self._settings.max_workers,
                "AISYS_RESOURCES__WORKERS__MAX_WORKERS",
            )

    def admission_mb(self, kind: str, declared_mb: int) -> int:
        """``max(declared, learned) + margin`` once ``kind`` has a learned peak, else declared."""
        learned = self.peaks.get(kind)
        if learned is None:
            return declared_mb
        return max(declared_mb, learned) + self._settings.learned_margin_mb

    async def start(
        self,
        request: WorkerRequest,
        worker_id: str | None = None,
        restarts: int = 0,
        avoid: GpuKey | None = None,
    ) -> WorkerStatus:
        """Lease, place and construct a worker (or queue its lease; it starts when granted)."""
        self.check_allowed(request)
        now = self._clock()
        worker_id = worker_id or uuid.uuid4().hex[:16]
        need = self.admission_mb(request.kind_name, request.vram_mb)
        host, gpu = await self._choose(request, need, avoid)
        lease = self._sched.request(
            LeaseRequest(
                owner=f"{WORKER_OWNER}{worker_id}",
                vram_mb=need,
                host=host,
                gpu=gpu,
                priority=request.priority,
                max_wait_s=request.max_wait_s,
            )
        )
        status = WorkerStatus(
            worker_id=worker_id,
            cls=request.cls,
            kind=request.kind_name,
            state="waiting",
            request=request,
            lease_id=lease.lease_id,
            vram_mb=need,
            created_at=now,
            last_call_at=now,
            restarts=restarts,
        )
        self._put(status)
        if isinstance(lease, LeaseGrant):
            await self.launch(lease)
        return self.get(worker_id)

    async def _choose(
        self, request: WorkerRequest, need: int, avoid: GpuKey | None
    ) -> tuple[str, int | str]:
        """The GPU to ask for: one running the same kind, another than ``avoid`` with room,
        or one made room on by stopping idle workers; else the request's own choice."""
        sched = self._sched
        wanted = [
            k for k in sched.gpus if request.host in ("any", k[0]) and request.gpu in ("any", k[1])
        ]
        same = {
            (w.host, w.gpu_index)
            for w in self.workers.values()
            if w.kind == request.kind_name and w.state in _LIVE
        }
        fitting = [k for k in wanted if sched.available_mb(k) >= need]
        if fitting:
            preferred = [k for k in fitting if k in same] or [k for k in fitting if k != avoid]
            if preferred and (preferred[0] in same or avoid is not None):
                best: GpuKey = max(preferred, key=sched.available_mb)  # the most room
                return best
            return request.host, request.gpu  # the scheduler's best fit
        now = self._clock()
        for key in wanted:
            idle = sorted(
                (w for w in self.idle(now) if (w.host, w.gpu_index) == key),
                key=lambda w: (w.last_call_at, -w.vram_mb),
            )
            if sched.available_mb(key) + sum(w.vram_mb for w in idle) < need:
                continue
            for worker in idle:
                if sched.available_mb(key) >= need:
                    break
                await self.stop(worker.worker_id, f"unloaded (idle) to admit a {need} MiB worker")
            return key
        return request.host, request.gpu

    async def launch(self, lease: LeaseGrant) -> None:
        """Start the actor of the worker waiting for ``lease`` (now granted)."""
        worker = next((w for w in self.workers.values() if w.lease_id == lease.lease_id), None)
        if worker is None or worker.state != "waiting":
            return
        name = f"aisys-worker-{worker.worker_id}"
        self._put(
            worker.model_copy(
                update={
                    "state": "starting",
                    "host": lease.host,
                    "gpu_index": lease.gpu_index,
                    "actor_name": name,
                }
            )
        )
        handle: Any = None
        try:
            host_has_gpus(lease.host, lease.num_gpus)
            handle = (
                ray.remote(WorkerHost)
                .options(
                    name=name,
                    namespace=RAY_NAMESPACE,
                    lifetime="detached",
                    max_restarts=0,
                    max_concurrency=4,
                    num_cpus=0,
                    num_gpus=lease.num_gpus,
                    resources=dict(lease.resources),
                )
                .remote(
                    worker.cls,
                    worker.request.args,
                    worker.request.kwargs,
                    lease.gpu_index,
                    lease.host,
                )
            )
            pid = await asyncio.wait_for(handle.pid.remote(), self._settings.start_timeout_s)
        except Exception as exc:  # the class failed to construct, or no node can hold it
            self._handles[worker.worker_id] = handle  # killed by _end (a slow start too)
            await self._end(worker.worker_id, "failed", f"start failed: {exc}"[-2000:])
            return
        self._handles[worker.worker_id] = handle
        self._put(self.workers[worker.worker_id].model_copy(update={"state": "ready", "pid": pid}))
        asyncio.get_running_loop().create_task(self._watch(worker.worker_id, handle))

    async def _watch(self, worker_id: str, handle: Any) -> None:
        try:
            await handle.wait_stopped.remote()
        except ray.exceptions.RayError as exc:
            if (
                self.workers.get(worker_id, None) is not None
                and self._handles.get(worker_id) is handle
            ):
                await self._end(worker_id, "failed", f"the worker's actor died: {exc}"[-2000:])

    async def rediscover(self) -> None:
        """After a restart: find each stored worker's actor again, or release its lease."""
        stored = self._store.load()
        self.workers.update((worker.worker_id, worker) for worker in stored)
        for worker in stored:
            if worker.state == "waiting":
                continue  # its lease is still queued (or was granted while we were down)
            try:
                handle: Any = ray.get_actor(worker.actor_name or "", namespace=RAY_NAMESPACE)
                pid = await asyncio.wait_for(handle.pid.remote(), 10)
            except (ValueError, TimeoutError, ray.exceptions.RayError) as exc:
                await self._end(worker.worker_id, "failed", f"gone after a restart: {exc}"[-500:])
                continue
            self._handles[worker.worker_id] = handle
            self._put(worker.model_copy(update={"state": "ready", "pid": pid}))
            asyncio.get_running_loop().create_task(self._watch(worker.worker_id, handle))
            logger.info("worker %s found again (pid %s)", worker.worker_id, pid)
        for worker in list(self.workers.values()):  # granted while the actor was down
            lease = self._lease(worker)
            if worker.state == "waiting" and isinstance(lease, LeaseGrant):
                await self.launch(lease)

    # Calls

    def get(self, worker_id: str) -> WorkerStatus:
        worker = self.workers.get(worker_id) or self.ended.get(worker_id)
        if worker is None:
            raise WorkerNotFound(worker_id)
        return worker

    def listing(self) -> WorkerList:
        return WorkerList(workers=list(self.workers.values()))

    async def call(self, worker_id: str, call: WorkerCall) -> WorkerCallResult:
        worker = self.get(worker_id)
        allowed = self._settings.classes.get(worker.cls, [])
        if call.method not in allowed:
            raise ValidationFailed(
                f"method {call.method!r} of {worker.cls} is not allowed; allowed: {allowed}"
            )
        handle = self._handles.get(worker_id)
        if worker.state != "ready" or handle is None:
            raise WorkerFailed(worker_id, f"the worker is {worker.state}, not ready")
        self._put(worker.model_copy(update={"last_call_at": self._clock()}))
        try:
            raw = await asyncio.wait_for(
                handle.call.remote(call.method, call.args, call.kwargs),
                self._settings.call_timeout_s,
            )
        except TimeoutError as exc:
            raise WorkerFailed(worker_id, f"{call.method} took over the call timeout") from exc
        except ray.exceptions.RayError as exc:
            if is_out_of_memory(exc):
                await self._restart_after_oom(worker_id, exc)
            raise WorkerFailed(worker_id, f"{call.method} failed: {exc}"[-2000:]) from exc
        try:
            result = _JSON.validate_python(raw)
        except ValidationError as exc:
            raise WorkerFailed(worker_id, f"{call.method} returned no JSON") from exc
        if len(_JSON.dump_json(result)) > self._settings.call_max_bytes:
            raise WorkerFailed(worker_id, f"{call.method}'s result is over call_max_bytes")
        return WorkerCallResult(worker_id=worker_id, method=call.method, result=result)

    async def _restart_after_oom(self, worker_id: str, exc: BaseException) -> None:
        worker = self.workers[worker_id]
        peak = math.ceil(worker.vram_mb * self._settings.oom_growth)
        self.learn(worker.kind, peak)
        await self._end(worker_id, "failed", f"out of GPU memory: {exc}"[-1000:])
        if worker.restarts >= 1:
            return
        avoid = None
        if worker.host is not None and worker.gpu_index is not None:
            avoid = (worker.host, worker.gpu_index)
        request = worker.request.model_copy(update={"host": "any", "gpu": "any"})
        try:
            await self.start(
                request, worker_id=worker_id, restarts=worker.restarts + 1, avoid=avoid
            )
        except Exception:
            logger.exception("worker %s: the restart after an OOM failed", worker_id)

    async def stop(self, worker_id: str, reason: str = "stopped by request") -> WorkerStatus:
        if worker_id not in self.workers:
            raise WorkerNotFound(worker_id)
        return await self._end(worker_id, "stopped", reason)

    async def _end(self, worker_id: str, state: str, reason: str) -> WorkerStatus:
        worker = self.workers[worker_id]
        handle = self._handles.pop(worker_id, None)
        if handle is not None:
            try:
                ray.kill(handle, no_restart=True)
            except ray.exceptions.RayError as exc:
                logger.warning("worker %s: kill failed: %s", worker_id, exc)
        if worker.lease_id is not None:
            try:
                self._sched.release(worker.lease_id, f"its worker ended: {reason}"[:500])
            except LeaseNotFound:
                pass  # already expired or released
        ended = worker.model_copy(update={"state": state, "error": reason})
        self._put(ended)
        logger.info("worker %s %s: %s", worker_id, state, reason)
        return ended

    # The scheduler actor's loops

    def renew(self) -> None:
        """Heartbeat the leases of live workers (their TTL runs while the actor lives)."""
        for worker in self.workers.values():
            if worker.state in _LIVE and worker.lease_id is not None:
                try:
                    self._sched.heartbeat(worker.lease_id)
                except LeaseNotFound:
                    continue

    async def lease_ended(self, lease_id: str, reason: str) -> None:
        """A lease expired or was released from outside: its worker stops."""
        for worker in list(self.workers.values()):
            if worker.lease_id == lease_id and worker.state not in ("stopped", "failed"):
                await self._end(worker.worker_id, "stopped", f"its lease ended: {reason}")

    def pid_leases(self) -> dict[int, str]:
        return {
            w.pid: w.lease_id
            for w in self.workers.values()
            if w.pid is not None and w.lease_id is not None and w.state in _LIVE
        }

    def learn_from(self, report: UsageReport) -> None:
        """Raise each worker kind's learned peak to what NVML measured for its lease."""
        by_lease = {w.lease_id: w for w in self.workers.values() if w.state in _LIVE}
        for usage in report.leases:
            worker = by_lease.get(usage.lease_id)
            if worker is not None and usage.used_mb is not None:
                self.learn(worker.kind, usage.used_mb)

    def idle(self, now: float) -> list[WorkerStatus]:
        return [
            w
            for w in self.workers.values()
            if w.state == "ready" and now - w.last_call_at > self._settings.idle_s
        ]

    def idle_models(self, now: float) -> list[LoadedModel]:
        """Idle workers as the VRAM optimizer's unload candidates."""
        return [
            LoadedModel(
                model_name=w.kind,
                owner=f"{WORKER_OWNER}{w.worker_id}",
                host=w.host or "",
                gpu_index=w.gpu_index,
                vram_mb=w.vram_mb,
                last_used_at=w.last_call_at,
            )
            for w in self.idle(now)
        ]

    def learn(self, kind: str, peak_mb: int) -> None:
        """Raise ``kind``'s learned peak to ``peak_mb`` (stored) if it is higher."""
        if peak_mb > self.peaks.get(kind, 0):
            self.peaks[kind] = peak_mb
            self._store.set_peak(kind, peak_mb, self._clock())

    def _lease(self, worker: WorkerStatus) -> object:
        if worker.lease_id is None:
            return None
        try:
            return self._sched.get(worker.lease_id)
        except LeaseNotFound:
            return None

    def _put(self, status: WorkerStatus) -> None:
        self._store.put(status)
        if status.state in ("stopped", "failed"):
            self.workers.pop(status.worker_id, None)
            self.ended[status.worker_id] = status
            while len(self.ended) > _ENDED_KEPT:
                self.ended.popitem(last=False)
        else:
            self.ended.pop(status.worker_id, None)
            self.workers[status.worker_id] = status
