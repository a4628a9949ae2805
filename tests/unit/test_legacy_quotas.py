"""Quotas on the legacy registration paths, answered in the caller's dialect.

No Ray: the registry "actor" here is a :class:`RegistryCore` on a real SQLite file behind the
``.register.remote`` call the gateway makes, and its changes reach the port's view at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
import zmq

from actors.registry.core import RegistryCore
from actors.registry.follower import RegistryFollower
from actors.registry.models import Change, ChangeFeed, Registration
from actors.registry.store import SqliteRegistryStore
from actors.registry.view import RegistryView
from cluster.base.settings import LegacyGatewaySettings, RegistrySettings
from legacy_gateway._codec import Reply, decode, encode
from legacy_gateway.registry_port import DigitalTwinPort, RegistryLink, ServiceRegistryPort
from legacy_gateway.server import PortHandler, Received


class _Method:
    def __init__(self, core: RegistryCore, follower: RegistryFollower) -> None:
        self._core, self._follower = core, follower
        self.calls = 0

    def remote(self, registration: Registration, source: str | None = None) -> Awaitable[Change]:
        self.calls += 1

        async def call() -> Change:
            change = self._core.register(registration, source)
            self._follower.view.apply(change)
            return change

        return call()


class CoreActor:
    """What the gateway sees of the registry actor: ``register.remote``."""

    def __init__(self, core: RegistryCore, follower: RegistryFollower) -> None:
        self.register = _Method(core, follower)


class FromPeer(Received):
    """A received frame whose connection came from ``address``."""

    __slots__ = ("_address",)

    def __init__(self, frame: bytes, address: str) -> None:
        super().__init__(zmq.Frame(frame))
        self._address = address

    def peer(self) -> str:
        return self._address


def _link(
    tmp_path: Path, *, precheck: bool = False, **settings: object
) -> tuple[RegistryLink, RegistryCore]:
    quotas = RegistrySettings.model_validate(settings)
    core = RegistryCore(quotas, SqliteRegistryStore(tmp_path / "registry.sqlite3"), time.time)
    follower = RegistryFollower(None)
    follower.last_sync = time.monotonic()
    actor = CoreActor(core, follower)
    return RegistryLink(actor, follower, 1.0, quotas=quotas if precheck else None), core


def _ask(port: PortHandler, request: dict[str, Any], peer: str = "10.0.0.9") -> dict[str, Any]:
    frame = json.dumps(request).encode()
    outcome = port.handle(decode(frame, 1 << 20), FromPeer(frame, peer))
    if not isinstance(outcome, Reply | bytes):
        outcome = asyncio.run(_await(outcome))
    reply: dict[str, Any] = json.loads(outcome if isinstance(outcome, bytes) else encode(outcome))
    return reply


async def _await(outcome: Awaitable[Reply | bytes]) -> Reply | bytes:
    return await outcome


def _register_agent(name: str, **metadata: object) -> dict[str, Any]:
    return {
        "action": "register_agent",
        "agent_id": name,
        "host": "10.0.0.20",
        "port": 5700,
        "metadata": metadata,
    }


def test_gateway_settings_have_safe_defaults() -> None:
    s = LegacyGatewaySettings()
    assert (s.held_payloads_max, s.held_payload_max_bytes) == (1000, 16 * 1024)
    assert s.max_message_bytes == 2 * 1024 * 1024
    assert (s.feed_max_objects, s.feed_max_depth) == (100_000, 64)


def test_action_dialect_registration_over_the_per_source_cap_names_limit_and_setting(
    tmp_path: Path,
) -> None:
    link, core = _link(tmp_path, legacy_agents_per_source=2, legacy_agents_max=100)
    port = ServiceRegistryPort(link)
    for i in range(2):
        assert _ask(port, _register_agent(f"a{i}"), "10.0.0.9") == {"status": "success"}
    refused = _ask(port, _register_agent("a2"), "10.0.0.9")
    assert refused["status"] == "error"
    assert "2 agents are registered through the legacy ports from 10.0.0.9" in refused["error"]
    assert "AISYS_CORE__REGISTRY__LEGACY_AGENTS_PER_SOURCE" in refused["error"]
    # Another source still registers; the connection's address is what is counted.
    assert _ask(port, _register_agent("b0"), "10.0.0.10") == {"status": "success"}
    assert core.get("b0").source == "10.0.0.10"
    lookup = _ask(port, {"action": "get_agent_endpoint", "agent_name": "a1"})
    assert lookup["status"] == "success"


def test_action_dialect_metadata_over_the_limit_is_refused(tmp_path: Path) -> None:
    link, _ = _link(tmp_path, metadata_max_bytes=1024)
    port = ServiceRegistryPort(link)
    refused = _ask(port, _register_agent("big", blob="x" * 4096))
    assert refused["status"] == "error"
    assert "AISYS_CORE__REGISTRY__METADATA_MAX_BYTES" in refused["error"]
    assert "the limit is 1024" in refused["error"]


def test_command_dialect_register_over_the_total_cap_gets_a_command_error(
    tmp_path: Path,
) -> None:
    link, _ = _link(tmp_path, legacy_agents_max=1)
    port = DigitalTwinPort(link)
    first = _ask(port, {"command": "REGISTER", "payload": {"name": "A", "port": 5000}})
    assert first["status"] == "SUCCESS"
    refused = _ask(
        port, {"command": "REGISTER", "payload": {"name": "B", "port": 5001}}, "10.1.1.1"
    )
    assert refused["status"] == "ERROR"
    assert "AISYS_CORE__REGISTRY__LEGACY_AGENTS_MAX" in refused["message"]


def test_held_payloads_are_capped_in_number_and_size(tmp_path: Path) -> None:
    link, _ = _link(tmp_path)
    port = DigitalTwinPort(link, held_max=3, held_max_bytes=512)
    for i in range(3):
        ok = _ask(port, {"command": "REGISTER", "payload": {"name": f"svc{i}"}})
        assert ok["status"] == "SUCCESS"
    full = _ask(port, {"command": "REGISTER", "payload": {"name": "svc3"}})
    assert full["status"] == "ERROR"
    assert "the limit is 3 (legacy_gateway.held_payloads_max)" in full["message"]
    # Replacing a kept payload is taken at the cap.
    again = _ask(port, {"command": "REGISTER", "payload": {"name": "svc1", "role": "x"}})
    assert again["status"] == "SUCCESS"
    big = _ask(port, {"command": "REGISTER", "payload": {"name": "svc0", "blob": "y" * 600}})
    assert big["status"] == "ERROR"
    assert "legacy_gateway.held_payload_max_bytes" in big["message"]
    assert port.held == 3
    found = _ask(port, {"command": "DISCOVER", "payload": {"name": "svc1"}})
    assert found["payload"]["role"] == "x"


@pytest.mark.parametrize("peer", ["", "127.0.0.1"])
def test_a_registration_records_its_connection_as_source(tmp_path: Path, peer: str) -> None:
    link, core = _link(tmp_path)
    port = ServiceRegistryPort(link)
    assert _ask(port, _register_agent("x"), peer)["status"] == "success"
    assert core.get("x").source == (peer or "unknown")


def test_the_gateway_refuses_over_a_cap_on_its_view_without_calling_the_actor(
    tmp_path: Path,
) -> None:
    link, core = _link(tmp_path, precheck=True, legacy_agents_per_source=2)
    actor = link._registry.handle
    port = ServiceRegistryPort(link)
    for i in range(2):
        assert _ask(port, _register_agent(f"a{i}"), "10.0.0.9") == {"status": "success"}
    assert actor.register.calls == 2
    for i in range(2, 50):
        refused = _ask(port, _register_agent(f"a{i}"), "10.0.0.9")
        assert "AISYS_CORE__REGISTRY__LEGACY_AGENTS_PER_SOURCE" in refused["error"]
    big = _ask(port, _register_agent("big", blob="x" * 9000), "10.0.0.11")
    assert "AISYS_CORE__REGISTRY__METADATA_MAX_BYTES" in big["error"]
    assert actor.register.calls == 2  # every refusal came from the local view
    # Re-registering a held agent passes the precheck and reaches the actor.
    assert _ask(port, _register_agent("a1", role="x"), "10.0.0.9") == {"status": "success"}
    assert actor.register.calls == 3 and core.get("a1").metadata == {"role": "x"}


def test_a_view_counts_legacy_registrations_through_changes_and_snapshots(
    tmp_path: Path,
) -> None:
    link, core = _link(tmp_path)
    port = ServiceRegistryPort(link)
    for i, peer in enumerate(["10.0.0.1", "10.0.0.1", "10.0.0.2"]):
        _ask(port, _register_agent(f"a{i}"), peer)
    view = RegistryView()
    view.apply_feed(core.changes_since(0))
    assert (view.legacy_count(), view.legacy_count("10.0.0.1")) == (3, 2)
    core.deregister("a0")
    view.apply_feed(core.changes_since(view.version))
    assert (view.legacy_count(), view.legacy_count("10.0.0.1")) == (2, 1)
    snapshot = RegistryView()
    snapshot.apply_feed(ChangeFeed(version=core.version, snapshot=core.list_agents()))
    assert snapshot.legacy_count("10.0.0.2") == 1 and snapshot.legacy_count() == 2
