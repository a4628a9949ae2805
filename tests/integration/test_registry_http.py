"""The agent registry over Serve HTTP on a real Ray node: Consul semantics and clear 4xx."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import wait_for_condition

pytestmark = pytest.mark.integration


def new_id(prefix: str = "agent") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def register(http: httpx.Client, agent_id: str, **fields: object) -> httpx.Response:
    body: dict[str, object] = {"agent_id": agent_id, "host": "10.0.0.5", "port": 5709}
    body.update(fields)
    return http.post("/core/agents", json=body)


def test_register_lookup_heartbeat_deregister(http: httpx.Client) -> None:
    agent = new_id()
    response = register(http, agent, capabilities=["reasoning"], health_check_port=5710)
    assert response.status_code == 200, response.text
    assert response.json()["health"] == "passing"

    # Read-your-writes: the replica's cache already has it.
    got = http.get(f"/core/agents/{agent}").json()
    assert (got["host"], got["port"], got["health_check_port"]) == ("10.0.0.5", 5709, 5710)
    assert got["capabilities"] == ["reasoning"]

    beat = http.put(f"/core/agents/{agent}/heartbeat", json={"status": "warning", "note": "slow"})
    assert beat.status_code == 200
    assert http.get(f"/core/agents/{agent}").json()["health"] == "warning"

    assert http.delete(f"/core/agents/{agent}").status_code == 204
    missing = http.get(f"/core/agents/{agent}")
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"registry: agent '{agent}' is not registered"


def test_reregistration_is_idempotent(http: httpx.Client) -> None:
    agent = new_id()
    first = register(http, agent).json()
    second = register(http, agent, port=6000).json()
    assert second["registered_at"] == first["registered_at"]
    assert second["port"] == 6000
    listed = http.get("/core/agents").json()["agents"]
    assert [a["agent_id"] for a in listed].count(agent) == 1


def test_list_filters_by_capability_health_and_host(http: httpx.Client) -> None:
    cap = f"cap-{uuid.uuid4().hex[:6]}"
    a, b = new_id("a"), new_id("b")
    register(http, a, capabilities=[cap], host="10.9.9.1")
    register(http, b, capabilities=[cap], host="10.9.9.2")
    http.put(f"/core/agents/{b}/heartbeat", json={"status": "critical"})

    def ids(**params: str) -> list[str]:
        body = http.get("/core/agents", params={"capability": cap, **params}).json()
        return [agent["agent_id"] for agent in body["agents"]]

    assert ids() == sorted([a, b])
    assert ids(health="passing") == [a]
    assert ids(host="10.9.9.2") == [b]


def test_ttl_expiry_turns_agent_critical(http: httpx.Client) -> None:
    agent = new_id()
    register(http, agent, ttl_s=1)

    def critical() -> bool:
        body = http.get(f"/core/agents/{agent}").json()
        return bool(body["health"] == "critical" and "TTL" in body["health_note"])

    wait_for_condition(critical, timeout_s=15)
    http.put(f"/core/agents/{agent}/heartbeat", json={})
    assert http.get(f"/core/agents/{agent}").json()["health"] == "passing"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("post", "/core/agents", b"{not json", 422, "JSON decode error"),
        ("post", "/core/agents", {"agent_id": "a b", "host": "h", "port": 1}, 422, "agent_id"),
        ("post", "/core/agents", {"agent_id": "a", "host": "h", "port": "x"}, 422, "port"),
        ("post", "/core/agents", {"agent_id": "a", "host": "h"}, 422, "Field required"),
        ("post", "/core/agents", [1, 2], 422, "valid dictionary"),
        ("put", "/core/agents/nobody-here/heartbeat", {}, 404, "not registered"),
        ("put", "/core/agents/x/heartbeat", {"status": "ok"}, 422, "passing"),
        ("delete", "/core/agents/nobody-here", None, 404, "not registered"),
        ("get", "/core/agents?health=bogus", None, 422, "passing"),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    http: httpx.Client, method: str, path: str, body: object, status: int, fragment: str
) -> None:
    if isinstance(body, bytes):
        response = http.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
    elif body is None:
        response = http.request(method, path)
    else:
        response = http.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert fragment in response.text


def test_huge_registration_is_rejected_not_crashing(http: httpx.Client) -> None:
    response = register(http, new_id(), capabilities=[f"c{i}" for i in range(1000)])
    assert response.status_code == 422
    assert "at most 64" in response.text
    assert http.get("/core/agents").status_code == 200


def test_openapi_is_served(http: httpx.Client) -> None:
    spec = http.get("/core/openapi.json").json()
    assert "/agents" in spec["paths"] or "/core/agents" in spec["paths"]
