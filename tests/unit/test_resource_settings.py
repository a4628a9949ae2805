"""The ``resources`` section of Settings, its serve-config args and the Ray node's --num-gpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.base.errors import ConfigError
from cluster.base.settings import load_settings
from cluster.ops.serve_config import build_serve_config


def test_defaults(tmp_path: Path) -> None:
    resources = load_settings(data_dir=tmp_path).resources
    assert (resources.host, resources.safety_margin_mb, resources.declared_gpus) == ("pc2", 512, {})
    assert (resources.cpu_threshold_percent, resources.memory_threshold_percent) == (80.0, 80.0)
    assert resources.task_modules == ["deployments.resources.jobs"]
    optimizer = resources.optimizer
    assert (optimizer.warning_ratio, optimizer.critical_ratio, optimizer.idle_timeout_s) == (
        0.75,
        0.9,
        900.0,
    )


def test_environment_sets_nested_resource_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISYS_RESOURCES__SAFETY_MARGIN_MB", "1024")
    monkeypatch.setenv("AISYS_RESOURCES__OPTIMIZER__WARNING_RATIO", "0.6")
    monkeypatch.setenv(
        "AISYS_RESOURCES__DECLARED_GPUS",
        '{"pc2": [{"index": 0, "name": "3060", "total_mb": 12288}]}',
    )
    resources = load_settings(data_dir=tmp_path).resources
    assert resources.safety_margin_mb == 1024 and resources.optimizer.warning_ratio == 0.6
    assert resources.declared_gpus["pc2"][0].total_mb == 12288


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"resources": {"host": "laptop"}}, "resources.host is 'laptop'"),
        (
            {
                "resources": {
                    "declared_gpus": {"laptop": [{"index": 0, "name": "x", "total_mb": 1}]}
                }
            },
            "resources.declared_gpus.host is 'laptop'",
        ),
        (
            {
                "resources": {
                    "declared_gpus": {
                        "pc2": [
                            {"index": 0, "name": "a", "total_mb": 1},
                            {"index": 0, "name": "b", "total_mb": 1},
                        ]
                    }
                }
            },
            "repeats a device index",
        ),
        (
            {"resources": {"optimizer": {"warning_ratio": 0.9, "critical_ratio": 0.8}}},
            "must be below critical_ratio",
        ),
    ],
)
def test_invalid_resource_settings_name_the_fix(tmp_path: Path, overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(data_dir=tmp_path, **overrides)


def test_serve_config_pins_resources_to_pc2_and_passes_every_host_table(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        resources={"declared_gpus": {"pc2": [{"index": 0, "name": "3060", "total_mb": 12288}]}},
    )
    config = build_serve_config(settings)
    app = next(a for a in config["applications"] if a["name"] == "resources")
    assert app["route_prefix"] == "/resources"
    assert app["deployments"][0]["ray_actor_options"]["resources"] == {"pc2": 0.001}
    args = app["args"]
    assert args["host_tag"] == "pc2" and args["model_manager_host"] == "mainpc"
    assert args["hosts"]["mainpc"] == []
    assert args["hosts"]["pc2"] == [{"index": 0, "name": "3060", "total_mb": 12288, "uuid": None}]
