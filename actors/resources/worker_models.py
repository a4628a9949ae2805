"""Pydantic models of model workers and of measured VRAM per lease."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from actors.resources.models import Priority, priority_value

__all__ = [
    "WorkerCall",
    "WorkerCallResult",
    "WorkerList",
    "WorkerRequest",
    "WorkerState",
    "WorkerStatus",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkerRequest(_Model):
    """``POST /resources/workers``: run ``cls`` (``module:Class``) as a Ray actor under a lease.

    The lease asks for ``max(vram_mb, learned peak of kind) + learned_margin_mb`` once a peak of
    ``kind`` has been measured, ``vram_mb`` before.
    """

    cls: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="module:Class")
    args: list[JsonValue] = Field(default_factory=list)
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)
    kind: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$",
        description="What is loaded (a model name): learned peaks and placement; None: cls.",
    )
    vram_mb: int = Field(gt=0, le=1_048_576, description="Declared VRAM peak.")
    host: str = Field(default="any", description="A host tag, or 'any'.")
    gpu: int | str = Field(default="any", description="Device index or UUID, or 'any'.")
    priority: Priority = 10
    max_wait_s: float | None = Field(default=None, ge=0, le=86_400)

    @field_validator("priority", mode="before")
    @classmethod
    def priority_names_map_to_numbers(cls, value: object) -> object:
        return priority_value(value)

    @model_validator(mode="after")
    def a_device_index_needs_a_host(self) -> WorkerRequest:
        if isinstance(self.gpu, int) and self.host == "any":
            raise ValueError("gpu names a device index, so host must name a host tag too")
        return self

    @property
    def kind_name(self) -> str:
        return self.kind or self.cls


WorkerState = Literal["waiting", "starting", "ready", "stopped", "failed"]


class WorkerStatus(_Model):
    """A worker: where it runs, under which lease, when it was last called."""

    worker_id: str
    cls: str
    kind: str
    state: WorkerState
    request: WorkerRequest
    lease_id: str | None = None
    vram_mb: int = Field(description="What the lease asked for (declared or learned).")
    host: str | None = None
    gpu_index: int | None = None
    actor_name: str | None = None
    pid: int | None = Field(default=None, description="The actor's process, as NVML lists it.")
    created_at: float
    last_call_at: float
    restarts: int = 0
    error: str | None = None


class WorkerList(_Model):
    workers: list[WorkerStatus]


class WorkerCall(_Model):
    """``POST /resources/workers/{id}/call``: an allow-listed method with JSON arguments."""

    method: str = Field(pattern=r"^[A-Za-z_]\w{0,63}$")
    args: list[JsonValue] = Field(default_factory=list)
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)


class WorkerCallResult(_Model):
    worker_id: str
    method: str
    result: JsonValue
