"""GET_VRAM_STATUS's ``loaded_models``: the models held under leases and those ModelManagerAgent
reported, field by field."""

from __future__ import annotations

from actors.resources.models import LeaseGrant, LeaseList
from actors.resources.optimizer import MMA_OWNER, LoadedModel
from legacy_gateway._ports import Services
from legacy_gateway.system_ports import VramOptimizerPort


def _grant(lease_id: str, host: str, model: str | None) -> LeaseGrant:
    return LeaseGrant(
        lease_id=lease_id,
        owner="ModelManagerAgent",
        vram_mb=4200,
        priority=10,
        exclusive=False,
        host=host,
        gpu_index=0,
        gpu_uuid="GPU-0",
        num_gpus=0.25,
        resources={host: 0.001},
        requested_at=1752577200.0,
        granted_at=1752577200.0,
        ttl_s=60.0,
        expires_at=1752577260.0,
        last_used_at=1752577230.0,
        model_name=model,
    )


def test_loaded_models_are_the_leased_models_in_mma_shape() -> None:
    port = VramOptimizerPort(Services(), "mainpc", "pc2")
    leases = LeaseList(
        granted=[
            _grant("l1", "pc2", "phi-2"),
            _grant("l2", "mainpc", "whisper"),
            _grant("l3", "mainpc", None),  # a lease without a model is not a loaded model
        ],
        queued=[],
    )
    assert port._models(leases, []) == {
        "phi-2": {
            "device": "PC2",
            "vram_usage_mb": 4200,
            "last_used": 1752577230.0,
            "owner": "ModelManagerAgent",
            "host": "pc2",
            "gpu_index": 0,
        },
        "whisper": {
            "device": "MainPC",
            "vram_usage_mb": 4200,
            "last_used": 1752577230.0,
            "owner": "ModelManagerAgent",
            "host": "mainpc",
            "gpu_index": 0,
        },
    }


def _reported(name: str, vram_mb: int) -> LoadedModel:
    return LoadedModel(
        model_name=name,
        owner=MMA_OWNER,
        host="mainpc",
        gpu_index=None,
        vram_mb=vram_mb,
        last_used_at=1752577100.0,
    )


def test_models_mma_reported_are_listed_after_the_leased_ones() -> None:
    port = VramOptimizerPort(Services(), "mainpc", "pc2")
    leases = LeaseList(granted=[_grant("l1", "pc2", "phi-2")], queued=[])
    models = port._models(leases, [_reported("llama-3", 8000), _reported("phi-2", 1)])
    assert list(models) == ["phi-2", "llama-3"]
    assert models["llama-3"] == {
        "device": "MainPC",
        "vram_usage_mb": 8000,
        "last_used": 1752577100.0,
        "owner": "ModelManagerAgent",
        "host": "mainpc",
        "gpu_index": None,
    }
    # A name both leased and reported is shown once, as the lease (which knows its GPU).
    assert models["phi-2"] == port._models(leases, [])["phi-2"]
