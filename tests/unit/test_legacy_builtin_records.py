"""The consolidated services' legacy names, resolvable in every lookup dialect without Ray.

As in test_legacy_registry_port.py, the follower is never started: its view is filled with
registry changes and marked loaded. The built-in records are those a gateway replica builds
from the default legacy port map and two host profiles with LAN addresses.
"""

from __future__ import annotations

import json
import time

import pytest
import zmq

from actors.registry.follower import RegistryFollower
from actors.registry.models import AgentRecord, Change, Health
from cluster.base.settings import LegacyGatewaySettings, LegacyService
from legacy_gateway._codec import Reply, decode, encode
from legacy_gateway._ports import Services
from legacy_gateway.builtin_records import BUILTIN_SERVICES, ERROR_BUS, builtin_records
from legacy_gateway.registry_port import DigitalTwinPort, RegistryLink, ServiceRegistryPort
from legacy_gateway.server import PortHandler, Received
from legacy_gateway.twin_actions import TwinActions
from legacy_gateway.twin_cache import TwinCache

MAINPC_IP, PC2_IP = "192.168.100.10", "192.168.100.17"
NODE_IPS: dict[str, str | None] = {"mainpc": MAINPC_IP, "pc2": PC2_IP}
HOSTS = ("mainpc", "pc2")
STARTED = 1752577200.0  # 2025-07-15T11:00:00
CONSOLIDATED = (
    *("ServiceRegistry", "SystemDigitalTwin", "RequestCoordinator", "UnifiedSystemAgent"),
    *("PredictiveHealthMonitor", "PerformanceMonitor", "HealthMonitor"),
    *("PerformanceLoggerAgent", "SystemHealthManager", "ResourceManager", "TaskScheduler"),
    *("AsyncProcessor", "VRAMOptimizer", "VRAMOptimizerAgent", "AuthenticationAgent"),
    *("AgentTrustScorer", "ErrorBus"),
)


def _builtins(own: str = "mainpc", **settings: object) -> dict[str, AgentRecord]:
    return builtin_records(
        LegacyGatewaySettings.model_validate(settings),
        own,
        HOSTS,
        NODE_IPS,
        STARTED,
        error_bus=("pc2", 7150, "0.0.0.0"),
    )


def _registered(agent_id: str, **extra: object) -> AgentRecord:
    values: dict[str, object] = {
        "agent_id": agent_id,
        "agent_type": agent_id,
        "host": "10.0.0.5",
        "port": 5709,
        "health_check_port": 5710,
        "capabilities": ["basic_agent"],
        "tags": ["legacy"],
        "metadata": {"location": "MainPC"},
        "check": "none",
        "ttl_s": None,
        "deregister_critical_after_s": 60.0,
        "health": Health.UNKNOWN,
        "health_note": "",
        "registered_at": STARTED,
        "last_seen_at": STARTED,
        "critical_since": None,
    }
    values.update(extra)
    return AgentRecord.model_validate(values)


def _link(*records: AgentRecord, own: str = "mainpc") -> RegistryLink:
    follower = RegistryFollower(None)
    for version, record in enumerate(records, start=1):
        follower.view.apply(
            Change(version=version, op="upsert", agent_id=record.agent_id, record=record)
        )
    follower.last_sync = time.monotonic()
    return RegistryLink(None, follower, 1.0, advertised_host=NODE_IPS[own], builtins=_builtins(own))


def _ask(port: PortHandler, frame: bytes) -> dict[str, object]:
    reply = port.handle(decode(frame, 1 << 20), Received(zmq.Frame(frame)))
    if isinstance(reply, bytes):
        parsed = json.loads(reply)
    else:
        assert isinstance(reply, Reply)
        parsed = json.loads(encode(reply))
    assert isinstance(parsed, dict)
    return parsed


def _endpoint(name: str) -> bytes:
    return json.dumps({"action": "get_agent_endpoint", "agent_name": name}).encode()


def _discover(name: str) -> bytes:
    return json.dumps({"command": "DISCOVER", "payload": {"name": name}}).encode()


