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
from legacy_gateway.registry_port import (
    DigitalTwinPort,
    HealthPort,
    RegistryLink,
    ServiceRegistryPort,
)
from legacy_gateway.server import Received


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
    return RegistryLink(None, follower, 1.0)


def _ask(port: ServiceRegistryPort | DigitalTwinPort | HealthPort, frame: bytes) -> object:
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


def test_all_status_shapes_of_the_twin() -> None:
    port = DigitalTwinPort(_link(_record("A"), _record("B", health=Health.PASSING)))
    status = {"location": "PC2", "status": "unknown", "last_seen": "2025-07-15T11:00:00.000000"}
    assert _ask(port, b"GET_ALL_STATUS") == {
        "status": "success",
        "A": status,
        "B": {**status, "status": "passing"},
    }
    agents = _ask(port, b'{"action":"get_all_agents"}')
    assert agents == {
        "status": "success",
        "agents": {"A": status, "B": {**status, "status": "passing"}},
    }
    info = _ask(port, b'{"action":"get_agent_info","agent_name":"A"}')
    assert info == {
        "status": "success",
        "agent_info": {
            **status,
            "host": "10.0.0.5",
            "port": 5709,
            "health_check_port": 5710,
            "script_path": "",
        },
    }


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
