"""Pin each package's public surface: every name in ``__all__`` exists, nothing else sneaks in."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "cluster",
    "cluster.errors",
    "cluster.settings",
    "cluster.serve_config",
    "cluster.constants",
    "actors",
    "actors.registry",
    "deployments",
    "legacy_gateway",
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