def test_every_consolidated_name_has_a_record_on_the_host_that_serves_it() -> None:
    records = _builtins()
    assert set(records) == set(CONSOLIDATED)
    ports = LegacyGatewaySettings().ports
    for name, (main, health) in BUILTIN_SERVICES.items():
        record = records[name]
        host = "mainpc" if main in ports["mainpc"] else "pc2"
        assert (record.host, record.port) == (NODE_IPS[host], ports[host][main]), name
        expected_health = ports[host].get(health) if health is not None else None
        assert record.health_check_port == expected_health, name
        assert record.metadata == {"location": "MainPC" if host == "mainpc" else "PC2"}
    assert (records["RequestCoordinator"].host, records["RequestCoordinator"].port) == (
        MAINPC_IP,
        26002,
    )
    assert records["RequestCoordinator"].health_check_port == 26003
    assert (records["AuthenticationAgent"].host, records["AuthenticationAgent"].port) == (
        PC2_IP,
        7116,
    )
    assert (records[ERROR_BUS].host, records[ERROR_BUS].port) == (PC2_IP, 7150)


def test_a_service_both_hosts_bind_resolves_to_the_asking_gateways_host() -> None:
    assert _builtins("mainpc")["SystemDigitalTwin"].host == MAINPC_IP
    pc2 = _builtins("pc2")["SystemDigitalTwin"]
    assert (pc2.host, pc2.port, pc2.health_check_port) == (PC2_IP, 7120, None)


def test_ports_follow_the_settings_and_unbound_services_have_no_record() -> None:
    ports = {
        "mainpc": {LegacyService.REQUEST_COORDINATOR: 36002},
        "pc2": {LegacyService.AUTHENTICATION: 17116},
    }
    records = _builtins(ports=ports)
    assert set(records) == {"RequestCoordinator", "AuthenticationAgent", ERROR_BUS}
    assert records["RequestCoordinator"].port == 36002
    assert records["RequestCoordinator"].health_check_port is None


def test_without_a_node_ip_the_bind_address_or_loopback_stands_in() -> None:
    settings = LegacyGatewaySettings(bind="127.0.0.1")
    records = builtin_records(settings, "mainpc", HOSTS, {}, STARTED)
    assert records["RequestCoordinator"].host == "127.0.0.1"
    wildcard = builtin_records(LegacyGatewaySettings(), "mainpc", HOSTS, {}, STARTED)
    assert wildcard["AuthenticationAgent"].host == "127.0.0.1"
    assert ERROR_BUS not in wildcard
    lan = builtin_records(LegacyGatewaySettings(bind="10.1.2.3"), "mainpc", HOSTS, {}, STARTED)
    assert lan["ResourceManager"].host == "10.1.2.3"


def test_discover_request_coordinator_on_7120_answers_mainpcs_gateway() -> None:
    """DynamicIdentityAgent's ``_connect_to_request_coordinator`` (section 3.1)."""
    for own in HOSTS:
        reply = _ask(DigitalTwinPort(_link(own=own)), _discover("RequestCoordinator"))
        assert reply == {
            "status": "SUCCESS",
            "payload": {
                "location": "MainPC",
                "name": "RequestCoordinator",
                "ip": MAINPC_IP,
                "host": MAINPC_IP,
                "port": 26002,
                "capabilities": [],
                "health_check_port": 26003,
            },
        }


def test_get_agent_endpoint_authentication_agent_on_7100_answers_pc2s_gateway() -> None:
    reply = _ask(ServiceRegistryPort(_link()), _endpoint("AuthenticationAgent"))
    assert reply == {
        "status": "success",
        "host": PC2_IP,
        "port": 7116,
        "health_check_port": 8116,
        "agent_type": "AuthenticationAgent",
        "capabilities": [],
        "metadata": {"location": "PC2"},
        "last_registered": "2025-07-15T11:00:00.000000",
    }


@pytest.mark.parametrize("name", CONSOLIDATED)
def test_every_name_resolves_in_every_dialect_with_a_registrations_fields(name: str) -> None:
    link = _link(_registered("NLUAgent"))
    sr, sdt = ServiceRegistryPort(link), DigitalTwinPort(link)
    real_endpoint = _ask(sr, _endpoint("NLUAgent"))
    real_discover = _ask(sdt, _discover("NLUAgent"))
    record = link.builtins[name]
    for port in (sr, sdt):
        reply = _ask(port, _endpoint(name))
        assert reply.keys() == real_endpoint.keys()
        assert (reply["status"], reply["host"], reply["port"]) == (
            "success",
            record.host,
            record.port,
        )
    found = _ask(sdt, _discover(name))
    assert found["status"] == "SUCCESS"
    payload, real_payload = found["payload"], real_discover["payload"]
    assert isinstance(payload, dict) and isinstance(real_payload, dict)
    assert payload["ip"] == payload["host"] == record.host and payload["port"] == record.port
    assert set(payload) - {"health_check_port"} == set(real_payload) - {"health_check_port"}
    info = _ask(sdt, json.dumps({"action": "get_agent_info", "agent_name": name}).encode())
    assert info["status"] == "success"
    assert info["agent_info"] == {
        "location": record.metadata["location"],
        "status": "ok",
        "last_seen": "2025-07-15T11:00:00.000000",
        "host": record.host,
        "port": record.port,
        "health_check_port": record.health_check_port,
        "script_path": "",
    }


