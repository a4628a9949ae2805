"""The legacy error framings E1-E6 and their field variants become one ErrorEvent."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from actors.errors.models import ErrorEvent, normalize_severity, subject_token
from deployments.errors.normalize import MALFORMED_TYPE, RAW_KEEP_BYTES, normalize_frames

NOW = datetime(2025, 7, 15, 12, 0, tzinfo=UTC)


def norm(*frames: bytes, peer: str = "10.0.0.9", max_bytes: int = 256 * 1024) -> ErrorEvent:
    return normalize_frames(list(frames), received_at=NOW, peer=peer, max_bytes=max_bytes)


def test_e1_error_publisher_nested_error_data() -> None:
    body = {
        "message_type": "error_report",
        "source": "SystemDigitalTwin",
        "timestamp": "2025-07-15T11:00:00.1",
        "error_data": {
            "error_id": "3f1c2b9e-1111-4222-8333-444455556666",
            "error_type": "setup_failure",
            "severity": "critical",
            "details": "could not bind 7120",
        },
    }
    event = norm(b"ERROR:" + json.dumps(body).encode())
    assert event.id == "3f1c2b9e-1111-4222-8333-444455556666"
    assert (event.agent, event.error_type, event.severity) == (
        "SystemDigitalTwin",
        "setup_failure",
        "critical",
    )
    assert event.message == "could not bind 7120"
    assert event.time == datetime(2025, 7, 15, 11, 0, 0, 100000, tzinfo=UTC)
    assert event.host == "10.0.0.9"
    assert event.details["legacy_fields"] == {"message_type": "error_report"}
    assert event.details["legacy_framing"] == "single-frame ERROR:"


def test_e1_critical_alert_without_severity_is_critical() -> None:
    body = {"message_type": "critical_alert", "source": "USA", "error_data": {"error_type": "x"}}
    assert norm(b"ERROR:" + json.dumps(body).encode()).severity == "critical"


def test_e2_hand_rolled_epoch_timestamp_and_upper_case_severity() -> None:
    body = {
        "timestamp": 1752577200.5,
        "agent": "MemoryClient",
        "error_type": "connection_failure",
        "message": "redis refused",
        "severity": "ERROR",
    }
    event = norm(b"ERROR:" + json.dumps(body).encode())
    assert (event.agent, event.error_type, event.severity, event.message) == (
        "MemoryClient",
        "connection_failure",
        "error",
        "redis refused",
    )
    assert event.time == datetime.fromtimestamp(1752577200.5, UTC)


def test_e2_source_iso_and_context_without_error_type() -> None:
    body = {
        "timestamp": "2025-07-15T11:00:00+02:00",
        "source": "FixedStreamingTranslation",
        "message": "model timeout",
        "severity": "WARNING",
        "context": {"lang": "tl"},
    }
    event = norm(b"ERROR:" + json.dumps(body).encode())
    assert event.agent == "FixedStreamingTranslation"
    assert event.error_type == "unknown"
    assert event.severity == "warning"
    assert event.time == datetime(2025, 7, 15, 9, 0, tzinfo=UTC)
    assert event.details["lang"] == "tl"


def test_e3_two_frames_with_enum_severity_and_no_agent() -> None:
    body = {
        "error_type": "task_processing_error",
        "message": "cot failed",
        "severity": "ErrorSeverity.ERROR",
        "context": {"task_id": "t-1", "service": "cot"},
    }
    event = norm(b"ERROR:", json.dumps(body).encode())
    assert (event.agent, event.severity, event.time) == ("unknown", "error", NOW)
    assert event.details["task_id"] == "t-1"
    assert event.details["legacy_framing"] == "two-frame ERROR:"


def test_e4_topic_without_colon_and_type_field() -> None:
    body = {
        "timestamp": "2025-07-15T11:00:00",
        "agent": "AuthenticationAgent",
        "type": "LOGIN_ERROR",
        "message": "bad password",
        "severity": "ERROR",
    }
    event = norm(b"ERROR", json.dumps(body).encode())
    assert (event.agent, event.error_type) == ("AuthenticationAgent", "LOGIN_ERROR")
    assert event.time == datetime(2025, 7, 15, 11, 0, tzinfo=UTC)  # naive is taken as UTC


def test_e5_template_details_carry_the_stack_trace() -> None:
    body = {
        "timestamp": 1752577200.0,
        "agent": "unknown",
        "error_type": "processing",
        "message": "boom",
        "severity": "CRITICAL",
        "details": {"stack_trace": "Traceback ...", "job": 3},
    }
    event = norm(b"ERROR:" + json.dumps(body).encode())
    assert event.severity == "critical"
    assert event.stack_trace == "Traceback ..."
    assert event.details["job"] == 3


def test_e6_pc2_topic_with_category_and_machine_context() -> None:
    body = {
        "message_type": "error_report",
        "source": "ResourceManager",
        "source_machine": "PC2",
        "error_data": {
            "error_type": "gpu",
            "severity": "high",
            "details": {"gpu": 0},
            "machine_context": {"host": "pc2-box"},
        },
    }
    event = norm(b"PC2_ERROR:RESOURCE:" + json.dumps(body).encode())
    assert (event.severity, event.host, event.error_type) == ("error", "pc2-box", "gpu")
    no_type = {"source": "X", "message": "m"}
    assert norm(b"PC2_ERROR:DATABASE:" + json.dumps(no_type).encode()).error_type == "DATABASE"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ERROR", "error"),
        ("critical", "critical"),
        ("high", "error"),
        ("medium", "warning"),
        ("low", "info"),
        ("ErrorSeverity.WARNING", "warning"),
        ("fatal", "critical"),
        (" Info ", "info"),
        (10, "debug"),
        (50, "critical"),
        ("bogus", None),
        (True, None),
        (None, None),
    ],
)
def test_severity_vocabulary(raw: object, expected: str | None) -> None:
    assert normalize_severity(raw) == expected


def test_unknown_severity_falls_back_to_error_and_bad_timestamp_to_receipt_time() -> None:
    body = {"agent": "a", "severity": "purple", "timestamp": "yesterday-ish"}
    event = norm(b"ERROR:" + json.dumps(body).encode())
    assert (event.severity, event.time) == ("error", NOW)


def test_unusable_legacy_id_is_kept_in_details_and_replaced() -> None:
    body = {"agent": "a", "error_data": {"error_id": "has spaces/and slashes"}}
    event = norm(b"ERROR:" + json.dumps(body).encode())
    assert event.id != "has spaces/and slashes"
    assert event.details["legacy_error_id"] == "has spaces/and slashes"


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([b"\xff\xfe{}"], "not UTF-8"),
        ([b"hello world"], "no JSON object"),
        ([b"ERROR:{not json"], "invalid JSON"),
        ([b"ERROR:", b"[1, 2]"], "not an object"),
        ([b"NOISE:{}"], "unknown topic"),
        ([b"a", b"b", b"c"], "3 frames"),
        ([], "0 frames"),
        ([b"ERROR:" + b"[" * 100_000 + b"]" * 100_000 + b"{}"], "unknown topic"),
        ([b"ERROR:", b'{"a":' * 5000 + b"1" + b"}" * 5000], "nested too deeply"),
        ([b"ERROR:", b'{"a": ' + b"7" * 5000 + b"}"], "invalid JSON"),
    ],
)
def test_unreadable_input_becomes_a_malformed_report(frames: list[bytes], reason: str) -> None:
    event = normalize_frames(frames, received_at=NOW, peer="p", max_bytes=10**6)
    assert event.error_type == MALFORMED_TYPE
    assert reason in event.message
    assert event.details["frame_sizes"] == [len(f) for f in frames]
    kept = b"".join(base64.b64decode(str(b)) for b in event.details["raw_b64"])  # type: ignore[union-attr]
    assert kept == b"".join(frames)[:RAW_KEEP_BYTES]


def test_oversized_message_is_malformed_with_truncated_raw() -> None:
    frames = [b"ERROR:", json.dumps({"message": "x" * 5000}).encode()]
    event = norm(*frames, max_bytes=1024)
    assert event.error_type == MALFORMED_TYPE and "over the limit of 1024" in event.message
    assert event.details["truncated"] is True
    raw = event.details["raw_b64"]
    assert isinstance(raw, list)
    assert sum(len(base64.b64decode(str(b))) for b in raw) == RAW_KEEP_BYTES


def test_bare_json_from_the_later_central_bus_is_accepted() -> None:
    event = norm(json.dumps({"agent_name": "x", "category": "net", "severity": "info"}).encode())
    assert (event.agent, event.error_type, event.severity) == ("x", "net", "info")


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("MemoryClient", "MemoryClient"),
        ("a.b *>c", "a_b___c"),
        ("", "unknown"),
        ("x" * 99, "x" * 64),
    ],
)
def test_agent_names_become_one_subject_token(name: str, token: str) -> None:
    assert subject_token(name) == token
    assert ErrorEvent(agent=name or "unknown").subject().count(".") == 2
