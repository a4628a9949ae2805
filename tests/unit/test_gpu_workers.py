"""Model worker bookkeeping without Ray: admission by learned peak, placement, idle unloading,
measured VRAM per lease, the worker store surviving a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from actors.probe.models import GpuProcess, GpuReading, HostReading
from actors.resources.models import LeaseGrant, LeaseRequest
from actors.resources.scheduler import LeaseScheduler
from actors.resources.store import SqliteLeaseStore
from actors.resources.usage import measure
from actors.resources.worker_models import WorkerRequest, WorkerStatus
from actors.resources.worker_store import WorkerStore
from actors.resources.workers import WorkerPool, is_out_of_memory
from cluster.base.errors import ValidationFailed
from cluster.base.settings import ResourceSettings
from tests.unit._resources_helpers import FakeClock

WORKER = "deployments.resources.vram_worker:VramWorker"


def reading(host: str, total: int, used: int, processes: list[GpuProcess]) -> HostReading:
    gpu = GpuReading(
        index=0,
        uuid=f"GPU-{host}",
        name="test",
        total_mb=total,
        used_mb=used,
        free_mb=total - used,
        processes=processes,
        source="nvml-double",
    )
    return HostReading(
        host=host, taken_at=0, gpus=[gpu], cpu_percent=1, memory_percent=1, memory_available_mb=1
    )


def make(tmp_path: Path, clock: FakeClock) -> tuple[LeaseScheduler, WorkerPool]:
    settings = ResourceSettings.model_validate({"workers": {"idle_s": 10}})
    db = tmp_path / "resources.sqlite3"
    sched = LeaseScheduler(settings, SqliteLeaseStore(db), clock)
    sched.observe(reading("pc2", 12288, 310, []))
    sched.observe(reading("mainpc", 24564, 1830, []))
    return sched, WorkerPool(settings.workers, sched, WorkerStore(db), clock)


def ready(pool: WorkerPool, lease: LeaseGrant, kind: str, last_call_at: float) -> WorkerStatus:
    """A worker record as a started one looks (no Ray actor behind it here)."""
    worker_id = lease.owner.removeprefix("worker:")
    status = WorkerStatus(
        worker_id=worker_id,
        cls=WORKER,
        kind=kind,
        state="ready",
        request=WorkerRequest(cls=WORKER, vram_mb=lease.vram_mb, kind=kind),
        lease_id=lease.lease_id,
        vram_mb=lease.vram_mb,
        host=lease.host,
        gpu_index=lease.gpu_index,
        pid=1000 + len(pool.workers),
        created_at=last_call_at,
        last_call_at=last_call_at,
    )
    pool.workers[worker_id] = status
    return status


def grant(sched: LeaseScheduler, owner: str, vram: int, host: str) -> LeaseGrant:
    lease = sched.request(LeaseRequest(owner=owner, vram_mb=vram, host=host, max_wait_s=0))
    assert isinstance(lease, LeaseGrant)
    return lease


def test_admission_uses_the_learned_peak_plus_margin_once_known(tmp_path) -> None:
    clock = FakeClock()
    _, pool = make(tmp_path, clock)
    assert pool.admission_mb("llm", 2000) == 2000
    pool.learn("llm", 3000)
    assert pool.admission_mb("llm", 2000) == 3000 + 256
    assert pool.admission_mb("llm", 4000) == 4000 + 256
    # Persisted: a new pool on the same file knows it.
    _, again = make(tmp_path, clock)
    assert again.peaks == {"llm": 3000}


def test_only_allow_listed_classes_start(tmp_path) -> None:
    _, pool = make(tmp_path, FakeClock())
    with pytest.raises(ValidationFailed, match="resources.workers.classes"):
        pool.check_allowed(WorkerRequest(cls="os:System", vram_mb=1))
    pool.check_allowed(WorkerRequest(cls=WORKER, vram_mb=1))


def test_placement_prefers_the_gpu_running_the_same_kind(tmp_path) -> None:
    clock = FakeClock()
    sched, pool = make(tmp_path, clock)
    ready(pool, grant(sched, "worker:a", 1000, "pc2"), "tts", clock())
    chosen = asyncio.run(
        pool._choose(WorkerRequest(cls=WORKER, vram_mb=500, kind="tts"), 500, None)
    )
    assert chosen == ("pc2", 0)
    other = asyncio.run(pool._choose(WorkerRequest(cls=WORKER, vram_mb=500, kind="stt"), 500, None))
    assert other == ("any", "any")  # the scheduler's best fit decides
    avoid = asyncio.run(
        pool._choose(WorkerRequest(cls=WORKER, vram_mb=500, kind="stt"), 500, ("pc2", 0))
    )
    assert avoid == ("mainpc", 0)


def test_idle_workers_are_stopped_lru_first_until_the_new_one_fits(tmp_path) -> None:
    clock = FakeClock()
    sched, pool = make(tmp_path, clock)
    old = ready(pool, grant(sched, "worker:old", 4000, "pc2"), "a", clock())
    clock.advance(5)
    newer = ready(pool, grant(sched, "worker:newer", 4000, "pc2"), "b", clock())
    clock.advance(20)  # both idle now
    # pc2: 12288 - 310 - 512 - 8000 = 3466 available; 6000 needs one worker gone, the LRU one.
    request = WorkerRequest(cls=WORKER, vram_mb=6000, host="pc2")
    assert asyncio.run(pool._choose(request, 6000, None)) == ("pc2", 0)
    assert old.worker_id not in pool.workers and newer.worker_id in pool.workers
    assert "idle" in (pool.get(old.worker_id).error or "")
    assert sched.get(old.lease_id or "").state == "released"


def test_a_busy_worker_is_not_unloaded(tmp_path) -> None:
    clock = FakeClock()
    sched, pool = make(tmp_path, clock)
    ready(pool, grant(sched, "worker:busy", 8000, "pc2"), "a", clock())
    clock.advance(5)  # under idle_s
    request = WorkerRequest(cls=WORKER, vram_mb=6000, host="pc2")
    assert asyncio.run(pool._choose(request, 6000, None)) == ("pc2", "any")
    assert len(pool.workers) == 1


def test_measure_matches_processes_to_leases_and_reports_the_rest(tmp_path) -> None:
    clock = FakeClock()
    sched, pool = make(tmp_path, clock)
    worker = ready(pool, grant(sched, "worker:w", 2000, "pc2"), "llm", clock())
    processes = [GpuProcess(pid=worker.pid or 0, used_mb=2600), GpuProcess(pid=77, used_mb=None)]
    sched.observe(reading("pc2", 12288, 310 + 2600, processes))
    report = measure(sched, pool.pid_leases(), 256, pool.peaks)
    row = next(u for u in report.leases if u.lease_id == worker.lease_id)
    assert (row.leased_mb, row.used_mb, row.pids, row.over) == (2000, 2600, [worker.pid], True)
    assert [(u.host, u.pid, u.used_mb) for u in report.unexplained] == [("pc2", 77, None)]
    pool.learn_from(report)
    assert pool.peaks["llm"] == 2600


def test_the_worker_store_keeps_live_workers_only(tmp_path) -> None:
    clock = FakeClock()
    sched, pool = make(tmp_path, clock)
    worker = ready(pool, grant(sched, "worker:w", 2000, "pc2"), "llm", clock())
    store = WorkerStore(tmp_path / "resources.sqlite3")
    store.put(worker)
    assert [w.worker_id for w in store.load()] == [worker.worker_id]
    store.put(worker.model_copy(update={"state": "stopped"}))
    assert store.load() == []


def test_a_device_index_needs_a_host() -> None:
    with pytest.raises(ValueError, match="host must name a host tag"):
        WorkerRequest(cls=WORKER, vram_mb=1, gpu=0)
    assert WorkerRequest(cls=WORKER, vram_mb=1, gpu=0, host="pc2").kind_name == WORKER


def test_out_of_memory_errors_are_recognised() -> None:
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(type("OutOfMemoryError", (Exception,), {})("boom"))
    assert not is_out_of_memory(ValueError("bad input"))
