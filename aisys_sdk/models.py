"""What the SDK sends to and reads from aisys, as pydantic models.

These mirror the services' own request and response models field for field (a unit test,
``tests/unit/test_sdk_models.py``, compares their JSON schemas), without importing the services,
which would pull Ray into every agent. The server validates every request in full; the models
here check types, so a wrong field fails before it is sent. Answers ignore fields they do not
know, so an SDK keeps working against a newer server.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "AgentRecord",
    "AgentResponse",
    "AudioRequest",
    "EndedLease",
    "ErrorEvent",
    "Health",
    "Heartbeat",
    "LeaseGrant",
    "LeaseRequest",
    "LeaseStatus",
    "PublishResult",
    "QueuedLease",
    "Registration",
    "RequestMetadata",
    "RequestState",
    "RequestStatus",
    "Severity",
    "SubmitReceipt",
    "TextRequest",
    "TokenPair",
    "UnloadEndpoint",
    "UserRequest",
    "VisionRequest",
    "WorkerCall",
    "WorkerCallResult",
    "WorkerRequest",
    "WorkerStatus",
]

Port = Annotated[int, Field(ge=1, le=65535)]
Severity = Literal["debug", "info", "warning", "error", "critical"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# -- registry (CoreOrchestrator /core/agents) --------------------------------------------------


class Health(StrEnum):
    UNKNOWN = "unknown"
    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"


class Registration(_Request):
    """An agent's registration; registering the same ``agent_id`` again replaces it."""

    agent_id: str = Field(min_length=1, max_length=128)
    agent_type: str | None = Field(default=None, max_length=128)
    host: str = Field(min_length=1, max_length=253)
    port: Port
    health_check_port: Port | None = None
    capabilities: list[str] = Field(default_factory=list, max_length=64)
    tags: list[str] = Field(default_factory=list, max_length=64)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    check: Literal["ttl", "none"] = "ttl"
    ttl_s: float | None = Field(default=None, gt=0, le=86_400)
    deregister_critical_after_s: float | None = Field(default=None, gt=0)


class Heartbeat(_Request):
    """A TTL heartbeat: ``passing``, ``warning`` or ``critical`` with a note."""

    status: Literal["passing", "warning", "critical"] = "passing"
    note: str = Field(default="", max_length=1024)


class AgentRecord(_Answer):
    """A registered agent with its health, as the registry holds it."""

    agent_id: str
    agent_type: str
    host: str
    port: int
    health_check_port: int | None
    capabilities: list[str]
    tags: list[str]
    metadata: dict[str, JsonValue]
    check: Literal["ttl", "none"]
    ttl_s: float | None
    deregister_critical_after_s: float
    health: Health
    health_note: str
    registered_at: float
    last_seen_at: float
    critical_since: float | None
    source: str | None = None

    @property
    def endpoint(self) -> str:
        """The agent's ZeroMQ endpoint, ``tcp://host:port``."""
        return f"tcp://{self.host}:{self.port}"


class _AgentList(_Answer):
    version: int
    agents: list[AgentRecord]


# -- security (/security) ----------------------------------------------------------------------


class TokenPair(_Answer):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str
    scope: str
    note: str = ""


# -- request coordinator (/core/requests) ------------------------------------------------------


class RequestMetadata(_Request):
    user_type: Literal["admin", "premium", "standard", "guest"] = "standard"
    urgency: Literal["critical", "high", "normal", "low"] = "normal"
    source: str | None = Field(default=None, max_length=128)


class _UserRequest(_Request):
    context: dict[str, JsonValue] = Field(default_factory=dict)
    metadata: RequestMetadata = RequestMetadata()
    user_id: str | None = Field(default=None, max_length=128)
    session_id: str | None = Field(default=None, max_length=128)
    capability: str | None = Field(
        default=None, max_length=64, description="Dispatch to agents with this capability."
    )


class TextRequest(_UserRequest):
    type: Literal["text"] = "text"
    data: str = Field(min_length=1, max_length=1_000_000)


class AudioRequest(_UserRequest):
    """``audio_data`` is base64 text of the encoded audio."""

    type: Literal["audio"] = "audio"
    audio_data: str = Field(min_length=1)
    format: str = Field(default="wav", max_length=16)
    sample_rate: int = Field(default=16_000, gt=0)


class VisionRequest(_UserRequest):
    """``image_data`` is base64 text of the encoded image."""

    type: Literal["vision"] = "vision"
    image_data: str = Field(min_length=1)
    format: str = Field(default="jpg", max_length=16)


UserRequest = TextRequest | AudioRequest | VisionRequest


class SubmitReceipt(_Answer):
    request_id: str
    priority: int
    queue_position: int


class RequestState(StrEnum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RequestState.SUCCEEDED, RequestState.FAILED, RequestState.CANCELLED)