def test_status_listings_on_7120_include_the_built_in_names() -> None:
    link = _link(_registered("NLUAgent"))
    sdt = DigitalTwinPort(link)
    listed = _ask(sdt, b'{"action":"list_agents"}')["agents"]
    assert isinstance(listed, list) and set(listed) == {"NLUAgent", *CONSOLIDATED}
    every = _ask(sdt, b'{"action":"get_all_agents"}')["agents"]
    assert isinstance(every, dict)
    assert every["RequestCoordinator"] == {
        "location": "MainPC",
        "status": "ok",
        "last_seen": "2025-07-15T11:00:00.000000",
    }
    registered = _ask(sdt, b'{"action":"get_registered_agents"}')["agents"]
    assert isinstance(registered, list)
    assert {"NLUAgent", *CONSOLIDATED} == {a["name"] for a in registered}
    raw = sdt.handle(decode(b"GET_ALL_STATUS", 1 << 20), Received(zmq.Frame(b"")))
    assert isinstance(raw, bytes) and "AuthenticationAgent" in json.loads(raw)
    # The registry's own list (records) is unchanged: built-ins are never stored.
    assert [r.agent_id for r in link.records()] == ["NLUAgent"]


def test_a_real_registration_wins_until_it_is_gone_cached_or_not() -> None:
    link = _link()
    sr, sdt = ServiceRegistryPort(link), DigitalTwinPort(link)
    lookup, discover = _endpoint("RequestCoordinator"), _discover("RequestCoordinator")
    assert _ask(sr, lookup)["host"] == MAINPC_IP
    first = _ask(sdt, discover)
    replayed = sdt.replay(discover)
    assert replayed is not None and json.loads(replayed) == first  # the hot path serves it
    old_agent = _registered("RequestCoordinator", host="10.0.0.9", port=26002)
    link._follower.view.apply(
        Change(version=1, op="upsert", agent_id="RequestCoordinator", record=old_agent)
    )
    assert sr.replay(lookup) is None and sdt.replay(discover) is None
    assert _ask(sr, lookup)["host"] == "10.0.0.9"
    payload = _ask(sdt, discover)["payload"]
    assert isinstance(payload, dict) and payload["ip"] == "10.0.0.9"
    listed = _ask(sdt, b'{"action":"get_registered_agents"}')["agents"]
    assert isinstance(listed, list)
    assert [a["host"] for a in listed if a["name"] == "RequestCoordinator"] == ["10.0.0.9"]
    link._follower.view.apply(
        Change(version=2, op="delete", agent_id="RequestCoordinator", record=None)
    )
    assert sr.replay(lookup) is None
    assert _ask(sr, lookup)["host"] == MAINPC_IP


def test_a_simple_status_update_of_a_built_in_name_is_not_a_registration() -> None:
    link = _link()
    actions = TwinActions(TwinCache(Services(), 5.0), Services(), link, "mainpc", HOSTS)
    reply = _ask(
        DigitalTwinPort(link, actions),
        b'{"action":"register_agent","agent_name":"RequestCoordinator","status":"ok"}',
    )
    assert reply["status"] == "error"
    assert "not registered" in str(reply["error"])
    ok = _ask(DigitalTwinPort(link, actions), b'{"action":"get_ok_agents"}')
    assert ok["count"] == len(CONSOLIDATED)


def test_unknown_names_are_still_not_found() -> None:
    link = _link()
    missing = _ask(ServiceRegistryPort(link), _endpoint("Nobody"))
    assert (missing["status"], missing["error"]) == ("error", "Agent Nobody not found")
    assert _ask(DigitalTwinPort(link), _discover("Nobody")) == {
        "status": "NOT_FOUND",
        "message": "Service 'Nobody' not registered",
    }
