"""VRAM optimizer policy and the ModelManagerAgent handshake (the transports are integration)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter

from actors.resources.models import LeaseRequest
from actors.resources.optimizer import (
    LoadedModel,
    MmaRequest,
    ModelManagerLink,
    Thresholds,
    idle_sweep,
    plan_for_gpu,
)
from actors.resources.scheduler import LeaseScheduler
from actors.resources.store import SqliteLeaseStore
from actors.resources.views import gpu_list, lease_models, usage_ratio
from cluster.base.settings import ResourceSettings
from tests.unit._resources_helpers import RTX4090, FakeClock, host_reading, recorded

NOW = 1_700_000_000.0
T = Thresholds(warning_ratio=0.75, critical_ratio=0.9, idle_timeout_s=900)


def model(name: str, vram: int, idle_s: float) -> LoadedModel:
    return LoadedModel(
        model_name=name, owner="o", host="mainpc", gpu_index=0, vram_mb=vram,
        last_used_at=NOW - idle_s,
    )  # fmt: skip


MODELS = [model("phi-2", 3000, 2000), model("whisper", 5000, 1000), model("llama", 9000, 10)]


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.5, None), (0.8, ("phi-2", "warning")), (0.95, ("llama", "critical"))],
)
def test_policy_lru_idle_at_warning_and_largest_at_critical(ratio, expected) -> None:
    decision = plan_for_gpu(ratio, MODELS, T, NOW)
    assert (decision and (decision.model_name, decision.reason)) == expected


def test_warning_without_idle_models_unloads_nothing() -> None:
    assert plan_for_gpu(0.8, [model("busy", 1000, 10)], T, NOW) is None


def test_idle_sweep_lists_every_idle_model_least_recent_first() -> None:
    assert [d.model_name for d in idle_sweep(MODELS, T, NOW)] == ["phi-2", "whisper"]
    shorter = T.model_copy(update={"idle_timeout_s": 5})
    assert len(idle_sweep(MODELS, shorter, NOW)) == 3


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="below critical_ratio"):
        Thresholds(warning_ratio=0.9, critical_ratio=0.9, idle_timeout_s=1)


@pytest.fixture
def sched(tmp_path: Path) -> LeaseScheduler:
    clock = FakeClock(NOW)
    scheduler = LeaseScheduler(
        ResourceSettings(safety_margin_mb=512), SqliteLeaseStore(tmp_path / "l.db"), clock
    )
    scheduler.observe(host_reading("mainpc", recorded(RTX4090).read(), NOW))  # 22734 free
    return scheduler


def link(sched: LeaseScheduler) -> ModelManagerLink:
    def available(host: str) -> int:
        return max(sched.available_mb(k) for k in sched.gpus if k[0] == host)

    return ModelManagerLink("mainpc", available, lambda: T, lambda: NOW)


def answer(mma: ModelManagerLink, frame: dict[str, object]) -> dict[str, object]:
    return mma.handle(TypeAdapter(MmaRequest).validate_python(frame)).wire()


def test_model_manager_handshake_is_answered_from_the_ledger(sched: LeaseScheduler) -> None:
    mma = link(sched)
    register = {"action": "register_model_manager", "vram_budget_mb": 20000, "idle_timeout": 900}
    assert answer(mma, {**register, "request_id": "r1"}) == {"status": "ok"}
    assert mma.budget_mb == 20000
    assert answer(mma, {"action": "can_accommodate_model", "vram_mb": 20000}) == {
        "status": "ok",
        "can_accommodate": True,
    }
    sched.request(LeaseRequest(owner="other", vram_mb=15000))  # 22734-512-15000 = 7222 left
    assert (
        answer(mma, {"action": "can_accommodate_model", "vram_mb": 8000})["can_accommodate"]
        is False
    )
    loaded = {
        "phi-2": {"priority": "low", "vram_mb": 3000, "last_used": NOW - 2000},
        "whisper": {"priority": "high", "vram_mb": 5000, "last_used": NOW - 100},
    }
    room = answer(mma, {"action": "make_room_for_model", "vram_mb": 9000, "loaded_models": loaded})
    assert room == {"status": "ok", "unload_models": ["phi-2"], "success": True}
    impossible = answer(
        mma, {"action": "make_room_for_model", "vram_mb": 30000, "loaded_models": loaded}
    )
    assert impossible["success"] is False
    status = {
        "action": "update_vram_status", "current_vram_mb": 19000, "total_vram_mb": 24000,
        "loaded_models": loaded,
    }  # fmt: skip
    assert answer(mma, status) == {"status": "ok", "unload_models": ["phi-2"]}


def test_ledger_models_and_usage_feed_the_policy(sched: LeaseScheduler) -> None:
    sched.request(LeaseRequest(owner="mma", vram_mb=17000, model_name="llama"))
    ((key, _),) = sched.gpus.items()
    assert usage_ratio(sched, key) == pytest.approx((1830 + 17000) / 24564)
    (llama,) = lease_models(sched)
    ratio = usage_ratio(sched, key)  # 0.767: above warning, below critical
    assert plan_for_gpu(ratio, [llama], T, NOW) is None  # just used: not idle
    later = plan_for_gpu(ratio, [llama], T, NOW + 901)
    assert later is not None and (later.model_name, later.reason) == ("llama", "warning")
    table = gpu_list(sched)
    assert table.gpu_devices == 1 and table.gpus[0].unseen_mb == 17000
    assert table.gpus[0].available_mb == 22734 - 17000 - 512
