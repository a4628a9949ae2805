"""LeaseScheduler with recorded RTX 4090 / RTX 3060 readings, a fake clock and a real SQLite."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from actors.probe.models import GpuSnapshot
from actors.resources.models import LeaseGrant, LeaseRequest, QueuedLease
from actors.resources.scheduler import LeaseScheduler
from actors.resources.store import SqliteLeaseStore
from cluster.base.errors import LeaseNotFound, LeaseUnavailable
from cluster.base.settings import ResourceSettings
from tests.unit._resources_helpers import RTX3060, RTX4090, FakeClock, host_reading, recorded

MARGIN = 512


def make(tmp_path: Path, clock: FakeClock, **settings: object) -> LeaseScheduler:
    values: dict[str, object] = {"safety_margin_mb": MARGIN, "aging_per_s": 0.05}
    values.update(settings)
    store = SqliteLeaseStore(tmp_path / "leases.sqlite3")
    return LeaseScheduler(ResourceSettings.model_validate(values), store, clock)


def observe(sched: LeaseScheduler, host: str, snapshot: GpuSnapshot, clock: FakeClock) -> None:
    sched.observe(host_reading(host, snapshot, clock()))


def lease(vram: int, **fields: object) -> LeaseRequest:
    return LeaseRequest.model_validate({"owner": "test", "vram_mb": vram, **fields})


@pytest.mark.parametrize(("path", "host"), [(RTX4090, "mainpc"), (RTX3060, "pc2")])
@pytest.mark.parametrize("seed", range(6))
def test_random_stream_never_grants_beyond_free_minus_margin(tmp_path, path, host, seed) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    sched = make(tmp_path, clock)
    snapshot = recorded(path).read()
    observe(sched, host, snapshot, clock)
    gpu = snapshot.gpus[0]
    key = (host, gpu.index)
    budget = gpu.free_mb - MARGIN  # the readings stay the same: nothing allocates
    live: list[str] = []
    ever_granted: set[str] = set()
    queued_total = 0
    for _ in range(300):
        if live and rng.random() < 0.45:
            granted = [g.lease_id for g in sched.leases().granted]
            pool = granted if granted and rng.random() < 0.8 else live
            lease_id = rng.choice(pool)
            live.remove(lease_id)
            sched.release(lease_id)
        else:
            result = sched.request(lease(rng.randint(100, gpu.total_mb // 3), priority="medium"))
            live.append(result.lease_id)
            queued_total += isinstance(result, QueuedLease)
        assert sched.leased_mb(key) <= budget
        ever_granted |= {g.lease_id for g in sched.leases().granted}
        queue = sched.leases().queued
        if queue:  # the head waits only because it does not fit
            assert queue[0].request.vram_mb > sched.available_mb(key)
        clock.advance(1.0)
    assert len(ever_granted) > 40 and queued_total > 10  # the stream exercised both paths
    for lease_id in live:
        sched.release(lease_id)
    assert sched.leases() == sched.leases().model_copy(update={"granted": [], "queued": []})
    assert sched.available_mb(key) == budget


def test_a_lease_visible_in_nvml_is_not_counted_twice(tmp_path) -> None:
    clock = FakeClock()
    sched = make(tmp_path, clock)
    probe = recorded(RTX3060)
    observe(sched, "pc2", probe.read(), clock)  # used 310, free 11978
    key = ("pc2", 0)
    assert sched.available_mb(key) == 11978 - MARGIN
    granted = sched.request(lease(4000))
    assert isinstance(granted, LeaseGrant) and granted.num_gpus == pytest.approx(0.3256)
    assert sched.unseen_mb(key) == 4000
    assert sched.available_mb(key) == 11978 - 4000 - MARGIN
    observe(sched, "pc2", probe.read(), clock)  # the holder allocated: used 4410, free 7878
    assert sched.unseen_mb(key) == 0
    assert sched.available_mb(key) == 7878 - MARGIN


def test_other_processes_growing_shrink_what_can_be_leased(tmp_path) -> None:
    clock = FakeClock()
    sched = make(tmp_path, clock)
    probe = recorded(RTX4090)
    observe(sched, "mainpc", probe.read(), clock)  # used 1830
    sched.request(lease(2000))
    observe(sched, "mainpc", probe.read(), clock)  # ModelManagerAgent grew by 7200: used 9030
    # 9030 - 1830 = 7200 grew, which covers the 2000 lease; free already shows all of it.
    assert sched.available_mb(("mainpc", 0)) == 15534 - MARGIN


def test_any_is_best_fit_and_honours_host_preference(tmp_path) -> None:
    clock = FakeClock()
    sched = make(tmp_path, clock)
    observe(sched, "mainpc", recorded(RTX4090).read(), clock)
    observe(sched, "pc2", recorded(RTX3060).read(), clock)
    small = sched.request(lease(3000))
    assert isinstance(small, LeaseGrant) and small.host == "pc2"  # tightest fit
    preferred = sched.request(lease(3000, prefer_hosts=["mainpc"]))
    assert isinstance(preferred, LeaseGrant) and preferred.host == "mainpc"
    assert preferred.resources == {"mainpc": 0.001}
    big = sched.request(lease(16000))
    assert isinstance(big, LeaseGrant) and big.host == "mainpc"
    with pytest.raises(LeaseUnavailable, match="can hold 12000 MiB"):
        sched.request(lease(12000, host="pc2"))


def test_no_gpu_visible_refuses_with_the_reason(tmp_path) -> None:
    clock = FakeClock()
    sched = make(tmp_path, clock)
    observe(sched, "pc2", GpuSnapshot(error="NVML: NVML Shared Library Not Found"), clock)
    with pytest.raises(LeaseUnavailable, match="no NVIDIA devices visible.*Library Not Found"):
        sched.request(lease(100))


def test_exclusive_lease_takes_the_whole_gpu(tmp_path) -> None:
    clock = FakeClock()
    sched = make(tmp_path, clock)
    observe(sched, "pc2", recorded(RTX3060).read(), clock)
    first = sched.request(lease(1000))
    exclusive = sched.request(lease(1000, exclusive=True))
    assert isinstance(exclusive, QueuedLease)  # another lease is on the GPU
    sched.release(first.lease_id)
    granted = sched.get(exclusive.lease_id)
    assert isinstance(granted, LeaseGrant) and granted.num_gpus == 1.0
    assert sched.available_mb(("pc2", 0)) == 0
    assert isinstance(sched.request(lease(10)), QueuedLease)


def test_no_wait_requests_are_refused_and_waits_time_out(tmp_path) -> None:
    clock = FakeClock()
    sched = make(tmp_path, clock)
    observe(sched, "pc2", recorded(RTX3060).read(), clock)
    sched.request(lease(11000))
    with pytest.raises(LeaseUnavailable, match="max_wait_s=0"):
        sched.request(lease(2000, max_wait_s=0))
    waiting = sched.request(lease(2000, max_wait_s=30))
    clock.advance(31)
    (ended,) = sched.sweep()
    assert (ended.lease_id, ended.state) == (waiting.lease_id, "timed_out")
    assert sched.get(waiting.lease_id).state == "timed_out"


def test_leases_expire_without_heartbeats_and_the_queue_moves(tmp_path) -> None:
    clock = FakeClock()
    sched = make(tmp_path, clock)
    observe(sched, "pc2", recorded(RTX3060).read(), clock)
    held = sched.request(lease(8000, ttl_s=10))
    waiting = sched.request(lease(8000))
    assert isinstance(waiting, QueuedLease) and waiting.position == 1
    clock.advance(8)
    sched.heartbeat(held.lease_id)
    clock.advance(8)  # 16 s after grant, 8 s after the heartbeat
    assert sched.sweep() == []
    clock.advance(3)
    (ended,) = sched.sweep()
    assert (ended.lease_id, ended.state, ended.reason) == (
        held.lease_id,
        "expired",
        "no heartbeat within 10 s",
    )
    assert isinstance(sched.get(waiting.lease_id), LeaseGrant)
    with pytest.raises(LeaseNotFound):
        sched.heartbeat(held.lease_id)


@pytest.mark.parametrize(("aging", "expect_granted"), [(0.05, True), (0.0, False)])
def test_aging_lets_low_priority_through_steady_high_load(tmp_path, aging, expect_granted) -> None:
    clock = FakeClock()
    sched = make(tmp_path, clock, aging_per_s=aging)
    observe(sched, "pc2", recorded(RTX3060).read(), clock)  # 11466 MiB can be leased
    for _ in range(8):  # five fit, three wait: the high-priority backlog never empties
        sched.request(lease(2000, priority="high"))
    low = sched.request(lease(3000, priority="low"))
    assert isinstance(low, QueuedLease)
    for _ in range(120):  # ten minutes: every 5 s one high lease ends and a new one arrives
        clock.advance(5)
        oldest_high = next(g for g in sched.leases().granted if g.priority == 20)
        sched.release(oldest_high.lease_id)
        sched.request(lease(2000, priority="high"))
        if isinstance(sched.get(low.lease_id), LeaseGrant):
            break
    assert isinstance(sched.get(low.lease_id), LeaseGrant) is expect_granted
    assert sched.leased_mb(("pc2", 0)) <= 11978 - MARGIN


def test_every_grant_and_end_survives_a_restart(tmp_path) -> None:
    clock = FakeClock()
    sched = make(tmp_path, clock)
    observe(sched, "pc2", recorded(RTX3060).read(), clock)
    kept = sched.request(lease(5000, model_name="whisper"))
    released = sched.request(lease(5000))
    queued = sched.request(lease(5000, priority="low"))
    sched.release(released.lease_id)
    assert isinstance(sched.get(queued.lease_id), LeaseGrant)
    waiting = sched.request(lease(3000))
    assert isinstance(waiting, QueuedLease)

    again = make(tmp_path, clock)
    assert {g.lease_id for g in again.leases().granted} == {kept.lease_id, queued.lease_id}
    assert [q.lease_id for q in again.leases().queued] == [waiting.lease_id]
    assert again.get(kept.lease_id) == kept
    # The base usage is unknown after a restart: the first reading counts the leases in full.
    observe(again, "pc2", recorded(RTX3060).read(), clock)
    assert again.available_mb(("pc2", 0)) == 11978 - 10000 - MARGIN
    store = SqliteLeaseStore(tmp_path / "leases.sqlite3")
    assert store.history(released.lease_id) == ["granted", "released"]
    assert store.history(queued.lease_id) == ["queued", "granted"]


def test_release_of_unknown_lease_is_not_found(tmp_path) -> None:
    sched = make(tmp_path, FakeClock())
    with pytest.raises(LeaseNotFound, match="'nope'"):
        sched.release("nope")


def test_lease_request_validation_names_the_fix() -> None:
    with pytest.raises(ValueError, match="host must name a host tag"):
        lease(100, gpu=0)
    with pytest.raises(ValueError, match="must start with"):
        lease(100, model_name="m", unload_endpoint={"protocol": "zmq", "address": "http://x"})
    assert lease(100, priority="low").priority == 0
