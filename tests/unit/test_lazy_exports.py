"""Packages re-export their names lazily; the CLI does not load NATS or the service cores."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from cluster.base.lazy import lazy_exports


def test_a_name_is_imported_on_first_use_then_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("lazypkg")
    monkeypatch.setitem(sys.modules, "lazypkg", package)
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    package.__getattr__ = lazy_exports("lazypkg", {"rgb_to_hsv": "colorsys"})  # type: ignore[method-assign]

    assert "colorsys" not in sys.modules
    found = package.rgb_to_hsv
    assert "colorsys" in sys.modules
    assert found is sys.modules["colorsys"].rgb_to_hsv
    assert package.__dict__["rgb_to_hsv"] is found  # plain lookups from now on
    with pytest.raises(AttributeError, match="has no attribute 'hsv'"):
        _ = package.hsv


def test_the_cli_starts_without_nats_aiohttp_or_the_service_cores() -> None:
    probe = (
        "import sys, cluster.ops.cli; "
        "print(sorted(m for m in ('nats', 'aiohttp', 'deployments.observability.hub', "
        "'actors.logship.publish') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
