"""Pin each package's public surface: every name in ``__all__`` exists, nothing else sneaks in."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "cluster",
    "cluster.base.errors",
    "cluster.base.settings",
    "cluster.ops.serve_config",
    "cluster.base.constants",
    "cluster.ops.check",
    "cluster.ops.service",
    "cluster.ops.migrate_status",
    "cluster.ops.legacy_import",
    "cluster.ops.legacy_import.errorbus",
    "cluster.ops.legacy_import.perf",
    "cluster.ops.legacy_import.registry",
    "cluster.ops.legacy_import.run",
    "cluster.ops.legacy_import.timestamps",
    "cluster.ops.legacy_import.trust",
    "actors",
    "actors.registry",
    "actors.logship",
    "actors.logship.actor",
    "deployments.observability.alertmanager",
    "deployments.observability.service_series",
    "deployments.observability.webhook",
    "deployments.security.oauth",
    "cluster.ops.prometheus_setup",
    "deployments.observability.logship",
    "deployments.observability.status",
    "deployments.observability.status_html",
    "deployments.observability.status_models",
    "deployments",
    "deployments.core.breaker",
    "deployments.core.coordinator",
    "deployments.core.dispatch",
    "deployments.core.models",
    "deployments.core.priority",
    "deployments.core.supervision",
    "deployments.core.twin",
    "deployments.core.twin_models",
    "deployments.core.grpc_ingress",
    "deployments.core.journal",
    "actors.probe",
    "actors.probe.gpu",
    "actors.probe.models",
    "actors.probe.system",
    "actors.security",
    "actors.resources.models",
    "actors.resources.optimizer",
    "actors.resources.scheduler",
    "actors.resources.store",
    "actors.resources.views",
    "actors.security.models",
    "actors.security.tokens",
    "actors.security.trust",
    "legacy_gateway",
    "legacy_gateway._codec",
    "legacy_gateway._curve",
    "legacy_gateway.server",
    "legacy_gateway.registry_port",
    "legacy_gateway.gateway",
    "legacy_gateway.delegate",
    "legacy_gateway.mirror",
    "legacy_gateway.migration",
    "legacy_gateway.usage",
    "legacy_gateway.coordinator_port",
    "legacy_gateway.migrate_config",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist_and_are_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), "duplicate names in __all__"
    for member in exported:
        assert not member.startswith("_")
        assert hasattr(module, member), f"{name}.__all__ names missing {member!r}"


def test_registry_package_surface_is_pinned() -> None:
    module = importlib.import_module("actors.registry")
    assert sorted(module.__all__) == [
        "AgentQuery",
        "AgentRecord",
        "Change",
        "ChangeFeed",
        "Health",
        "Heartbeat",
        "Registration",
        "RegistryCore",
        "RegistryView",
    ]


def test_probe_package_surface_is_pinned() -> None:
    assert sorted(importlib.import_module("actors.probe").__all__) == [
        "DeclaredProbe",
        "GpuProbe",
        "GpuProcess",
        "GpuReading",
        "GpuSnapshot",
        "GpuSource",
        "HostProbe",
        "HostReading",
        "NvmlProbe",
        "RecordedProbe",
    ]
