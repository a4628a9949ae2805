"""``cluster.yaml`` (the ``ray up`` config): Ray's own schema accepts it, and each host's
``ray start`` carries that host's tag, aisys's ports and the shared token file."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml

from cluster.settings import PortSettings, Settings, load_settings

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"
RAY_SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CLUSTER_YAML.read_text())
    return loaded


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(RAY_SCHEMA.read_text())
    return loaded


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path)


def _ray_start(commands: list[str]) -> dict[str, str]:
    """The ``--flag=value`` options of the one ``ray start`` among ``commands``."""
    starts = [c for c in commands if "ray start" in c]
    assert len(starts) == 1, f"expected one `ray start` command, got {starts}"
    # The token is exported in the same shell line; the `ray start` call follows the last ';'.
    words = shlex.split(starts[0].rsplit(";", 1)[-1])
    assert words[0].endswith("ray") and words[1] == "start", words
    options: dict[str, str] = {}
    for word in words[2:]:
        name, _, value = word.partition("=")
        options[name] = value
    return options


def _token_file_read_by(commands: list[str]) -> str:
    start = next(c for c in commands if "ray start" in c)
    assert "export RAY_AUTH_MODE=token " in start
    prefix = 'RAY_AUTH_TOKEN="$(cat '
    assert prefix in start, "the token must be read from a file, never written inline"
    return start.split(prefix, 1)[1].split(")", 1)[0]


def test_rays_shipped_schema_accepts_the_file(
    config: dict[str, Any], schema: dict[str, Any]
) -> None:
    jsonschema.validate(config, schema)


def test_ray_up_preparation_keeps_exactly_one_worker(
    config: dict[str, Any], schema: dict[str, Any]
) -> None:
    # What `ray up` runs before validating: the local provider's defaults and node types.
    from ray.autoscaler._private.util import prepare_config

    prepared = prepare_config(config)
    jsonschema.validate(prepared, schema)
    assert len(config["provider"]["worker_ips"]) == 1
    (node_type,) = prepared["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == 1
    assert prepared["max_workers"] == 1


def test_head_start_carries_the_mainpc_tag_and_aisys_ports(
    config: dict[str, Any], settings: Settings
) -> None:
    options = _ray_start(config["head_start_ray_commands"])
    head = settings.hosts[settings.head_host]
    ports = PortSettings()
    assert "--head" in options
    assert json.loads(options["--resources"]) == {head.tag: 1} == {"mainpc": 1}
    assert options["--labels"] == f"host={head.tag}"
    assert options["--port"] == str(ports.gcs) == "6380"
    assert options["--dashboard-port"] == str(ports.dashboard) == "8265"
    assert options["--dashboard-host"] == "0.0.0.0"
    assert options["--autoscaling-config"] == "~/ray_bootstrap_config.yaml"
    assert options["--node-ip-address"] == config["provider"]["head_ip"]


def test_worker_start_joins_the_head_gcs_with_the_pc2_tag(
    config: dict[str, Any], settings: Settings
) -> None:
    options = _ray_start(config["worker_start_ray_commands"])
    (worker,) = (p for p in settings.hosts.values() if p.role == "worker")
    assert "--head" not in options
    assert json.loads(options["--resources"]) == {worker.tag: 1} == {"pc2": 1}
    assert options["--labels"] == f"host={worker.tag}"
    assert options["--address"] == f"$RAY_HEAD_IP:{PortSettings().gcs}"
    assert options["--node-ip-address"] == config["provider"]["worker_ips"][0]


def test_both_hosts_read_the_token_file_that_file_mounts_copies(
    config: dict[str, Any], settings: Settings
) -> None:
    head_file = _token_file_read_by(config["head_start_ray_commands"])
    worker_file = _token_file_read_by(config["worker_start_ray_commands"])
    assert head_file == worker_file
    assert head_file in config["file_mounts"]
    # aisys's own token file (<data_dir>/ray_token under the default data dir), so the `aisys`
    # commands on the hosts use the token Ray was started with.
    default_data_dir = Path("~/.local/share/aisys")
    assert Path(head_file) == default_data_dir / settings.ray_token_path.name
    assert config["file_mounts"][head_file] == head_file


def test_every_host_installs_the_project_it_starts_ray_from(config: dict[str, Any]) -> None:
    assert config["file_mounts"]["~/aisys"] == "."
    assert any("pip install" in c and "-e ~/aisys" in c for c in config["setup_commands"])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in config[key] if "ray start" in c)
        assert "~/aisys/.venv/bin/ray start" in start
