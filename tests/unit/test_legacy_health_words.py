"""UnifiedSystemAgent and SystemHealthManager health: the backing services' state, legacy words.

No Ray: the services are the stand-ins of ``test_legacy_port_health`` (calls answer, fail as
Ray fails, or never answer); the registry view is a real follower, loaded or not.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from actors.registry.follower import RegistryFollower
from legacy_gateway.monitor_ports import SystemHealthManagerPort
from legacy_gateway.registry_port import RegistryLink
from legacy_gateway.twin_cache import TwinCache
from legacy_gateway.unified_system_port import UnifiedSystemPort
from tests.unit.test_legacy_port_health import _ask, _link, _ray_down, _resolve, _Services


class _LiveTwin(TwinCache):
    def host(self, tag: str) -> Any:  # noqa: ARG002
        figures = {"cpu_percent": 12.0, "memory_percent": 34.0, "disk_percent": 56.0}
        return SimpleNamespace(**figures, taken_at=time.time())


def _unloaded() -> RegistryLink:
    return RegistryLink(None, RegistryFollower(None), 1.0)


def _followed() -> RegistryLink:
    """A loaded view whose feed task is still running (pending forever here)."""
    follower = RegistryFollower(None)
    follower.last_sync = time.monotonic()
    loop = asyncio.new_event_loop()
    follower._task = loop.create_future()  # type: ignore[assignment]
    loop.close()  # the future stays pending: "running"
    return RegistryLink(None, follower, 1.0)


def test_unified_system_agent_is_ok_degraded_or_error_by_what_is_behind_it() -> None:
    up = _Services()
    ok = _resolve(UnifiedSystemPort(up, _LiveTwin(up, 5.0), _link(), "mainpc").health())
    assert ok.status == "ok" and ok.model_dump()["ready"] is True
    assert ok.model_dump()["service_metrics"]["registered_services"] == 0

    no_twin = UnifiedSystemPort(up, TwinCache(up, 5.0), _link(), "mainpc")
    reply = _resolve(no_twin.health()).model_dump()
    assert reply["status"] == "degraded" and "error" in reply["system_metrics"]

    no_view = UnifiedSystemPort(up, _LiveTwin(up, 5.0), _unloaded(), "mainpc")
    reply = _resolve(no_view.health()).model_dump()
    assert reply["status"] == "degraded" and "not loaded" in reply["message"]

    down = _Services(_ray_down("core gone"))
    port = UnifiedSystemPort(down, _LiveTwin(down, 5.0), _link(), "mainpc")
    reply = _ask(port, b'{"action":"health"}').model_dump()
    assert reply["status"] == "error" and reply["ready"] is False
    assert "unavailable" in reply["message"]
    assert reply["system_metrics"]["cpu_percent"] == 12.0  # what is known is still given


def test_system_health_manager_is_error_without_the_registry_and_degraded_without_the_hub() -> None:
    up = _Services()
    assert _ask(SystemHealthManagerPort(_followed(), up), b"ping").status == "ok"
    hub_down = SystemHealthManagerPort(_followed(), _Services(_ray_down("hub gone")))
    reply = _resolve(hub_down.health()).model_dump()
    assert reply["status"] == "degraded" and "unavailable" in reply["message"]
    feed_lost = SystemHealthManagerPort(_link(), up)  # loaded once, no longer followed
    assert _resolve(feed_lost.health()).status == "error"
    no_view = SystemHealthManagerPort(_unloaded(), up)
    reply = _ask(no_view, b'{"action":"health_check"}').model_dump()
    assert reply["status"] == "error" and reply["ready"] is False
    assert "registry view" in reply["message"]
