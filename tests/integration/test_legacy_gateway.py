"""Legacy clients' frames (docs/legacy-protocol.md) against the deployed gateway, field by field.

The session system runs both deployments of the ``legacy`` app on the one test node, each on
random ports: ``mainpc`` (ServiceRegistry, its health port, SystemDigitalTwin) and ``pc2``
(SystemDigitalTwin).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import httpx
import pytest

from cluster.base.settings import LegacyService, Settings
from tests.conftest import wait_for_condition
from tests.integration._legacy_client import (  # noqa: F401 (fixtures)
    LegacyClient,
    client_fixture,
    ports_fixture,
    zctx_fixture,
)

pytestmark = pytest.mark.integration

SR = LegacyService.SERVICE_REGISTRY
SR_HEALTH = LegacyService.SERVICE_REGISTRY_HEALTH
SDT = LegacyService.SYSTEM_DIGITAL_TWIN


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_service_registry_register_then_lookup_as_section_1_3(
    client: dict[str, LegacyClient],
) -> None:
    sr = client[f"mainpc/{SR}"]
    name = _name("NLUAgent")
    reply = sr.send_json(
        {
            "action": "register_agent",
            "registration_data": {
                "agent_id": name,
                "agent_type": "NLUAgent",
                "host": "10.0.0.5",
                "port": 5709,
                "health_check_port": 5710,
                "capabilities": ["basic_agent"],
                "dependencies": [],
                "metadata": {"owner": "ops"},
            },
        }
    )
    assert reply == {"status": "success"}
    found = sr.send_json({"action": "get_agent_endpoint", "agent_name": name})
    assert found["status"] == "success"
    assert (found["host"], found["port"], found["health_check_port"]) == ("10.0.0.5", 5709, 5710)
    assert found["agent_type"] == "NLUAgent"
    assert found["capabilities"] == ["basic_agent"]
    assert found["metadata"] == {"owner": "ops"}
    assert abs(datetime.fromisoformat(found["last_registered"]).timestamp() - time.time()) < 600
    assert name in sr.send_json({"action": "list_agents"})["agents"]
    missing = sr.send_json({"action": "get_agent_endpoint", "agent_name": "NoSuchAgent"})
    assert missing["status"] == "error"
    assert missing["error"] == "Agent NoSuchAgent not found"
    assert sr.send_json({"action": "get_agent_endpoint"})["error"] == "Missing 'agent_name'"


def test_flat_registration_without_agent_type_and_with_enrichment(
    client: dict[str, LegacyClient],
) -> None:
    sr = client[f"mainpc/{SR}"]
    name = _name("MeshAgent")
    # The H discovery client's flat form (section 3.1), plus send_request_to_agent's enrichment.
    reply = sr.send_json(
        {
            "action": "register_agent",
            "agent_id": name,
            "host": "127.0.0.1",
            "port": 6001,
            "health_check_port": 6002,
            "capabilities": [],
            "metadata": {},
            "source_agent": "X",
            "request_id": str(uuid.uuid4()),
            "timestamp": "2025-07-15T11:00:00",
        }
    )
    assert reply == {"status": "success"}
    found = sr.send_json({"action": "get_agent_endpoint", "agent_name": name, "request_id": "1"})
    assert (found["status"], found["port"], found["agent_type"]) == ("success", 6001, name)
    bad = sr.send_json({"action": "register_agent", "agent_id": name, "port": "x"})
    assert bad["status"] == "error"
    assert "host" in bad["error"] and "port" in bad["error"]


def test_base_agent_registration_on_pc2_7120_is_found_on_mainpc_7100(
    client: dict[str, LegacyClient],
) -> None:
    name = _name("ResourceManager")
    frame = {  # section 2.2, exactly what BaseAgent sends to localhost:7120
        "action": "register_agent",
        "agent_name": name,
        "status": "HEALTHY",
        "location": "MainPC",
        "registration_data": {
            "agent_id": name,
            "agent_type": "ResourceManager",
            "host": "127.0.0.1",
            "port": 7113,
            "health_check_port": 7114,
            "capabilities": ["basic_agent"],
            "dependencies": [],
            "metadata": {"start_time": "2025-07-15T11:00:00", "python_version": "3.11.9"},
        },
        "source_agent": name,
        "request_id": str(uuid.uuid4()),
        "timestamp": "2025-07-15T11:00:00",
    }
    assert client[f"pc2/{SDT}"].send_json(frame)["status"] == "success"
    started = time.monotonic()
    lookup = {"action": "get_agent_endpoint", "agent_name": name}

    def visible() -> bool:
        return bool(client[f"mainpc/{SR}"].send_json(lookup)["status"] == "success")

    wait_for_condition(visible, timeout_s=5, interval_s=0.005)
    # Each deployment follows the registry's change feed: well inside the 100 ms.
    assert time.monotonic() - started < 1.0
    found = client[f"mainpc/{SR}"].send_json(lookup)
    assert (found["host"], found["port"], found["health_check_port"]) == ("127.0.0.1", 7113, 7114)


def test_sdt_command_dialect_register_and_discover(client: dict[str, LegacyClient]) -> None:
    sdt = client[f"mainpc/{SDT}"]
    name = _name("RequestCoordinator")
    # register_service(name, port=26002, additional_info={"suggestion_port": 5591}): no ip
    reply = sdt.send_json(
        {"command": "REGISTER", "payload": {"name": name, "port": 26002, "suggestion_port": 5591}}
    )
    assert reply == {"status": "SUCCESS", "message": f"Service {name} registered successfully"}
    found = sdt.send_json({"command": "DISCOVER", "payload": {"name": name}})
    assert found["status"] == "SUCCESS"
    payload = found["payload"]
    # The registrant's connection address stands in for the ip it never sent.
    assert (payload["name"], payload["ip"], payload["host"]) == (name, "127.0.0.1", "127.0.0.1")
    assert (payload["port"], payload["suggestion_port"]) == (26002, 5591)
    # ... and the other host's 7120 and the ServiceRegistry see it too.
    again = client[f"pc2/{SDT}"].send_json({"command": "DISCOVER", "payload": {"name": name}})
    assert again["status"] == "SUCCESS"
    sr = client[f"mainpc/{SR}"].send_json({"action": "get_agent_endpoint", "agent_name": name})
    assert (sr["status"], sr["port"]) == ("success", 26002)
    missing = sdt.send_json({"command": "DISCOVER", "payload": {"name": "Nobody"}})
    assert missing == {"status": "NOT_FOUND", "message": "Service 'Nobody' not registered"}
    no_name = sdt.send_json({"command": "REGISTER", "payload": {"port": 1}})
    assert no_name == {
        "status": "ERROR",
        "message": "Missing required field 'name' in registration payload",
    }
    assert sdt.send_json({"command": "PING"}) == {"status": "SUCCESS", "message": "pong"}
    unknown = sdt.send_json({"command": "FLY", "payload": {}})
    assert unknown == {"status": "ERROR", "message": "Unknown command: FLY"}


def test_sdt_action_dialect_reads(client: dict[str, LegacyClient]) -> None:
    sdt = client[f"pc2/{SDT}"]
    name = _name("MemoryClient")
    tts = {"name": name, "port": 5562, "capabilities": ["tts"], "location": "PC2"}
    assert sdt.send_json({"command": "REGISTER", "payload": tts})["status"] == "SUCCESS"
    pong = sdt.send_json({"action": "ping"})
    assert (pong["status"], pong["message"]) == ("ok", "pong")
    datetime.fromisoformat(pong["timestamp"])
    every = sdt.send_json({"action": "get_all_agents"})
    assert every["status"] == "success"
    assert every["agents"][name]["location"] == "PC2"
    assert every["agents"][name]["status"] == "unknown"  # legacy agents never heartbeat
    listed = sdt.send_json({"action": "get_registered_agents"})
    [mine] = [a for a in listed["agents"] if a["name"] == name]
    assert (mine["port"], mine["host"], mine["capabilities"]) == (5562, "127.0.0.1", ["tts"])
    info = sdt.send_json({"action": "get_agent_info", "agent_name": name})
    assert info["status"] == "success"
    assert (info["agent_info"]["port"], info["agent_info"]["location"]) == (5562, "PC2")
    missing = sdt.send_json({"action": "get_agent_info", "agent_name": "Nobody"})
    assert missing["error"] == "Agent Nobody not found in registry"
    status = sdt.raw(b"GET_ALL_STATUS")
    # Section 3.2: the bare {agent: {location, status, last_seen}} map, legacy status words.
    assert status[name] == every["agents"][name]
    assert "status" not in status
    assert {"ok", "degraded", "error", "unknown"} >= {a["status"] for a in status.values()}


def test_sdt_register_needs_only_a_name(client: dict[str, LegacyClient]) -> None:
    sdt = client[f"mainpc/{SDT}"]
    name = _name("FusedAudioPreprocessor")
    # Its clients read clean_audio_pub_port/vad_port (section 6); it sends no port.
    payload = {"name": name, "clean_audio_pub_port": 6578, "vad_port": 6579, "location": "MainPC"}
    reply = sdt.send_json({"command": "REGISTER", "payload": payload})
    assert reply == {"status": "SUCCESS", "message": f"Service {name} registered successfully"}
    found = sdt.send_json({"command": "DISCOVER", "payload": {"name": name}, "request_id": "1"})
    assert found == {
        "status": "SUCCESS",
        "payload": {**payload, "ip": "127.0.0.1", "host": "127.0.0.1"},
    }
    # Registered with a port later: the registry's record answers, on every port.
    reply = sdt.send_json({"command": "REGISTER", "payload": {**payload, "port": 6577}})
    assert reply["status"] == "SUCCESS"
    again = sdt.send_json({"command": "DISCOVER", "payload": {"name": name}, "request_id": "2"})
    assert (again["payload"]["port"], again["payload"]["vad_port"]) == (6577, 6579)


@pytest.mark.parametrize("port_name", [f"mainpc/{SR}", f"mainpc/{SDT}", f"pc2/{SDT}"])
@pytest.mark.parametrize("verb", ["ping", "health", "health_check"])
def test_health_verbs_on_every_main_port(
    client: dict[str, LegacyClient], port_name: str, verb: str
) -> None:
    reply = client[port_name].send_json({"action": verb})
    assert reply["status"] == "ok"


@pytest.mark.parametrize(
    "frame", [b'{"action":"health_check"}', b"anything", b"\xff\x00", b"", b"ping"]
)
def test_dedicated_health_port_answers_any_payload_with_h1(
    client: dict[str, LegacyClient], frame: bytes
) -> None:
    reply = client[f"mainpc/{SR_HEALTH}"].raw(frame)
    assert reply["status"] == "ok"
    assert reply["ready"] is True and reply["initialized"] is True
    assert reply["message"] == "ServiceRegistry is healthy"
    assert isinstance(reply["uptime"], float) and isinstance(reply["active_threads"], int)
    datetime.fromisoformat(reply["timestamp"])


def test_raw_ping_on_sdt_gets_the_health_dict(client: dict[str, LegacyClient]) -> None:
    reply = client[f"mainpc/{SDT}"].raw(b"ping")
    assert (reply["status"], reply["message"]) == ("ok", "SystemDigitalTwin is healthy")


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"{not json", "Unknown command: {not json"),
        (
            b"\xff\xfe\xfd",
            "Invalid UTF-8 request: 'utf-8' codec can't decode byte 0xff in position 0: "
            "invalid start byte",
        ),
        (b"[1,2,3]", "Invalid message format: expected a JSON object, got list"),
        (b'{"action": 7}', "'action' must be a string, got int"),
        (b'{"action": "fly_to_moon"}', "Unknown action: fly_to_moon"),
        (b'{"hello": "world"}', "Missing 'action' (or 'command')"),
        (b"x" * (2 * 1024 * 1024), "Request too large: 2097152 bytes (limit 1048576)"),
    ],
)
@pytest.mark.parametrize("port_name", [f"mainpc/{SR}", f"pc2/{SDT}"])
def test_bad_requests_get_a_clear_error_and_the_socket_stays_usable(
    client: dict[str, LegacyClient], port_name: str, frame: bytes, error: str
) -> None:
    reply = client[port_name].raw(frame)
    assert reply == {"status": "error", "error": error, "message": error}
    assert client[port_name].send_json({"action": "ping"})["status"] == "ok"


def test_wrong_types_in_the_command_dialect_get_error_replies(
    client: dict[str, LegacyClient],
) -> None:
    sdt = client[f"mainpc/{SDT}"]
    bad_payload = sdt.send_json({"command": "DISCOVER", "payload": [1]})
    assert bad_payload == {"status": "ERROR", "message": "'payload' must be an object, got list"}
    bad_port = sdt.send_json({"command": "REGISTER", "payload": {"name": "x", "port": "high"}})
    assert bad_port["status"] == "ERROR" and "port" in bad_port["message"]


def test_ports_route_lists_every_bound_port(
    http: httpx.Client, aisys_system: Settings, ports: dict[str, int]
) -> None:
    response = http.get("/legacy/ports")
    assert response.status_code == 200, response.text
    listed = {f"{p['host']}/{p['service']}": p["port"] for p in response.json()}
    # Every port is bound once; one listed by both hosts (SystemDigitalTwin) is served by the
    # deployment that bound it first, since the test node carries both host tags.
    assert listed.items() <= ports.items()
    assert sorted(listed.values()) == sorted(set(ports.values()))
    assert all(p["running"] for p in response.json())
    anonymous = httpx.get(f"http://127.0.0.1:{aisys_system.ports.http}/legacy/ports", timeout=30)
    assert anonymous.status_code == 401


RC = LegacyService.REQUEST_COORDINATOR


def test_request_coordinator_type_dispatch_queues_in_core(
    client: dict[str, LegacyClient], http: httpx.Client
) -> None:
    rc = client[f"mainpc/{RC}"]
    reply = rc.send_json(
        {
            "type": "text",
            "data": "what is on my calendar",
            "context": {"original_text": "x"},
            "metadata": {"user_type": "premium", "urgency": "high", "was_translated": False},
            "user_id": "alice",
            "request_id": "legacy-1",
        }
    )
    assert (reply["status"], reply["message"]) == ("success", "Text request queued")
    assert reply["data"] is None and reply["error"] is None and reply["speak"] is None
    datetime.fromisoformat(reply["timestamp"])
    request_id = reply["metadata"]["request_id"]
    status = http.get(f"/core/requests/{request_id}")
    assert status.status_code == 200, status.text
    assert status.json()["type"] == "text"
    bad = rc.send_json({"type": "audio", "audio_data": "not base64!!"})
    assert bad["status"] == "error" and bad["error"].startswith("Invalid audio request")
    assert rc.send_json({"type": "smell"})["error"] == "Unknown request type: smell"


def test_request_coordinator_actions_its_clients_send(
    client: dict[str, LegacyClient], http: httpx.Client
) -> None:
    rc = client[f"mainpc/{RC}"]
    assert rc.send_json({"action": "ping"}) == {
        "status": "success",
        "message": "pong",
        "service": "RequestCoordinator",
    }
    health = rc.send_json({"action": "health_check"})
    assert (health["status"], health["service"]) == ("ok", "RequestCoordinator")
    queue = rc.send_json({"action": "get_queue_status"})
    assert queue["status"] == "success" and isinstance(queue["queue"], list)
    assert all(e["task_type"] in ("chat", "asr", "image_generation") for e in queue["queue"])
    task = rc.send_json({"action": "execute_task", "task": {"description": "water the plants"}})
    assert (task["status"], task["message"]) == ("success", "Task queued")
    reminder = rc.send_json({"action": "send_reminder", "reminder": {"text": "save your work"}})
    assert (reminder["status"], reminder["message"]) == ("success", "Reminder queued")
    for queued in (task, reminder):
        found = http.get(f"/core/requests/{queued['metadata']['request_id']}")
        assert found.status_code == 200, found.text
    assert rc.send_json({"action": "generate"})["error"] == "Unknown action: generate"
    # The health scripts' raw ping on the main port, and any payload on the health port (26003).
    assert (rc.raw(b"ping")["status"], rc.raw(b"ping")["service"]) == ("ok", "RequestCoordinator")
    rc_health = client[f"mainpc/{LegacyService.REQUEST_COORDINATOR_HEALTH}"]
    for frame in (b'{"type": "text", "data": "not a request here"}', b"anything", b"\xff"):
        reply = rc_health.raw(frame)
        assert (reply["status"], reply["service"]) == ("ok", "RequestCoordinator"), frame
        assert isinstance(reply["queue_size"], int)
