"""The ServiceRegistry / SystemDigitalTwin translation answering reads from a loaded view.

No Ray here: the follower is never started; its view is filled with real registry changes and
marked loaded, as the change feed would. Writes (which go to the actor) are tested in
tests/integration/test_legacy_gateway.py.
"""

from __future__ import annotations

import json
import time

import pytest
import zmq

from actors.registry.follower import RegistryFollower
from actors.registry.models import AgentRecord, Change, Health
from legacy_gateway._codec import Reply, decode, encode
from legacy_gateway._ports import Services
from legacy_gateway.monitor_ports import HealthMonitorPort
from legacy_gateway.registry_port import (
    DigitalTwinPort,
    HealthPort,
    RegistryLink,
    ServiceRegistryPort,
    reachable_host,
)
from legacy_gateway.server import PortHandler, Received
from legacy_gateway.twin_actions import TwinActions
from legacy_gateway.twin_cache import TwinCache

#: The address this host is reached at (a Ray node's IP in a deployment).
LAN_IP = "192.168.100.10"


def _record(agent_id: str, **extra: object) -> AgentRecord:
    values: dict[str, object] = {
        "agent_id": agent_id,
        "agent_type": agent_id,
        "host": "10.0.0.5",
        "port": 5709,
        "health_check_port": 5710,
        "capabilities": ["basic_agent"],
        "tags": ["legacy"],
        "metadata": {"suggestion_port": 5591, "location": "PC2"},
        "check": "none",
        "ttl_s": None,
        "deregister_critical_after_s": 60.0,
        "health": Health.UNKNOWN,
        "health_note": "",
        "registered_at": 1752577200.0,
        "last_seen_at": 1752577200.0,
        "critical_since": None,
    }
    values.update(extra)
    return AgentRecord.model_validate(values)


def _link(*records: AgentRecord, loaded: bool = True) -> RegistryLink:
    follower = RegistryFollower(None)
    for version, record in enumerate(records, start=1):
        follower.view.apply(
            Change(version=version, op="upsert", agent_id=record.agent_id, record=record)
        )
    if loaded:
        follower.last_sync = time.monotonic()
    return RegistryLink(None, follower, 1.0, advertised_host=LAN_IP)


def _ask(port: PortHandler, frame: bytes) -> object:
    reply = port.handle(decode(frame, 1 << 20), Received(zmq.Frame(frame)))
    if isinstance(reply, bytes):  # a hot read answered from the encoded-reply cache
        return json.loads(reply)
    assert isinstance(reply, Reply), "reads never go to the registry actor"
    return json.loads(encode(reply))


def test_get_agent_endpoint_reply_is_section_1_3_field_by_field() -> None:
    port = ServiceRegistryPort(_link(_record("NLUAgent")))
    reply = _ask(port, b'{"action":"get_agent_endpoint","agent_name":"NLUAgent"}')
    assert reply == {
        "status": "success",
        "host": "10.0.0.5",
        "port": 5709,
        "health_check_port": 5710,
        "agent_type": "NLUAgent",
        "capabilities": ["basic_agent"],
        "metadata": {"suggestion_port": 5591, "location": "PC2"},
        "last_registered": "2025-07-15T11:00:00.000000",
    }
    assert _ask(port, b'{"action":"list_agents"}') == {"status": "success", "agents": ["NLUAgent"]}


def test_discover_payload_carries_ip_host_port_and_stored_fields() -> None:
    port = DigitalTwinPort(_link(_record("RequestCoordinator", port=26002)))
    reply = _ask(port, b'{"command":"DISCOVER","payload":{"name":"RequestCoordinator"}}')
    assert reply == {
        "status": "SUCCESS",
        "payload": {
            "name": "RequestCoordinator",
            "ip": "10.0.0.5",
            "host": "10.0.0.5",
            "port": 26002,
            "health_check_port": 5710,
            "capabilities": ["basic_agent"],
            "suggestion_port": 5591,
            "location": "PC2",
        },
    }


