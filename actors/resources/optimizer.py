"""VRAM optimizer policy and the ModelManagerAgent handshake, answered from the lease ledger.

Policy (the legacy VRAMOptimizerAgent's, ``docs/legacy-protocol.md`` section 4.13): on a GPU whose
accounted usage is at or above ``critical_ratio`` ask the owner of the largest model to unload
it; at or above ``warning_ratio`` the least recently used model idle longer than
``idle_timeout_s``; and the idle sweep asks for every model idle that long. No Ray here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from actors.resources.models import UnloadEndpoint

__all__ = [
    "LoadedModel",
    "MmaReply",
    "MmaRequest",
    "ModelManagerLink",
    "Thresholds",
    "UnloadDecision",
    "idle_sweep",
    "plan_for_gpu",
]

#: Owner name given to models that ModelManagerAgent reports.
MMA_OWNER = "ModelManagerAgent"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Model):
    """Optimizer thresholds; ``PUT /resources/optimizer`` changes them at run time."""

    warning_ratio: float = Field(gt=0, lt=1)
    critical_ratio: float = Field(gt=0, le=1)
    idle_timeout_s: float = Field(gt=0)

    @model_validator(mode="after")
    def warning_is_below_critical(self) -> Thresholds:
        if self.warning_ratio >= self.critical_ratio:
            raise ValueError("warning_ratio must be below critical_ratio")
        return self


class LoadedModel(_Model):
    """A model holding VRAM: from a lease with ``model_name`` or reported by MMA."""

    model_name: str
    owner: str
    host: str
    gpu_index: int | None = Field(description="None: somewhere on the host (MMA reports).")
    vram_mb: int
    last_used_at: float
    endpoint: UnloadEndpoint | None = None


class UnloadDecision(_Model):
    model_name: str
    owner: str
    host: str
    vram_mb: int
    reason: Literal["critical", "warning", "idle"]
    endpoint: UnloadEndpoint | None = None


def _decide(model: LoadedModel, reason: Literal["critical", "warning", "idle"]) -> UnloadDecision:
    return UnloadDecision(
        model_name=model.model_name,
        owner=model.owner,
        host=model.host,
        vram_mb=model.vram_mb,
        reason=reason,
        endpoint=model.endpoint,
    )


def plan_for_gpu(
    ratio: float, models: Iterable[LoadedModel], thresholds: Thresholds, now: float
) -> UnloadDecision | None:
    """The one model to unload from a GPU at usage ``ratio``, or None below the warning level."""
    models = list(models)
    if ratio >= thresholds.critical_ratio and models:
        return _decide(max(models, key=lambda m: (m.vram_mb, -m.last_used_at)), "critical")
    if ratio >= thresholds.warning_ratio:
        idle = [m for m in models if now - m.last_used_at > thresholds.idle_timeout_s]
        if idle:
            return _decide(min(idle, key=lambda m: m.last_used_at), "warning")
    return None


def idle_sweep(
    models: Iterable[LoadedModel], thresholds: Thresholds, now: float
) -> list[UnloadDecision]:
    """Every model idle longer than ``idle_timeout_s``, least recently used first."""
    idle = [m for m in models if now - m.last_used_at > thresholds.idle_timeout_s]
    return [_decide(m, "idle") for m in sorted(idle, key=lambda m: m.last_used_at)]


# ModelManagerAgent -> optimizer ("action" dialect). Legacy frames carry extra fields
# (source_agent, request_id, timestamp), which are ignored.


class _Legacy(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class MmaModel(_Legacy):
    vram_mb: int = Field(ge=0)
    last_used: float = 0.0
    priority: str | int | None = None

    @field_validator("last_used", mode="before")
    @classmethod
    def iso_times_become_epoch_seconds(cls, value: object) -> object:
        return datetime.fromisoformat(value).timestamp() if isinstance(value, str) else value


class RegisterModelManager(_Legacy):
    action: Literal["register_model_manager"]
    vram_budget_mb: int = Field(ge=0)
    idle_timeout: float = Field(gt=0)


class UpdateVramStatus(_Legacy):
    action: Literal["update_vram_status"]
    current_vram_mb: int = Field(ge=0)
    total_vram_mb: int = Field(gt=0)
    loaded_models: dict[str, MmaModel] = Field(default_factory=dict)


class CanAccommodateModel(_Legacy):
    action: Literal["can_accommodate_model"]
    vram_mb: int = Field(ge=0)


class MakeRoomForModel(_Legacy):
    action: Literal["make_room_for_model"]
    vram_mb: int = Field(ge=0)
    loaded_models: dict[str, MmaModel] = Field(default_factory=dict)


MmaRequest = Annotated[
    RegisterModelManager | UpdateVramStatus | CanAccommodateModel | MakeRoomForModel,
    Field(discriminator="action"),
]


class MmaReply(_Model):
    """Reply MMA expects: ``status: "ok"`` plus the fields of the action it sent."""

    status: Literal["ok"] = "ok"
    unload_models: list[str] | None = None
    can_accommodate: bool | None = None
    success: bool | None = None

    def wire(self) -> dict[str, object]:
        return self.model_dump(exclude_none=True)


class ModelManagerLink:
    """Answers MMA's four actions from the ledger.

    Args:
        host: the host tag MMA runs on (its models are on that host's GPUs).
        available_mb: the most VRAM leasable now on one GPU of a host.
        thresholds: the optimizer's current thresholds.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        host: str,
        available_mb: Callable[[str], int],
        thresholds: Callable[[], Thresholds],
        clock: Callable[[], float],
    ) -> None:
        self._host = host
        self._available_mb = available_mb
        self._thresholds = thresholds
        self._clock = clock
        self.budget_mb: int | None = None
        self.models: list[LoadedModel] = []

    def handle(self, request: MmaRequest) -> MmaReply:
        if isinstance(request, RegisterModelManager):
            self.budget_mb = request.vram_budget_mb
            return MmaReply()
        if isinstance(request, CanAccommodateModel):
            return MmaReply(can_accommodate=self._available_mb(self._host) >= request.vram_mb)
        self.models = self._loaded(request.loaded_models)
        if isinstance(request, UpdateVramStatus):
            ratio = request.current_vram_mb / request.total_vram_mb
            now, thresholds = self._clock(), self._thresholds()
            decisions = idle_sweep(self.models, thresholds, now)
            pressure = plan_for_gpu(ratio, self.models, thresholds, now)
            names = [d.model_name for d in ([pressure] if pressure else []) + decisions]
            return MmaReply(unload_models=list(dict.fromkeys(names)))
        return self._make_room(request.vram_mb)

    def _make_room(self, vram_mb: int) -> MmaReply:
        shortfall = vram_mb - self._available_mb(self._host)
        chosen: list[str] = []
        for model in sorted(self.models, key=lambda m: m.last_used_at):  # least recent first
            if shortfall <= 0:
                break
            chosen.append(model.model_name)
            shortfall -= model.vram_mb
        return MmaReply(unload_models=chosen, success=shortfall <= 0)

    def _loaded(self, models: dict[str, MmaModel]) -> list[LoadedModel]:
        return [
            LoadedModel(
                model_name=name,
                owner=MMA_OWNER,
                host=self._host,
                gpu_index=None,
                vram_mb=model.vram_mb,
                last_used_at=model.last_used,
            )
            for name, model in models.items()
        ]
