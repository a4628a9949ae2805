"""Decode one legacy request frame into a typed request, and encode replies as JSON.

The legacy agents speak three dialects on the same ports (docs/legacy-protocol.md sections 1, 3.2,
4.1, 4.2): ``{"action": ...}`` objects answered with ``success``/``error``, ``{"command": ...}``
objects answered with ``SUCCESS``/``NOT_FOUND``/``ERROR``, and raw strings such as ``ping``;
RequestCoordinator's clients also send ``{"type": "text"|"audio"|"vision", ...}`` (4.3).
:func:`decode` never raises: a frame it cannot read becomes an :class:`InvalidRequest` that carries
the dialect and the text of the error reply. Replies are pydantic models, so :func:`encode` always
produces valid JSON (times are ISO strings, never ``datetime``).

Example::

    request = decode(b'{"action": "list_agents"}', max_bytes=1 << 20)
    assert isinstance(request, ActionRequest) and request.action == "list_agents"
    frame = encode(error_reply(Dialect.COMMAND, "Unknown command: X"))
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, JsonValue

__all__ = [
    "ENRICHMENT_FIELDS",
    "HEALTH_VERBS",
    "ActionError",
    "ActionRequest",
    "CommandError",
    "CommandRequest",
    "Dialect",
    "InvalidRequest",
    "LegacyRequest",
    "RawRequest",
    "Reply",
    "TypedRequest",
    "decode",
    "dialect_of",
    "encode",
    "error_reply",
    "iso_time",
    "unknown",
]

#: Fields ``BaseAgent.send_request_to_agent`` adds to every request (section 2.3); ignored.
ENRICHMENT_FIELDS: Final = frozenset({"source_agent", "request_id", "timestamp"})
#: The verbs every legacy service answers with its health dict, as ``{"action": V}`` or raw text.
HEALTH_VERBS: Final = frozenset({"ping", "health", "health_check"})
_ECHO_LIMIT: Final = 80


class Dialect(StrEnum):
    """How a request was phrased, and so how its reply must be phrased."""

    ACTION = "action"
    COMMAND = "command"
    RAW = "raw"


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionRequest(_Frame):
    """``{"action": A, ...}``: ``fields`` holds everything but ``action`` and enrichment."""

    action: str
    fields: dict[str, JsonValue]


class CommandRequest(_Frame):
    """``{"command": C, "payload": {...}, ...}``; ``fields`` holds the other top-level keys."""

    command: str
    payload: dict[str, JsonValue]
    fields: dict[str, JsonValue]


class TypedRequest(_Frame):
    """``{"type": T, ...}`` without ``action``: RequestCoordinator's text/audio/vision requests."""

    type: str
    fields: dict[str, JsonValue]


class RawRequest(_Frame):
    """A frame that is text but not a JSON object, such as ``ping`` or ``GET_ALL_STATUS``."""

    text: str


class InvalidRequest(_Frame):
    """A frame that cannot be served; ``reason`` is the text of the error reply."""

    dialect: Dialect
    reason: str


LegacyRequest = ActionRequest | CommandRequest | TypedRequest | RawRequest | InvalidRequest


class Reply(BaseModel):
    """Base of every reply: extra keys allowed, since legacy replies carry service extras."""

    model_config = ConfigDict(extra="allow")

    status: str


class ActionError(Reply):
    """Error reply of the ``action`` dialect. Agents read ``error`` or ``message``: both set."""

    status: Literal["error"] = "error"
    error: str
    message: str


class CommandError(Reply):
    """Error reply of the ``command`` dialect."""

    status: Literal["ERROR"] = "ERROR"
    message: str


def _echo(value: object) -> str:
    text = str(value)
    return text if len(text) <= _ECHO_LIMIT else text[:_ECHO_LIMIT] + "..."


