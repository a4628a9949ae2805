"""The consolidated services' legacy names, discovered on the deployed gateway's lookup ports.

What a legacy client does with no address of a consolidated agent (``docs/legacy-protocol.md`` 2.3,
3.1): DynamicIdentityAgent DISCOVERs ``RequestCoordinator`` on 7120, BaseAgent asks
ServiceRegistry on 7100 for ``AuthenticationAgent``; each then connects to the endpoint it got,
which must be the gateway port of the host serving that service now.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import zmq

from cluster.base.settings import LegacyService, Settings
from tests.integration._legacy_client import (  # noqa: F401 (fixtures)
    LegacyClient,
    client_fixture,
    ports_fixture,
    zctx_fixture,
)

pytestmark = pytest.mark.integration

S = LegacyService


def _request(ctx: zmq.Context[zmq.Socket[bytes]], host: str, port: int, obj: object) -> Any:
    """One REQ round trip to ``tcp://host:port``, as the legacy client that resolved it does."""
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    try:
        sock.connect(f"tcp://{host}:{port}")
        sock.send(json.dumps(obj).encode())
        return json.loads(sock.recv())
    finally:
        sock.close(linger=0)


def _gateway_ip(settings: Settings, host: str) -> str:
    return settings.hosts[host].node_ip or settings.legacy_gateway.bind


def test_discover_request_coordinator_and_resolve_authentication_agent(
    aisys_system: Settings,
    client: dict[str, LegacyClient],
    zctx: zmq.Context[zmq.Socket[bytes]],
) -> None:
    ports = aisys_system.legacy_gateway.ports
    found = client[f"mainpc/{S.SYSTEM_DIGITAL_TWIN}"].send_json(
        {"command": "DISCOVER", "payload": {"name": "RequestCoordinator"}}
    )
    assert found["status"] == "SUCCESS"
    payload = found["payload"]
    assert payload["name"] == "RequestCoordinator"
    assert payload["ip"] == payload["host"] == _gateway_ip(aisys_system, "mainpc")
    assert payload["port"] == ports["mainpc"][S.REQUEST_COORDINATOR]
    assert payload["health_check_port"] == ports["mainpc"][S.REQUEST_COORDINATOR_HEALTH]
    # The endpoint it got is RequestCoordinator's port: VRAMOptimizer's ping answers there.
    pong = _request(zctx, payload["ip"], payload["port"], {"action": "ping"})
    assert pong["status"] == "success"

    endpoint = client[f"mainpc/{S.SERVICE_REGISTRY}"].send_json(
        {
            "action": "get_agent_endpoint",
            "agent_name": "AuthenticationAgent",
            "source_agent": "NLUAgent",
            "request_id": "6a0f",
            "timestamp": "2025-07-15T11:00:00",
        }
    )
    assert endpoint["status"] == "success"
    assert endpoint["host"] == _gateway_ip(aisys_system, "pc2")
    assert endpoint["port"] == ports["pc2"][S.AUTHENTICATION]
    assert endpoint["health_check_port"] == ports["pc2"][S.AUTHENTICATION_HEALTH]
    assert endpoint["agent_type"] == "AuthenticationAgent"
    health = _request(zctx, endpoint["host"], endpoint["port"], {"action": "health_check"})
    assert health["status"] == "ok"
    # Unknown names stay unknown.
    missing = client[f"mainpc/{S.SERVICE_REGISTRY}"].send_json(
        {"action": "get_agent_endpoint", "agent_name": "Nobody"}
    )
    assert missing["status"] == "error"
