"""The generated Serve config: accepted by Serve's schema, every deployment pinned by tag."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from cluster.base.constants import APP_ROUTE_PREFIXES
from cluster.base.errors import MissingHostTag
from cluster.base.settings import load_settings
from cluster.ops.serve_config import (
    APPS,
    PIN_FRACTION,
    build_serve_config,
    check_host_tags,
    required_host_tags,
    serve_config_yaml,
)


def test_config_round_trips_through_yaml_and_serve_schema(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    text = serve_config_yaml(build_serve_config(settings))
    schema = ServeDeploySchema.model_validate(yaml.safe_load(text))
    assert schema.http_options.port == 7000
    assert schema.grpc_options.port == 7001
    assert schema.proxy_location == "EveryNode"
    assert {app.name for app in schema.applications} == {spec.name for spec in APPS}


def test_every_deployment_is_pinned_to_its_host_tag_in_the_config(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        hosts={
            "big": {"tag": "bigbox", "role": "head"},
            "small": {"tag": "tiny", "role": "worker"},
        },
        core={"host": "big", "num_cpus": 0.25, "max_ongoing_requests": 64},
        nats={"host": "small"},
        resources={"host": "small"},
        errors={"host": "small", "bridge": {"host": "small"}},
        security={"host": "small"},
        observability={"host": "small"},
        legacy_gateway={"host": "big", "ports": {"big": {"service_registry": 7100}}},
    )
    config = build_serve_config(settings)
    core = next(app for app in config["applications"] if app["name"] == "core")
    assert core["route_prefix"] == APP_ROUTE_PREFIXES["core"] == "/core"
    [deployment] = core["deployments"]
    assert deployment["ray_actor_options"] == {
        "num_cpus": 0.25,
        "resources": {"bigbox": PIN_FRACTION},
    }
    assert deployment["max_ongoing_requests"] == 64
    assert core["args"]["host_tag"] == "bigbox"
    security = next(app for app in config["applications"] if app["name"] == "security")
    assert security["deployments"][0]["ray_actor_options"]["resources"] == {"tiny": PIN_FRACTION}
    for app in config["applications"]:
        for dep in app["deployments"]:
            assert set(dep["ray_actor_options"]["resources"]) <= {"bigbox", "tiny"}
            assert "health_check_period_s" in dep


def test_check_host_tags_names_missing_tag_and_how_to_start_it(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    needed = required_host_tags(settings)
    assert "core" in needed["mainpc"]
    check_host_tags(settings, {"CPU": 2.0, "mainpc": 1.0, "pc2": 1.0})
    with pytest.raises(MissingHostTag) as info:
        check_host_tags(settings, {"CPU": 2.0, "pc2": 1.0})
    message = str(info.value)
    assert "no node carries host tag 'mainpc'" in message
    assert "--resources '{\"mainpc\": 1}'" in message
    assert info.value.tag == "mainpc"


def test_legacy_app_has_one_deployment_per_host_each_pinned_there(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, legacy_gateway={"num_cpus": 0.2})
    config = build_serve_config(settings)
    legacy = next(app for app in config["applications"] if app["name"] == "legacy")
    pins = {d["name"]: d["ray_actor_options"] for d in legacy["deployments"]}
    assert pins == {
        "LegacyGatewayPc2": {"num_cpus": 0.1, "resources": {"pc2": PIN_FRACTION}},
        "LegacyGatewayMainpc": {"num_cpus": 0.2, "resources": {"mainpc": PIN_FRACTION}},
    }
    args = legacy["args"]
    assert (args["mainpc_host"], args["pc2_host"]) == ("mainpc", "pc2")
    assert args["registry_host_tag"] == "mainpc"
    # The whole port map travels to the deployments, as JSON (enum keys become their values).
    expected = {
        host: {str(service): port for service, port in ports.items()}
        for host, ports in settings.legacy_gateway.ports.items()
    }
    assert args["gateway"]["ports"] == expected
    assert args["gateway"]["ports"]["mainpc"]["service_registry"] == 7100
    assert args["gateway"]["ports"]["pc2"]["performance_logger"] == 5632
    assert "legacy" in required_host_tags(settings)["mainpc"]
    assert "legacy" in required_host_tags(settings)["pc2"]
