"""ErrorBus settings: every field is read (stream config, serve config, validators)."""

from __future__ import annotations

import pytest

from actors.errors.stream import stream_config
from cluster.base.constants import APP_ERRORS, APP_LEGACY, ERRORS_STREAM, ERRORS_SUBJECTS
from cluster.base.errors import ConfigError
from cluster.base.settings import ErrorBridgeSettings, ErrorBusSettings, load_settings
from cluster.ops.serve_config import build_serve_config
from deployments.errors.app import ErrorBusAppArgs
from legacy_gateway.app import LegacyAppArgs


def test_defaults_match_the_design() -> None:
    errors = load_settings().errors
    assert (errors.host, errors.bridge.host) == ("pc2", "pc2")
    assert (errors.bridge.sub_port, errors.retention_days) == (7150, 7.0)


def test_stream_config_follows_the_settings() -> None:
    config = stream_config(
        ErrorBusSettings(
            retention_days=2, max_stream_mb=64, duplicate_window_s=30, max_event_bytes=4096
        )
    )
    assert (config.name, config.subjects) == (ERRORS_STREAM, [ERRORS_SUBJECTS])
    assert config.max_age == 2 * 86_400
    assert config.max_bytes == 64 * 1024 * 1024
    assert config.duplicate_window == 30
    assert config.max_msg_size == 4096 + 4096
    assert config.storage is not None and config.storage.value == "file"


def test_environment_nesting_reaches_the_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISYS_ERRORS__BRIDGE__SUB_PORT", "17150")
    monkeypatch.setenv("AISYS_ERRORS__SPOOL_MAX_MB", "8")
    settings = load_settings()
    assert (settings.errors.bridge.sub_port, settings.errors.spool_max_mb) == (17150, 8)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"errors": {"host": "nowhere"}}, "errors.host is 'nowhere'"),
        ({"errors": {"bridge": {"host": "nowhere"}}}, "errors.bridge.host is 'nowhere'"),
        ({"errors": {"bridge": {"sub_port": 9000, "pub_port": 9000}}}, "a port of its own"),
        ({"errors": {"bridge": {"num_replicas": 2}}}, "less than or equal to 1"),
        ({"errors": {"max_stream_mb": 4096}, "nats": {"max_store_mb": 1024}}, "embedded NATS"),
        ({"errors": {"max_event_bytes": 2 * 1024 * 1024}}, "less than or equal"),
    ],
)
def test_invalid_values_name_the_fix(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**overrides)


def test_an_external_broker_lifts_the_store_check() -> None:
    settings = load_settings(nats={"url": "nats://broker:4222"}, errors={"max_stream_mb": 9999})
    assert settings.errors.max_stream_mb == 9999


def test_serve_config_pins_errors_and_the_bridge_to_pc2_with_their_args() -> None:
    settings = load_settings(
        errors=ErrorBusSettings(
            num_cpus=0.2, bridge=ErrorBridgeSettings(sub_port=17150, pub_port=17151)
        )
    )
    apps = {app["name"]: app for app in build_serve_config(settings)["applications"]}
    errors, legacy = apps[APP_ERRORS], apps[APP_LEGACY]
    assert (errors["route_prefix"], legacy["route_prefix"]) == ("/errors", "/legacy")
    assert errors["deployments"][0]["ray_actor_options"] == {
        "num_cpus": 0.2,
        "resources": {"pc2": 0.001},
    }
    assert legacy["deployments"][0]["name"] == "LegacyGatewayPc2"
    assert legacy["deployments"][0]["num_replicas"] == 1
    assert legacy["deployments"][0]["ray_actor_options"]["resources"] == {"pc2": 0.001}
    args = ErrorBusAppArgs.model_validate(errors["args"])
    assert args.nats.url == f"nats://127.0.0.1:{settings.ports.nats}"
    # The replica reads the password on its own host; the secret is not in Serve's config.
    assert args.nats.user == "aisys"
    assert args.nats.password is None
    assert args.nats.password_file == str(settings.data_dir / "nats_password")
    assert args.errors_dir == str(settings.data_dir / "errors")
    legacy_args = LegacyAppArgs.model_validate(legacy["args"])
    assert legacy_args.errors.bridge.sub_port == 17150
