"""The legacy codec reads the frames of docs/legacy-protocol.md and always writes valid JSON."""

from __future__ import annotations

import json

import pytest

from legacy_gateway._codec import (
    ActionError,
    ActionRequest,
    CommandError,
    CommandRequest,
    Dialect,
    InvalidRequest,
    RawRequest,
    Reply,
    TypedRequest,
    decode,
    dialect_of,
    encode,
    error_reply,
    iso_time,
    unknown,
)

LIMIT = 64 * 1024

# (frame as a legacy client puts it on the wire, expected request)
DECODED = [
    # 1.3 / 4.1 ServiceRegistry, nested registration
    (
        b'{"action":"register_agent","registration_data":{"agent_id":"NLUAgent",'
        b'"agent_type":"NLUAgent","host":"10.0.0.5","port":5709}}',
        ActionRequest(
            action="register_agent",
            fields={
                "registration_data": {
                    "agent_id": "NLUAgent",
                    "agent_type": "NLUAgent",
                    "host": "10.0.0.5",
                    "port": 5709,
                }
            },
        ),
    ),
    # 2.3 enrichment fields are dropped
    (
        json.dumps(
            {
                "action": "get_agent_endpoint",
                "agent_name": "NLUAgent",
                "source_agent": "X",
                "request_id": "6f1c",
                "timestamp": "2025-07-15T11:00:00",
            }
        ).encode(),
        ActionRequest(action="get_agent_endpoint", fields={"agent_name": "NLUAgent"}),
    ),
    # 1.3 / 3.2 command dialect
    (
        b'{"command":"REGISTER","payload":{"name":"StreamingTtsAgent","port":5562}}',
        CommandRequest(
            command="REGISTER",
            payload={"name": "StreamingTtsAgent", "port": 5562},
            fields={},
        ),
    ),
    (
        b'{"command":"UNLOAD_MODEL","model_name":"phi-2"}',
        CommandRequest(command="UNLOAD_MODEL", payload={}, fields={"model_name": "phi-2"}),
    ),
    # 3.2 "command" wins over "action", as in the old SDT
    (
        b'{"command":"DISCOVER","action":"x","payload":{"name":"RC"}}',
        CommandRequest(command="DISCOVER", payload={"name": "RC"}, fields={"action": "x"}),
    ),
    # 4.3 RequestCoordinator's type-dispatched requests
    (
        b'{"type":"text","data":"hi","metadata":{"urgency":"high"},"request_id":"r1"}',
        TypedRequest(type="text", fields={"data": "hi", "metadata": {"urgency": "high"}}),
    ),
    # 3.2 / 4.2 raw strings, sent with send_string or send_json
    (b"ping", RawRequest(text="ping")),
    (b'"ping"', RawRequest(text="ping")),
    (b"GET_ALL_STATUS", RawRequest(text="GET_ALL_STATUS")),
    (b"get_suggestion\n", RawRequest(text="get_suggestion")),
]


@pytest.mark.parametrize(("frame", "expected"), DECODED)
def test_legacy_frames_decode_to_typed_requests(frame: bytes, expected: object) -> None:
    assert decode(frame, LIMIT) == expected


INVALID = [
    (b"\xff\xfe\x00garbage", Dialect.ACTION, "Invalid UTF-8 request"),
    (b"[1, 2]", Dialect.ACTION, "expected a JSON object, got list"),
    (b"42", Dialect.ACTION, "expected a JSON object, got int"),
    (b"null", Dialect.ACTION, "expected a JSON object, got NoneType"),
    (b'{"agent_name": "x"}', Dialect.ACTION, "Missing 'action'"),
    (b'{"action": 5}', Dialect.ACTION, "'action' must be a string, got int"),
    (b'{"command": ["DISCOVER"]}', Dialect.COMMAND, "'command' must be a string, got list"),
    (b'{"command": "DISCOVER", "payload": "x"}', Dialect.COMMAND, "'payload' must be an object"),
    (b"[" * 100_000, Dialect.ACTION, "Request too large"),
    (b"[" * 50_000, Dialect.ACTION, "Invalid JSON request: nested too deep"),
    # Valid JSON that Python refuses to read: an integer of over 4300 digits.
    (b'{"action": "ping", "x": ' + b"7" * 5000 + b"}", Dialect.ACTION, "Invalid JSON request"),
]


@pytest.mark.parametrize(("frame", "dialect", "reason"), INVALID)
def test_unreadable_frames_become_errors_in_the_callers_dialect(
    frame: bytes, dialect: Dialect, reason: str
) -> None:
    request = decode(frame, LIMIT)
    assert isinstance(request, InvalidRequest)
    assert request.dialect is dialect
    assert reason in request.reason
    assert dialect_of(request) is dialect


def test_size_limit_is_the_given_one() -> None:
    frame = b'{"action": "list_agents"}'
    assert isinstance(decode(frame, len(frame)), ActionRequest)
    refused = decode(frame, len(frame) - 1)
    assert isinstance(refused, InvalidRequest)
    assert f"{len(frame)} bytes (limit {len(frame) - 1})" in refused.reason


def test_error_replies_use_each_dialects_vocabulary() -> None:
    action = json.loads(encode(error_reply(Dialect.ACTION, "Agent X not found")))
    assert action == {
        "status": "error",
        "error": "Agent X not found",
        "message": "Agent X not found",
    }
    command = json.loads(encode(error_reply(Dialect.COMMAND, "boom")))
    assert command == {"status": "ERROR", "message": "boom"}
    assert isinstance(error_reply(Dialect.RAW, "x"), ActionError)
    assert isinstance(error_reply(Dialect.COMMAND, "x"), CommandError)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            ActionRequest(action="fly", fields={}),
            {"status": "error", "error": "Unknown action: fly"},
        ),
        (
            CommandRequest(command="GET_METRICZ", payload={}, fields={}),
            {"status": "ERROR", "message": "Unknown command: GET_METRICZ"},
        ),
        (RawRequest(text="x" * 500), {"status": "error"}),
        (
            TypedRequest(type="smell", fields={}),
            {"status": "error", "error": "Unknown request type: smell"},
        ),
    ],
)
def test_unknown_requests_are_named_in_the_reply(
    request_: ActionRequest | CommandRequest | TypedRequest | RawRequest,
    expected: dict[str, str],
) -> None:
    body = json.loads(encode(unknown(request_)))
    assert expected.items() <= body.items()
    assert len(body["message"]) < 120  # long junk is not echoed back whole


def test_replies_keep_service_extras_and_are_json() -> None:
    reply = Reply(status="success", host="10.0.0.5", port=5709, metadata={"a": [1, None]})
    assert json.loads(encode(reply)) == {
        "status": "success",
        "host": "10.0.0.5",
        "port": 5709,
        "metadata": {"a": [1, None]},
    }


def test_iso_time_is_the_legacy_naive_utc_form() -> None:
    assert iso_time(1752577200.0) == "2025-07-15T11:00:00.000000"