def test_all_status_shapes_of_the_twin_use_the_legacy_status_words() -> None:
    records = [
        _record("A"),
        _record("B", health=Health.PASSING),
        _record("C", health=Health.WARNING),
        _record("D", health=Health.CRITICAL),
    ]
    port = DigitalTwinPort(_link(*records))
    seen = {"location": "PC2", "last_seen": "2025-07-15T11:00:00.000000"}
    table = {
        "A": {**seen, "status": "unknown"},
        "B": {**seen, "status": "ok"},  # get_ok_agents' clients test status.lower() == "ok"
        "C": {**seen, "status": "degraded"},
        "D": {**seen, "status": "error"},
    }
    # Section 3.2: the raw GET_ALL_STATUS reply is the bare map, no "status" key beside it.
    assert _ask(port, b"GET_ALL_STATUS") == table
    assert _ask(port, b'{"action":"get_all_agents"}') == {"status": "success", "agents": table}
    info = _ask(port, b'{"action":"get_agent_info","agent_name":"B"}')
    assert info == {
        "status": "success",
        "agent_info": {
            **table["B"],
            "host": "10.0.0.5",
            "port": 5709,
            "health_check_port": 5710,
            "script_path": "",
        },
    }
    listed = _ask(port, b'{"action":"get_registered_agents"}')
    assert isinstance(listed, dict) and listed["status"] == "success"
    assert listed["agents"][3] == {
        "name": "D",
        "status": "error",
        "location": "PC2",
        "last_updated": "2025-07-15T11:00:00.000000",
        "host": "10.0.0.5",
        "port": 5709,
        "health_check_port": 5710,
        "agent_type": "D",
        "capabilities": ["basic_agent"],
        "script_path": "",
    }
    assert [a["status"] for a in listed["agents"]] == ["unknown", "ok", "degraded", "error"]


def test_health_monitor_and_ok_agents_use_the_same_words() -> None:
    link = _link(_record("A"), _record("B", health=Health.PASSING))
    monitor = HealthMonitorPort(link, 7114)
    status = _ask(monitor, b'{"action":"get_status"}')
    assert isinstance(status, dict)
    assert status["agent_status"] == {"A": "unknown", "B": "ok"}
    actions = TwinActions(TwinCache(Services(), 5.0), Services(), link, "pc2", ("mainpc", "pc2"))
    assert DigitalTwinPort(link, actions).handle(
        decode(b'{"action":"get_ok_agents"}', 1 << 20), Received(zmq.Frame(b""))
    ) == Reply(status="success", count=1, agents=["B"])


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b'{"action":"get_agent_endpoint","agent_name":"A"}', {"status": "error"}),
        (b'{"command":"DISCOVER","payload":{"name":"A"}}', {"status": "ERROR"}),
        (b'{"action":"get_all_agents"}', {"status": "error"}),
    ],
)
def test_reads_before_the_view_is_loaded_are_errors_not_not_found(
    frame: bytes, expected: dict[str, str]
) -> None:
    reply = _ask(DigitalTwinPort(_link(_record("A"), loaded=False)), frame)
    assert isinstance(reply, dict)
    assert expected.items() <= reply.items()
    assert reply["message"] == "cluster: the agent registry is not loaded yet; retry in a moment"


def test_health_is_degraded_until_the_view_is_loaded_and_followed() -> None:
    unloaded = _ask(HealthPort("ServiceRegistry", _link(loaded=False)), b"anything")
    assert isinstance(unloaded, dict)
    assert (unloaded["status"], unloaded["ready"]) == ("degraded", False)
    # Loaded but the follower task is not running: still not "ok".
    stale = _ask(HealthPort("ServiceRegistry", _link()), b"anything")
    assert isinstance(stale, dict) and stale["status"] == "degraded"