class AgentResponse(BaseModel):
    """The reply of the agent that handled a request; unknown keys are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    status: str
    message: str | None = None
    data: JsonValue = None
    speak: str | None = None
    memory_entry: JsonValue = None
    error: JsonValue = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    timestamp: str | float | None = None


class RequestStatus(_Answer):
    request_id: str
    type: Literal["text", "audio", "vision"]
    state: RequestState
    priority: int
    session_id: str | None
    submitted_at: float
    dispatched_at: float | None = None
    finished_at: float | None = None
    dispatch_seq: int | None = None
    downstream: str | None = None
    result: AgentResponse | None = None
    error: dict[str, str] | None = None


# -- ErrorBus (/errors) ------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class ErrorEvent(_Request):
    """One error event (schema version 1 of the ErrorBus)."""

    version: Literal[1] = 1
    id: str = Field(default_factory=_new_id, min_length=1, max_length=128)
    time: datetime = Field(default_factory=_now)
    host: str = Field(default="", max_length=256)
    agent: str = Field(default="unknown", min_length=1, max_length=256)
    error_type: str = Field(default="unknown", min_length=1, max_length=256)
    severity: Severity = "error"
    message: str = ""
    details: dict[str, JsonValue] = Field(default_factory=dict)
    stack_trace: str | None = None
    correlation_id: str | None = Field(default=None, max_length=256)


class PublishResult(_Answer):
    accepted: list[str]
    stored: int
    spooled: int


# -- ResourceScheduler (/resources/leases) -----------------------------------------------------


class UnloadEndpoint(_Request):
    """How the scheduler asks the lease's owner to unload its model under VRAM pressure."""

    protocol: Literal["zmq", "http"]
    address: str = Field(max_length=512)


class LeaseRequest(_Request):
    """VRAM on one GPU for ``owner``; ``ttl_s`` is renewed while the lease is held."""

    owner: str = Field(min_length=1, max_length=128)
    vram_mb: int = Field(gt=0, le=1_048_576)
    host: str = "any"
    gpu: int | str = "any"
    priority: int = Field(default=10, ge=0, le=100)
    ttl_s: float | None = Field(default=None, gt=0, le=86_400)
    max_wait_s: float | None = Field(default=None, ge=0, le=86_400)
    exclusive: bool = False
    prefer_hosts: list[str] = Field(default_factory=list)
    model_name: str | None = Field(default=None, max_length=256)
    unload_endpoint: UnloadEndpoint | None = None


class LeaseGrant(_Answer):
    """A granted lease: which GPU, and how to place Ray work on it."""

    state: Literal["granted"] = "granted"
    lease_id: str
    owner: str
    vram_mb: int
    priority: int
    exclusive: bool
    host: str
    gpu_index: int
    gpu_uuid: str
    num_gpus: float
    resources: dict[str, float]
    requested_at: float
    granted_at: float
    ttl_s: float
    expires_at: float
    last_used_at: float
    model_name: str | None = None
    unload_endpoint: UnloadEndpoint | None = None


class QueuedLease(_Answer):
    state: Literal["queued"] = "queued"
    lease_id: str
    request: LeaseRequest
    requested_at: float
    wait_until: float
    seq: int
    position: int = 0
    effective_priority: float = 0.0


class EndedLease(_Answer):
    state: Literal["released", "expired", "cancelled", "timed_out"]
    lease_id: str
    owner: str
    ended_at: float
    reason: str


LeaseStatus = Annotated[LeaseGrant | QueuedLease | EndedLease, Field(discriminator="state")]


# -- ResourceScheduler (/resources/workers) ----------------------------------------------------


class WorkerRequest(_Request):
    """A model worker: an allow-listed ``module:Class`` run as a Ray actor under a VRAM lease."""

    cls: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    args: list[JsonValue] = Field(default_factory=list)
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)
    kind: str | None = Field(default=None, max_length=128)
    vram_mb: int = Field(gt=0, le=1_048_576)
    host: str = "any"
    gpu: int | str = "any"
    priority: int = Field(default=10, ge=0, le=100)
    max_wait_s: float | None = Field(default=None, ge=0, le=86_400)


class WorkerStatus(_Answer):
    """A worker: where it runs, under which lease, its process."""

    worker_id: str
    cls: str
    kind: str
    state: Literal["waiting", "starting", "ready", "stopped", "failed"]
    request: WorkerRequest
    lease_id: str | None = None
    vram_mb: int
    host: str | None = None
    gpu_index: int | None = None
    actor_name: str | None = None
    pid: int | None = None
    created_at: float
    last_call_at: float
    restarts: int = 0
    error: str | None = None


class WorkerCall(_Request):
    """An allow-listed method of a worker, with JSON arguments."""

    method: str = Field(pattern=r"^[A-Za-z_]\w{0,63}$")
    args: list[JsonValue] = Field(default_factory=list)
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)


class WorkerCallResult(_Answer):
    worker_id: str
    method: str
    result: JsonValue
