"""Pydantic models of the request coordinator: user requests, the legacy TaskDefinition frame,
agent replies, request status, queue, breakers and interrupts.

The request shapes follow the legacy RequestCoordinator (``type`` = text/audio/vision, optional
``context``, ``metadata`` with ``user_type``/``urgency``, ``user_id``, ``session_id``); media is
base64 text as before. ``TaskDefinition`` is the JSON frame downstream agents already parse.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from cluster.base.settings import RequestType

__all__ = [
    "AgentResponse",
    "AudioRequest",
    "BreakerState",
    "BreakerView",
    "InterruptReport",
    "InterruptRequest",
    "QueueEntry",
    "QueueView",
    "RequestMetadata",
    "RequestState",
    "RequestStatus",
    "SubmitReceipt",
    "TaskDefinition",
    "TaskType",
    "TextRequest",
    "UserRequest",
    "VisionRequest",
]

#: ``agent_id`` of every TaskDefinition: the name legacy agents know the coordinator by.
COORDINATOR_AGENT_ID = "RequestCoordinator"
#: Version of the TaskDefinition frame; legacy agents ignore the extra key.
TASK_FRAME_VERSION = 1
_MAX_MEDIA_B64 = 16 * 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RequestMetadata(_Model):
    """Who asks and how urgently; both feed the priority."""

    user_type: Literal["admin", "premium", "standard", "guest"] = "standard"
    urgency: Literal["critical", "high", "normal", "low"] = "normal"
    source: str | None = Field(default=None, max_length=128)


class _BaseRequest(_Model):
    context: dict[str, JsonValue] = Field(default_factory=dict)
    metadata: RequestMetadata = RequestMetadata()
    user_id: str | None = Field(default=None, max_length=128)
    session_id: str | None = Field(default=None, max_length=128)
    capability: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$",
        description="Dispatch to agents registered with this capability instead of the route "
        "of the request's type (coordinator.routes). The agent does not see this field.",
    )


def _check_base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"media must be standard base64 text ({exc})") from None
    return value


class TextRequest(_BaseRequest):
    """A text request; ``data`` is the text."""

    type: Literal["text"] = "text"
    data: str = Field(min_length=1, max_length=1_000_000)


class AudioRequest(_BaseRequest):
    """An audio request; ``audio_data`` is base64 of the encoded audio."""

    type: Literal["audio"] = "audio"
    audio_data: str = Field(min_length=1, max_length=_MAX_MEDIA_B64)
    format: str = Field(default="wav", max_length=16)
    sample_rate: int = Field(default=16_000, gt=0)

    @field_validator("audio_data")
    @classmethod
    def audio_is_base64(cls, value: str) -> str:
        return _check_base64(value)


class VisionRequest(_BaseRequest):
    """A vision request; ``image_data`` is base64 of the encoded image."""

    type: Literal["vision"] = "vision"
    image_data: str = Field(min_length=1, max_length=_MAX_MEDIA_B64)
    format: str = Field(default="jpg", max_length=16)

    @field_validator("image_data")
    @classmethod
    def image_is_base64(cls, value: str) -> str:
        return _check_base64(value)


TaskType = Literal["text_processing", "audio_processing", "vision_processing"]

UserRequest = Annotated[TextRequest | AudioRequest | VisionRequest, Field(discriminator="type")]


class TaskDefinition(_Model):
    """The legacy TaskDefinition frame sent to downstream agents (one JSON frame over REQ)."""

    task_id: str
    agent_id: str = COORDINATOR_AGENT_ID
    task_type: TaskType
    priority: int = Field(ge=1, le=10)
    parameters: dict[str, JsonValue]
    dependencies: list[str] = Field(default_factory=list)
    timeout_seconds: float | None = None
    created_at: str = Field(description="ISO 8601 UTC; the legacy frame sent a datetime here.")
    scheduled_for: str | None = None
    source_agent: str = COORDINATOR_AGENT_ID
    request_id: str
    timestamp: float
    version: int = TASK_FRAME_VERSION


class AgentResponse(BaseModel):
    """An agent's reply (the legacy ``AgentResponse``); unknown keys are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    status: str = Field(min_length=1, max_length=64)
    message: str | None = None
    data: JsonValue = None
    speak: str | None = None
    memory_entry: JsonValue = None
    error: JsonValue = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    timestamp: str | float | None = None

    @property
    def ok(self) -> bool:
        return self.status.lower() in ("success", "ok")


class RequestState(StrEnum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SubmitReceipt(_Model):
    """Answer of ``POST /core/requests``: the id to poll, and the priority it was queued at."""

    request_id: str
    priority: int
    queue_position: int = Field(description="0-based position in the queue when queued.")


class RequestStatus(_Model):
    """Status of one request; ``result`` is the agent's reply, ``error`` why it failed."""

    request_id: str
    type: RequestType
    state: RequestState
    priority: int
    session_id: str | None
    submitted_at: float
    dispatched_at: float | None = None
    finished_at: float | None = None
    dispatch_seq: int | None = Field(default=None, description="Order in which it was taken.")
    downstream: str | None = None
    result: AgentResponse | None = None
    error: dict[str, str] | None = None


class QueueEntry(_Model):
    request_id: str
    type: RequestType
    priority: int
    session_id: str | None
    submitted_at: float


class QueueView(_Model):
    """Answer of ``GET /core/queue``: queued requests in dispatch order."""

    size: int
    max_size: int
    in_flight: int
    paused_until: float | None
    last_submit_at: float | None = Field(
        default=None, description="When the last request was accepted (since this replica began)."
    )
    entries: list[QueueEntry]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerView(_Model):
    """One downstream's circuit breaker."""

    downstream: str
    state: BreakerState
    consecutive_failures: int
    opened_at: float | None
    retry_at: float | None


class InterruptRequest(_Model):
    """``POST /core/interrupt``: pause dispatch and cancel queued requests of a session."""

    session_id: str | None = Field(
        default=None, max_length=128, description="None cancels every queued request."
    )
    pause_s: float | None = Field(
        default=None, ge=0, le=3600, description="None uses coordinator.interrupt_pause_s."
    )


class InterruptReport(_Model):
    cancelled: list[str]
    paused_until: float | None