def test_cached_frames_follow_record_replacement() -> None:
    link = _link(_record("A"))
    port = ServiceRegistryPort(link)
    ask = b'{"action":"get_agent_endpoint","agent_name":"A"}'
    first = port.handle(decode(ask, 1 << 20), Received(zmq.Frame(ask)))
    again = port.handle(decode(ask, 1 << 20), Received(zmq.Frame(ask)))
    assert again is first  # served from the cache
    # A re-registration replaces the record object: the next lookup sees the new port.
    link._follower.view.apply(
        Change(version=2, op="upsert", agent_id="A", record=_record("A", port=6000))
    )
    assert _ask(port, ask)["port"] == 6000  # type: ignore[index]
    link._follower.view.apply(Change(version=3, op="delete", agent_id="A", record=None))
    assert _ask(port, ask) == {
        "status": "error",
        "error": "Agent A not found",
        "message": "Agent A not found",
    }


def test_a_repeated_frame_is_replayed_until_its_record_changes() -> None:
    link = _link(_record("NLUAgent"))
    sr, sdt = ServiceRegistryPort(link), DigitalTwinPort(link)
    lookup = b'{"action":"get_agent_endpoint","agent_name":"NLUAgent"}'
    discover = b'{"command":"DISCOVER","payload":{"name":"NLUAgent"}}'
    assert sr.replay(lookup) is None and sdt.replay(discover) is None  # never asked yet
    first, found = _ask(sr, lookup), _ask(sdt, discover)
    replayed, rediscovered = sr.replay(lookup), sdt.replay(discover)
    assert replayed is not None and json.loads(replayed) == first
    assert rediscovered is not None and json.loads(rediscovered) == found
    # The agent re-registers elsewhere: the cached frames must not answer any more.
    moved = _record("NLUAgent", port=6000)
    link._follower.view.apply(Change(version=2, op="upsert", agent_id="NLUAgent", record=moved))
    assert sr.replay(lookup) is None and sdt.replay(discover) is None
    assert _ask(sr, lookup)["port"] == 6000  # type: ignore[index]
    # Deregistered: the slow path answers "not found".
    link._follower.view.apply(Change(version=3, op="delete", agent_id="NLUAgent", record=None))
    assert sr.replay(lookup) is None
    assert _ask(sr, lookup) == {
        "status": "error",
        "error": "Agent NLUAgent not found",
        "message": "Agent NLUAgent not found",
    }


def _lookup(name: str, request_id: str) -> bytes:
    """What BaseAgent.send_request_to_agent sends to 7100 (section 2.3): fresh id every time."""
    frame = {
        "action": "get_agent_endpoint",
        "agent_name": name,
        "source_agent": "NLUAgent",
        "request_id": request_id,
        "timestamp": f"2025-07-15T11:00:0{request_id[-1]}",
    }
    return json.dumps(frame).encode()


def test_a_lookup_with_a_new_request_id_is_answered_without_the_typed_decode() -> None:
    link = _link(_record("TTS"))
    sr, sdt = ServiceRegistryPort(link), DigitalTwinPort(link)
    first = _ask(sr, _lookup("TTS", "id-1"))
    assert isinstance(first, dict) and first["port"] == 5709
    # Another request id: not the same frame, still the same encoded reply from the cache.
    answered = sr.replay(_lookup("TTS", "id-2"))
    assert answered is not None and json.loads(answered) == first
    discover = b'{"command":"DISCOVER","payload":{"name":"TTS"},"request_id":"r1"}'
    found = _ask(sdt, discover)
    again = sdt.replay(b'{"command":"DISCOVER","payload":{"name":"TTS"},"request_id":"r2"}')
    assert again is not None and json.loads(again) == found
    # Not a lookup, an unknown agent, or a malformed frame: the normal path answers.
    assert sr.replay(_lookup("Nobody", "id-3")) is None
    assert sr.replay(b'{"action":"list_agents"}') is None
    assert sr.replay(b'{"action":"get_agent_endpoint","agent_name":7}') is None
    assert sr.replay(b'{"action":"get_agent_endpoint",') is None
    # A frame over 1 KiB is never answered from the caches (the frame limit may be 1 KiB).
    big = _lookup("TTS", "id-4")[:-1] + b', "pad": "' + b"x" * 1024 + b'"}'
    assert sr.replay(big) is None


