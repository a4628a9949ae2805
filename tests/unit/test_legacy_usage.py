"""Counting who calls each legacy port (``aisys migrate status``): cheap, bounded, named."""

from __future__ import annotations

import itertools

from legacy_gateway._codec import decode
from legacy_gateway.usage import OTHER, CallCounter, call_action, call_agent, source_agent


def _clock() -> object:
    ticks = itertools.count(1000)
    return lambda: float(next(ticks))


def test_calls_are_counted_per_action_caller_and_address_with_the_last_time() -> None:
    counter = CallCounter(max_keys=10, clock=_clock())  # type: ignore[arg-type]
    for _ in range(3):
        counter.count("get_agent_endpoint", "NLUAgent", "10.0.0.7")
    counter.count("register_agent", "NLUAgent", "10.0.0.7")
    counter.count("get_agent_endpoint", None, "10.0.0.8")
    stats = counter.snapshot()
    assert [(s.action, s.agent, s.peer, s.calls) for s in stats] == [
        ("get_agent_endpoint", "NLUAgent", "10.0.0.7", 3),
        ("get_agent_endpoint", None, "10.0.0.8", 1),
        ("register_agent", "NLUAgent", "10.0.0.7", 1),
    ]
    assert stats[0].last_seen_at == 1002.0 and stats[0].last_seen.startswith("1970-01-01T00:16")


def test_the_table_is_bounded_and_the_rest_is_counted_as_other() -> None:
    counter = CallCounter(max_keys=5)
    for i in range(1000):
        counter.count(f"action-{i}", f"agent-{i}", "10.0.0.9")
    counter.count("action-0", "agent-0", "10.0.0.9")  # a known key still counts as itself
    stats = {(s.action, s.agent): s.calls for s in counter.snapshot()}
    assert len(stats) == 6
    assert stats[(OTHER, OTHER)] == 995 and stats[("action-0", "agent-0")] == 2
    assert counter.overflowed == 995


def test_the_caller_is_the_source_agent_else_the_name_it_registers() -> None:
    enriched = (
        b'{"action":"get_agent_endpoint","agent_name":"SystemDigitalTwin",'
        b'"source_agent":"ResourceManager","request_id":"1"}'
    )
    assert source_agent(enriched) == "ResourceManager"
    request = decode(enriched, 1 << 20)
    assert call_action(request) == "get_agent_endpoint"
    assert call_agent(request, enriched) == "ResourceManager"  # not the agent looked up
    nested = b'{"action":"register_agent","registration_data":{"agent_id":"TTS","port":1}}'
    assert call_agent(decode(nested, 1 << 20), nested) == "TTS"
    command = b'{"command":"register","payload":{"name":"Vision","port":2}}'
    assert call_action(decode(command, 1 << 20)) == "REGISTER"
    assert call_agent(decode(command, 1 << 20), command) == "Vision"
    assert call_action(decode(b"ping", 1 << 20)) == "ping"
    assert call_action(decode(b"\xff", 1 << 20)) == "(invalid)"
    long_action = b'{"action":"' + b"x" * 500 + b'"}'
    assert len(call_action(decode(long_action, 1 << 20))) <= 67
    assert call_agent(decode(b'{"action":"list_agents"}', 1 << 20), b"") is None
