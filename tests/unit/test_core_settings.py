"""CoreOrchestrator's settings sections, their wiring into the Serve config, and its errors."""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from cluster.base.constants import CORE_GRPC_SERVICER
from cluster.base.errors import (
    AisysError,
    CircuitOpen,
    DispatchFailed,
    NoRoute,
    QueueFull,
    RequestCancelled,
    RequestNotFound,
    ServiceNotFound,
    UnknownHost,
)
from cluster.base.settings import DispatchRoute, SupervisionSettings, load_settings
from cluster.ops.serve_config import build_serve_config
from deployments.core.app import CoreAppArgs


def test_defaults_follow_the_legacy_coordinator_and_twin(tmp_path: Path) -> None:
    core = load_settings(data_dir=tmp_path).core
    coordinator = core.coordinator
    assert coordinator.queue_max_size == 100
    assert (coordinator.breaker_failure_threshold, coordinator.breaker_reset_s) == (3, 30.0)
    assert (coordinator.dispatch_timeout_s, coordinator.dispatch_attempts) == (5.0, 2)
    assert coordinator.while_open == "fail" and coordinator.max_in_flight == 4
    assert coordinator.interrupt_pause_s == 5.0 and coordinator.results_kept == 10_000
    assert {kind: route.capability for kind, route in coordinator.routes.items()} == {
        "text": "reasoning",
        "audio": "audio",
        "vision": "vision",
    }
    twin = core.twin
    assert (twin.sample_interval_s, twin.history_length, twin.probe_timeout_s) == (5.0, 60, 5.0)
    assert (twin.vram_deny_percent, twin.cpu_caution_percent, twin.ram_deny_percent) == (
        95.0,
        90.0,
        90.0,
    )
    supervision = core.supervision
    assert (supervision.sweep_interval_s, supervision.probe_timeout_s) == (30.0, 2.0)
    assert (supervision.probe_attempts, supervision.max_concurrent_probes) == (2, 128)


def test_a_probe_that_never_answers_must_end_within_the_sweep_interval(tmp_path: Path) -> None:
    assert SupervisionSettings(sweep_interval_s=1.0, probe_timeout_s=0.5).probe_attempts == 2
    with pytest.raises(ValidationError, match=r"probe_timeout_s x probe_attempts \(3s\)"):
        SupervisionSettings(sweep_interval_s=2.0, probe_timeout_s=1.0, probe_attempts=3)
    probes = load_settings(data_dir=tmp_path).observability.probes
    budget = probes.probe_timeout_s * probes.probe_attempts
    assert budget <= probes.sweep_interval_s / 2  # well within one period, as the hub needs


def test_environment_reaches_the_nested_sections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISYS_CORE__COORDINATOR__BREAKER_RESET_S", "2")
    monkeypatch.setenv("AISYS_CORE__TWIN__HISTORY_LENGTH", "5")
    core = load_settings(data_dir=tmp_path).core
    assert core.coordinator.breaker_reset_s == 2 and core.twin.history_length == 5


@pytest.mark.parametrize(
    "fields",
    [{}, {"capability": "x", "app": "a", "deployment": "d"}, {"app": "a"}, {"deployment": "d"}],
)
def test_a_route_names_a_capability_or_a_deployment(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="either a capability, or both app and deployment"):
        DispatchRoute.model_validate(fields)
    assert DispatchRoute(app="a", deployment="d").method == "handle_task"


def test_serve_config_carries_host_tags_declared_gpus_and_the_grpc_servicer(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        resources={"declared_gpus": {"pc2": [{"index": 0, "name": "RTX 3060", "total_mb": 12288}]}},
    )
    config = build_serve_config(settings)
    assert config["grpc_options"]["grpc_servicer_functions"] == [CORE_GRPC_SERVICER]
    core = next(app for app in config["applications"] if app["name"] == "core")
    args = CoreAppArgs.model_validate(core["args"])
    assert args.host_tags == ["mainpc", "pc2"]
    assert [gpu.name for gpu in args.declared_gpus["pc2"]] == ["RTX 3060"]
    assert args.settings == settings.core


def test_the_grpc_servicer_function_imports() -> None:
    module, _, name = CORE_GRPC_SERVICER.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


@pytest.mark.parametrize(
    ("error", "status", "text"),
    [
        (QueueFull(100), 429, "core: the request queue is full (100 queued)"),
        (RequestNotFound("req_1"), 404, "core: request 'req_1' is unknown"),
        (NoRoute("text", "capability 'reasoning'"), 503, "no healthy downstream for text"),
        (CircuitOpen("cot", 12.5), 503, "a trial request is allowed in 12.5s"),
        (DispatchFailed("cot", "no reply"), 502, "core: dispatch to 'cot' failed: no reply"),
        (RequestCancelled("req_1", "s1"), 409, "by an interrupt of session 's1'"),
        (ServiceNotFound("x", ["core"]), 404, "no Serve application 'x'; running: core"),
        (UnknownHost("pc3", ["mainpc"]), 404, "no host 'pc3' in the digital twin"),
    ],
)
def test_core_errors_pickle_and_map_to_their_status(
    error: AisysError, status: int, text: str
) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and copy.to_dict() == error.to_dict()
    assert error.http_status == status and text in str(error)
    assert error.to_dict()["component"] == "core"