def test_a_re_registration_changes_the_cached_lookup_reply() -> None:
    link = _link(_record("TTS"))
    sr = ServiceRegistryPort(link)
    _ask(sr, _lookup("TTS", "id-1"))
    cached = sr.replay(_lookup("TTS", "id-2"))
    assert cached is not None and json.loads(cached)["port"] == 5709
    # Another agent changes: the version moves, the reply for TTS is still valid.
    other = Change(version=2, op="upsert", agent_id="X", record=_record("X"))
    link._follower.view.apply(other)
    assert sr.replay(_lookup("TTS", "id-3")) == cached
    moved = Change(version=3, op="upsert", agent_id="TTS", record=_record("TTS", port=6000))
    link._follower.view.apply(moved)
    assert sr.replay(_lookup("TTS", "id-4")) is None
    assert _ask(sr, _lookup("TTS", "id-5"))["port"] == 6000  # type: ignore[index]
    replayed = sr.replay(_lookup("TTS", "id-6"))
    assert replayed is not None and json.loads(replayed)["port"] == 6000


@pytest.mark.parametrize(
    ("sent", "peer", "published"),
    [
        ("10.0.0.5", "127.0.0.1", "10.0.0.5"),  # a LAN address is kept
        ("127.0.0.1", "10.0.0.7", "10.0.0.7"),  # from the other host: its connection address
        ("127.0.1.1", "", LAN_IP),  # gethostbyname(hostname) on Debian, on this host
        ("localhost", "127.0.0.1", LAN_IP),
        ("0.0.0.0", "::ffff:127.0.0.1", LAN_IP),
        (None, "10.0.0.7", "10.0.0.7"),  # register_service never sends an ip
        (None, "", LAN_IP),
    ],
)
def test_a_loopback_registrant_is_published_at_a_reachable_address(
    sent: str | None, peer: str, published: str
) -> None:
    assert reachable_host(sent, peer, _link()) == published


def test_without_a_lan_address_a_local_registrant_keeps_its_address() -> None:
    one_machine = RegistryLink(None, RegistryFollower(None), 1.0)
    assert reachable_host("127.0.0.1", "127.0.0.1", one_machine) == "127.0.0.1"
    assert reachable_host(None, "", one_machine) == "127.0.0.1"
    assert reachable_host("127.0.0.1", "10.0.0.7", one_machine) == "10.0.0.7"


def test_register_needs_only_a_name_and_keeps_the_payload_as_sent() -> None:
    port = DigitalTwinPort(_link(_record("FusedAudioPreprocessor")))
    discover = b'{"command":"DISCOVER","payload":{"name":"FusedAudioPreprocessor"}}'
    assert _ask(port, discover)["payload"]["port"] == 5709  # type: ignore[index]
    assert port.replay(discover) is not None  # the registry's record, cached
    # FusedAudioPreprocessor's clients read clean_audio_pub_port/vad_port, not port (section 6).
    payload = {"name": "FusedAudioPreprocessor", "clean_audio_pub_port": 6578, "vad_port": 6579}
    register = json.dumps({"command": "REGISTER", "payload": payload}).encode()
    assert _ask(port, register) == {
        "status": "SUCCESS",
        "message": "Service FusedAudioPreprocessor registered successfully",
    }
    assert port.replay(discover) is None  # the payload registered last answers, not the cache
    assert _ask(port, discover) == {
        "status": "SUCCESS",
        "payload": {**payload, "ip": LAN_IP, "host": LAN_IP},
    }
    assert _ask(port, b'{"command":"REGISTER","payload":{"port":1}}') == {
        "status": "ERROR",
        "message": "Missing required field 'name' in registration payload",
    }
