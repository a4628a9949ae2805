"""Turn a legacy error-bus message (any of the framings E1-E6) into an :class:`ErrorEvent`.

The legacy agents publish errors in four framings and many field spellings
(``docs/legacy-protocol.md`` sections 3.3 and 4.14)::

    E1/E2/E5  one frame   b'ERROR:{json}'
    E3        two frames  [b'ERROR:', b'{json}']
    E4        two frames  [b'ERROR', b'{json}']
    E6        one frame   b'PC2_ERROR:<CATEGORY>:{json}' (also CROSS_MACHINE_ERROR:<M>:)

:func:`normalize_frames` never raises: anything it cannot read becomes an event of type
``malformed_error_report`` that keeps the raw bytes (base64, truncated).

Example::

    event = normalize_frames([b'ERROR', b'{"agent": "Auth", "type": "LOGIN_ERROR"}'],
                             received_at=datetime.now(UTC), peer="10.0.0.7")
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import JsonValue, ValidationError

from actors.errors.models import ErrorEvent, normalize_severity

__all__ = ["MALFORMED_TYPE", "malformed_error_report", "normalize_frames", "normalize_record"]

MALFORMED_TYPE: Final = "malformed_error_report"
#: Raw bytes kept in a ``malformed_error_report`` (all frames together).
RAW_KEEP_BYTES: Final = 4096
#: Topics (the text before the JSON) legacy publishers use: ``ERROR:``, ``ERROR``,
#: ``PC2_ERROR:<CATEGORY>:``, ``CROSS_MACHINE_ERROR:<MACHINE>:``, or none at all.
_TOPIC_RE: Final = re.compile(
    r"^(?:ERROR:?|(?:PC2_ERROR|CROSS_MACHINE_ERROR):(?P<rest>[A-Za-z0-9_-]{0,64}):?)?$"
)
_AGENT_KEYS: Final = ("agent", "source", "agent_id", "agent_name", "source_agent")
_TYPE_KEYS: Final = ("error_type", "type", "category")
_DETAIL_KEYS: Final = ("details", "context")
# Keys read into named fields; anything else is kept under details["legacy_fields"].
_CONSUMED: Final = frozenset(
    (*_AGENT_KEYS, *_TYPE_KEYS, *_DETAIL_KEYS)
    + ("error_data", "severity", "message", "timestamp", "stack_trace", "traceback")
    + ("error_id", "id", "correlation_id", "related_task_id", "host", "source_machine")
)


class _Malformed(ValueError):
    pass


def normalize_frames(
    frames: list[bytes], *, received_at: datetime, peer: str = "", max_bytes: int = 256 * 1024
) -> ErrorEvent:
    """Read one legacy error-bus message; unreadable input becomes a malformed report.

    Args:
        frames: the ZeroMQ message, one or two frames.
        received_at: when the bridge received it; the time of events that carry none.
        peer: the publisher's address, used as ``host`` when the body names none.
        max_bytes: messages larger than this (all frames) are reported as malformed.
    """
    try:
        framing, topic_rest, body = _split(frames, max_bytes)
        return _event_from_body(body, framing, topic_rest, received_at, peer, json_native=True)
    except _Malformed as exc:
        return malformed_error_report(frames, str(exc), received_at=received_at, peer=peer)
    except ValidationError as exc:
        errors = exc.errors()
        if any(e["type"] == "recursion_depth_exceeded" for e in errors):
            # Python 3.13+ parses deeper JSON than 3.11 (a C recursion limit of its own);
            # pydantic's depth limit then refuses it: the same report on every version.
            reason = "JSON nested too deeply"
        else:
            reason = "fields out of range: " + "; ".join(e["msg"] for e in errors[:3])
        return malformed_error_report(frames, reason, received_at=received_at, peer=peer)


def normalize_record(
    body: dict[str, Any], *, origin: str, received_at: datetime, peer: str = ""
) -> ErrorEvent:
    """Read a legacy error report that is already a JSON object (a stored row, not a message).

    The fields are read exactly as :func:`normalize_frames` reads a message's body, so an error
    imported from the legacy error bus's database looks like one the 7150 bridge received.

    Args:
        body: the report's fields (``agent``, ``error_type``, ``severity``, ``details``, ...).
        origin: where it came from, kept in ``details["legacy_framing"]``.
        received_at: the time of a report that carries none.
        peer: ``host`` when the body names none.

    Raises:
        pydantic.ValidationError: a field is out of range.
    """
    return _event_from_body(body, origin, "", received_at, peer)


def malformed_error_report(
    frames: list[bytes], reason: str, *, received_at: datetime, peer: str = ""
) -> ErrorEvent:
    """An event that records an unreadable message: its reason, sizes and first raw bytes."""
    budget = RAW_KEEP_BYTES
    kept: list[JsonValue] = []
    for frame in frames:
        head = frame[: max(budget, 0)]
        budget -= len(head)
        kept.append(base64.b64encode(head).decode("ascii"))
    sizes: list[JsonValue] = [len(f) for f in frames]
    return ErrorEvent(
        time=received_at,
        host=peer[:256],
        agent="unknown",
        error_type=MALFORMED_TYPE,
        severity="warning",
        message=f"unreadable legacy error report: {reason}"[:1024],
        details={
            "frame_sizes": sizes,
            "raw_b64": kept,
            "truncated": sum(len(f) for f in frames) > RAW_KEEP_BYTES,
        },
    )


def _split(frames: list[bytes], max_bytes: int) -> tuple[str, str, dict[str, Any]]:
    """Return (framing, text between topic and JSON, JSON object) or raise _Malformed."""
    size = sum(len(f) for f in frames)
    if size > max_bytes:
        raise _Malformed(f"message of {size} bytes is over the limit of {max_bytes}")
    if len(frames) == 1:
        text = _decode(frames[0])
        start = text.find("{")
        if start < 0:
            raise _Malformed("no JSON object in the frame")
        topic, payload = text[:start], text[start:]
        framing = "single-frame"
    elif len(frames) == 2:
        topic, payload = _decode(frames[0]), _decode(frames[1])
        framing = "two-frame"
    else:
        raise _Malformed(f"{len(frames)} frames; legacy publishers send one or two")
    match = _TOPIC_RE.match(topic)
    if match is None:
        raise _Malformed(f"unknown topic {topic[:40]!r}")
    try:
        body = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise _Malformed(f"invalid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise _Malformed("JSON nested too deeply") from None
    except ValueError as exc:  # valid JSON Python refuses, e.g. an integer of 5000 digits
        raise _Malformed(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _Malformed(f"JSON is a {type(body).__name__}, not an object")
    return f"{framing} {topic or '(none)'}", match.group("rest") or "", body


def _decode(frame: bytes) -> str:
    try:
        return frame.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Malformed(f"not UTF-8 at byte {exc.start}") from None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(sources: list[dict[str, Any]], keys: tuple[str, ...]) -> Any:
    for source in sources:
        for key in keys:
            value = source.get(key)
            if value not in (None, ""):
                return value
    return None


def _text(value: Any, limit: int = 256) -> str | None:
    if value is None:
        return None
    return (value if isinstance(value, str) else json.dumps(value, default=str))[:limit]


def _event_from_body(
    body: dict[str, Any],
    framing: str,
    topic_rest: str,
    received_at: datetime,
    peer: str,
    *,
    json_native: bool = False,
) -> ErrorEvent:
    """``json_native``: ``body`` came from ``json.loads``, so its values need no JSON round trip."""
    data = _object(body.get("error_data"))
    machine = _object(data.get("machine_context"))
    sources = [body, data]
    details: dict[str, Any] = {}
    for source in (data, body):
        for key in _DETAIL_KEYS:
            value = source.get(key)
            if isinstance(value, dict):
                details.update(value)
            elif value not in (None, ""):
                details.setdefault(key, value)
    extra = {k: v for k, v in body.items() if k not in _CONSUMED}
    if extra:
        details["legacy_fields"] = extra
    details["legacy_framing"] = framing
    severity = normalize_severity(_first(sources, ("severity",)))
    if severity is None:
        critical = body.get("message_type") == "critical_alert"
        severity = "critical" if critical else "error"
    stack = _first([body, data, details], ("stack_trace", "traceback"))
    message = _first(sources, ("message",))
    if message is None and isinstance(details.get("details"), str):
        message = details.pop("details")
    event_id = _text(_first([data, body], ("error_id", "id")), 1000)
    fields: dict[str, Any] = {
        "time": _timestamp(_first(sources, ("timestamp",)), received_at),
        "host": _text(_first([machine, body], ("host", "source_machine"))) or peer,
        "agent": _text(_first(sources, _AGENT_KEYS)) or "unknown",
        "error_type": _text(_first(sources, _TYPE_KEYS)) or topic_rest or "unknown",
        "severity": severity,
        "message": _text(message, 64 * 1024) or "",
        "details": details if json_native else json.loads(json.dumps(details, default=str)),
        "stack_trace": _text(stack, 64 * 1024),
        "correlation_id": _text(_first(sources, ("correlation_id", "related_task_id"))),
    }
    if event_id is not None:
        try:
            return ErrorEvent(id=event_id, **fields)
        except ValidationError:
            # A legacy id we cannot use as a Nats-Msg-Id: keep it, give the event a new one.
            fields["details"]["legacy_error_id"] = event_id
    return ErrorEvent(**fields)


def _timestamp(value: Any, received_at: datetime) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            return received_at
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            try:
                return datetime.fromtimestamp(float(value), UTC)
            except (OverflowError, OSError, ValueError):
                return received_at
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return received_at
