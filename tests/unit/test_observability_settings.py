"""ObservabilityHub settings, its serve-config entry and its package surface."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from cluster.base.errors import ConfigError
from cluster.base.settings import (
    AlertRuleSpec,
    AnomalySettings,
    ObservabilitySettings,
    load_settings,
)
from cluster.ops.serve_config import PIN_FRACTION, build_serve_config
from deployments.observability.app import ObservabilityAppArgs


def test_defaults_pin_the_hub_to_pc2_with_the_legacy_retentions() -> None:
    settings = ObservabilitySettings()
    assert settings.host == "pc2"
    assert (settings.perflog.metrics_retention_days, settings.perflog.usage_retention_days) == (
        30.0,
        7.0,
    )
    assert [r.name for r in settings.alerting.rules] == [
        "HostDown",
        "AgentDown",
        "GpuVramPressure",
        "DiskNearlyFull",
        "GpuTemperatureHigh",
        "ErrorRateSpike",
        "LeaseWaitingTooLong",
        "BreakerOpen",
        "LeaseOverUse",
    ]
    (inhibit,) = settings.alerting.inhibit_rules
    assert (inhibit.source_matchers, inhibit.equal) == ({"alertname": "HostDown"}, ["host"])
    assert settings.anomaly.breach_thresholds["aisys_gpu_memory_used_ratio"] == 0.95


def test_the_hub_must_run_on_a_known_host(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="observability.host is 'nowhere'"):
        load_settings(data_dir=tmp_path, observability={"host": "nowhere"})


def test_rule_names_are_distinct_and_plain() -> None:
    rule = {"name": "A", "metric": "x", "threshold": 1}
    with pytest.raises(ValueError, match="repeats a rule name"):
        ObservabilitySettings.model_validate({"alerting": {"rules": [rule, rule]}})
    with pytest.raises(ValueError, match="name"):
        AlertRuleSpec.model_validate({**rule, "name": "has space"})


def test_serve_config_pins_the_app_to_its_host_and_passes_valid_args(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        observability={"host": "mainpc", "sample_interval_s": 2.5},
        resources={"declared_gpus": {"pc2": [{"index": 0, "name": "g", "total_mb": 1024}]}},
    )
    config = build_serve_config(settings)
    (app,) = [a for a in config["applications"] if a["name"] == "observability"]
    assert app["route_prefix"] == "/observability"
    (deployment,) = app["deployments"]
    assert deployment["name"] == "ObservabilityHub"
    assert deployment["ray_actor_options"]["resources"] == {"mainpc": PIN_FRACTION}
    args = ObservabilityAppArgs.model_validate(app["args"])
    assert args.settings.sample_interval_s == 2.5
    assert sorted(args.hosts) == ["mainpc", "pc2"]
    assert [gpu.total_mb for gpu in args.hosts["pc2"]] == [1024]
    assert args.registry_host_tag == "mainpc"


def test_package_surface_is_pinned() -> None:
    module = importlib.import_module("deployments.observability")
    assert sorted(module.__all__) == [
        "AlertEngine",
        "AnomalyBank",
        "EwmaDetector",
        "HubCore",
        "HubSources",
        "PerfLog",
        "TrendPredictor",
        "register_collectors",
    ]
    for name in module.__all__:
        assert hasattr(module, name)


def test_rules_on_derived_values_need_a_detector_or_a_breach_threshold() -> None:
    score = {"name": "Odd", "metric": "aisys_x", "source": "anomaly_score", "threshold": 5}
    with pytest.raises(ValueError, match=r"no detector watches.*observability\.anomaly\.metrics"):
        ObservabilitySettings.model_validate({"alerting": {"rules": [score]}})
    eta = {**score, "name": "Soon", "source": "breach_eta_seconds", "op": "<", "threshold": 600}
    with pytest.raises(ValueError, match=r"no breach threshold.*anomaly\.breach_thresholds"):
        ObservabilitySettings.model_validate(
            {"alerting": {"rules": [eta]}, "anomaly": {"metrics": ["aisys_x"]}}
        )
    watched = ObservabilitySettings.model_validate(
        {
            "alerting": {"rules": [score, eta]},
            "anomaly": {"metrics": ["aisys_x"], "breach_thresholds": {"aisys_x": 0.9}},
        }
    )
    assert [r.name for r in watched.alerting.rules] == ["Odd", "Soon"]
    # A breach threshold alone gets the metric a detector too.
    anomaly = AnomalySettings(metrics=[], breach_thresholds={"aisys_x": 0.9})
    assert anomaly.rule_source_problem(AlertRuleSpec.model_validate(score)) is None


def test_alerting_timers_default_to_alertmanagers() -> None:
    alerting = ObservabilitySettings().alerting
    assert (alerting.group_wait_s, alerting.group_interval_s) == (30.0, 300.0)
    assert alerting.history_retention_days == 30.0
    with pytest.raises(ValueError, match="group_wait_s"):
        ObservabilitySettings.model_validate({"alerting": {"group_wait_s": -1}})
