"""Settings: defaults match docs/architecture.md; env and files override; errors name fixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.base.errors import ConfigError
from cluster.base.settings import HostProfile, load_settings, settings_yaml


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        "AISYS_CONFIG",
        "AISYS_DATA_DIR",
        "AISYS_PORTS__HTTP",
        "AISYS_CORE__REGISTRY__DEFAULT_TTL_S",
    ]:
        monkeypatch.delenv(name, raising=False)


def test_defaults_follow_the_design_ports_and_tags(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert (settings.ports.gcs, settings.ports.dashboard) == (6380, 8265)
    assert (settings.ports.http, settings.ports.grpc, settings.ports.nats) == (7000, 7001, 4222)
    assert settings.hosts["mainpc"] == HostProfile(tag="mainpc", role="head")
    assert settings.hosts["pc2"] == HostProfile(tag="pc2", role="worker")
    assert settings.head_host == "mainpc"
    assert settings.core.host == "mainpc"
    assert settings.gcs_address == "127.0.0.1:6380"
    assert settings.ray_temp_dir == tmp_path / "ray"


def test_environment_overrides_nested_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISYS_PORTS__HTTP", "8000")
    monkeypatch.setenv("AISYS_CORE__REGISTRY__DEFAULT_TTL_S", "5")
    settings = load_settings(data_dir=tmp_path)
    assert settings.ports.http == 8000
    assert settings.core.registry.default_ttl_s == 5


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_settings_file_is_read_and_env_wins_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    path = tmp_path / f"aisys{suffix}"
    if suffix == ".yaml":
        path.write_text("ports:\n  http: 7500\n  grpc: 7501\ncore:\n  num_cpus: 0.5\n")
    else:
        path.write_text("[ports]\nhttp = 7500\ngrpc = 7501\n[core]\nnum_cpus = 0.5\n")
    monkeypatch.setenv("AISYS_PORTS__HTTP", "7600")
    settings = load_settings(path, data_dir=tmp_path)
    assert settings.ports.grpc == 7501
    assert settings.core.num_cpus == 0.5
    assert settings.ports.http == 7600


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "aisys.yaml"
    path.write_text("ports:\n  gcs: 6999\n")
    monkeypatch.setenv("AISYS_CONFIG", str(path))
    assert load_settings(data_dir=tmp_path).ports.gcs == 6999


def test_missing_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hosts": {"a": {"tag": "a", "role": "worker"}}}, "exactly one host profile"),
        (
            {"hosts": {"a": {"tag": "x", "role": "head"}, "b": {"tag": "x", "role": "worker"}}},
            "must be distinct",
        ),
        ({"hosts": {"a": {"tag": "Bad Tag", "role": "head"}}}, "must match"),
        ({"core": {"host": "nowhere"}}, "core.host is 'nowhere'"),
        ({"ports": {"http": 70000}}, "less than or equal to 65535"),
        ({"unknown_section": {}}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings_name_the_problem(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(data_dir=tmp_path, **overrides)


def test_ray_temp_dir_defaults_under_data_dir_and_can_be_moved(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path).ray_temp_dir == tmp_path / "ray"
    settings = load_settings(data_dir=tmp_path, ray={"temp_dir": "/tmp/r"})
    assert settings.ray_temp_dir == Path("/tmp/r")


def test_partial_host_profile_from_env_merges_into_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISYS_HOSTS__PC2__NODE_IP", "10.0.0.2")
    settings = load_settings(data_dir=tmp_path)
    assert settings.hosts["pc2"] == HostProfile(tag="pc2", role="worker", node_ip="10.0.0.2")
    assert settings.hosts["mainpc"] == HostProfile(tag="mainpc", role="head")


def test_settings_yaml_reads_back_equal_secrets_and_paths_included(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data",
        security={"admin_password": "s3cret-pw", "access_ttl_s": 120},
        nats={"password": "n4ts-pw"},
    )
    path = tmp_path / "aisys.yaml"
    path.write_text(settings_yaml(settings))
    assert load_settings(path) == settings
    assert "s3cret-pw" in path.read_text()  # written out: the file is its owner's only