def _decode_object(obj: dict[str, JsonValue]) -> LegacyRequest:
    # The old SDT looked at "command" first and fell through to "action" (section 3.2).
    if "command" in obj:
        command = obj["command"]
        if not isinstance(command, str):
            return InvalidRequest(
                dialect=Dialect.COMMAND,
                reason=f"'command' must be a string, got {type(command).__name__}",
            )
        payload = obj.get("payload", {})
        if not isinstance(payload, dict):
            return InvalidRequest(
                dialect=Dialect.COMMAND,
                reason=f"'payload' must be an object, got {type(payload).__name__}",
            )
        rest = {k: v for k, v in obj.items() if k not in ENRICHMENT_FIELDS}
        rest.pop("command")
        rest.pop("payload", None)
        return CommandRequest.model_construct(command=command, payload=payload, fields=rest)
    if "action" not in obj:
        kind = obj.get("type")
        if isinstance(kind, str):
            fields = {k: v for k, v in obj.items() if k not in ENRICHMENT_FIELDS}
            fields.pop("type")
            return TypedRequest.model_construct(type=kind, fields=fields)
        return InvalidRequest(dialect=Dialect.ACTION, reason="Missing 'action' (or 'command')")
    action = obj["action"]
    if not isinstance(action, str):
        return InvalidRequest(
            dialect=Dialect.ACTION,
            reason=f"'action' must be a string, got {type(action).__name__}",
        )
    fields = {k: v for k, v in obj.items() if k not in ENRICHMENT_FIELDS}
    fields.pop("action")
    # json.loads output is JSON by construction: no second validation on the hot path.
    return ActionRequest.model_construct(action=action, fields=fields)


def decode(frame: bytes, max_bytes: int) -> LegacyRequest:
    """Read one request frame; never raises.

    Args:
        frame: the request body as received.
        max_bytes: frames longer than this are refused without being parsed.
    """
    if len(frame) > max_bytes:
        return InvalidRequest(
            dialect=Dialect.ACTION,
            reason=f"Request too large: {len(frame)} bytes (limit {max_bytes})",
        )
    try:
        text = frame.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InvalidRequest(dialect=Dialect.ACTION, reason=f"Invalid UTF-8 request: {exc}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return RawRequest(text=text.strip())
    except RecursionError:
        return InvalidRequest(
            dialect=Dialect.ACTION, reason="Invalid JSON request: nested too deep"
        )
    except ValueError as exc:  # valid JSON Python refuses, e.g. an integer of 5000 digits
        return InvalidRequest(dialect=Dialect.ACTION, reason=f"Invalid JSON request: {exc}")
    if isinstance(value, str):  # send_json("ping") puts the JSON string '"ping"' on the wire
        return RawRequest(text=value.strip())
    if not isinstance(value, dict):
        return InvalidRequest(
            dialect=Dialect.ACTION,
            reason=f"Invalid message format: expected a JSON object, got {type(value).__name__}",
        )
    return _decode_object(value)


def dialect_of(request: LegacyRequest) -> Dialect:
    """The dialect a reply to ``request`` must use; raw strings get ``action`` replies."""
    if isinstance(request, InvalidRequest):
        return request.dialect
    if isinstance(request, CommandRequest):
        return Dialect.COMMAND
    return Dialect.ACTION


def error_reply(dialect: Dialect, message: str) -> Reply:
    """An error reply phrased for ``dialect``."""
    if dialect is Dialect.COMMAND:
        return CommandError(message=message)
    return ActionError(error=message, message=message)


def unknown(request: ActionRequest | CommandRequest | TypedRequest | RawRequest) -> Reply:
    """The reply to a request no handler of the port knows."""
    if isinstance(request, TypedRequest):
        return error_reply(Dialect.ACTION, f"Unknown request type: {_echo(request.type)}")
    if isinstance(request, ActionRequest):
        return error_reply(Dialect.ACTION, f"Unknown action: {_echo(request.action)}")
    if isinstance(request, CommandRequest):
        return error_reply(Dialect.COMMAND, f"Unknown command: {_echo(request.command)}")
    return error_reply(Dialect.ACTION, f"Unknown command: {_echo(request.text)}")


def encode(reply: Reply) -> bytes:
    """The reply frame: compact JSON, UTF-8."""
    return reply.model_dump_json().encode()


def iso_time(epoch_s: float) -> str:
    """UTC time as the legacy services wrote it: naive ISO with microseconds."""
    moment = datetime.fromtimestamp(epoch_s, UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")
