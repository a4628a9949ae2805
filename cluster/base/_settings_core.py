"""Settings of CoreOrchestrator (``settings.core``): registry, coordinator, twin, supervision."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cluster.base._settings_base import DeploymentSettings, Section

__all__ = [
    "CoordinatorSettings",
    "CoreSettings",
    "DispatchRoute",
    "RegistrySettings",
    "RequestType",
    "SupervisionSettings",
    "TwinSettings",
]


class RegistrySettings(Section):
    """Agent registry: TTL heartbeats with Consul semantics."""

    default_ttl_s: float | None = Field(
        default=30.0,
        gt=0,
        description="TTL given to registrations that do not name one; None means no TTL check.",
    )
    deregister_critical_after_s: float = Field(
        default=600.0, gt=0, description="Remove an agent after it has been critical this long."
    )
    sweep_interval_s: float = Field(default=1.0, gt=0, le=60)
    change_log_size: int = Field(
        default=10_000, ge=100, description="Most changes the in-memory change log keeps."
    )
    change_log_max_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=64 * 1024,
        description="Most bytes (JSON of the records) the in-memory change log keeps; a "
        "follower that falls further behind gets a snapshot instead.",
    )
    metadata_max_bytes: int = Field(
        default=8 * 1024,
        ge=256,
        description="Largest metadata of one registration, measured as its JSON encoding; "
        "larger registrations are refused.",
    )
    legacy_agents_max: int = Field(
        default=2048,
        ge=1,
        description="Most agents registered through the legacy ports at once; a new one "
        "beyond it gets an error reply (re-registering a held agent_id is always taken).",
    )
    legacy_agents_per_source: int = Field(
        default=256,
        ge=1,
        description="Most agents registered through the legacy ports from one source "
        "address (the connection's peer) at once.",
    )
    legacy_ttl_s: float = Field(
        default=86_400.0,
        gt=0,
        description="A legacy-registered agent that probes do not keep passing and that "
        "neither re-registers nor sends a heartbeat for this long turns critical, and is "
        "removed deregister_critical_after_s later.",
    )


RequestType = Literal["text", "audio", "vision"]


class DispatchRoute(Section):
    """Where requests of one type go: agents with a capability, or a Serve deployment."""

    capability: str | None = Field(
        default=None, description="Registry capability of the agents that take these requests."
    )
    app: str | None = Field(default=None, description="Serve application of the target.")
    deployment: str | None = Field(default=None, description="Serve deployment of the target.")
    method: str = Field(
        default="handle_task", description="Deployment method given the TaskDefinition."
    )

    @model_validator(mode="after")
    def names_a_capability_or_a_deployment(self) -> DispatchRoute:
        by_capability = self.capability is not None
        by_deployment = self.app is not None and self.deployment is not None
        half_deployment = (self.app is None) != (self.deployment is None)
        if by_capability == by_deployment or half_deployment:
            raise ValueError(
                "a dispatch route names either a capability, or both app and deployment"
            )
        return self


def _default_routes() -> dict[RequestType, DispatchRoute]:
    return {
        "text": DispatchRoute(capability="reasoning"),
        "audio": DispatchRoute(capability="audio"),
        "vision": DispatchRoute(capability="vision"),
    }


class CoordinatorSettings(Section):
    """Request coordinator: bounded priority queue, dispatch over ZeroMQ, circuit breakers."""

    queue_max_size: int = Field(
        default=100, ge=1, description="Queued requests beyond this are refused with 429."
    )
    routes: dict[RequestType, DispatchRoute] = Field(
        default_factory=_default_routes, description="Request type -> where it is dispatched."
    )
    max_in_flight: int = Field(default=4, ge=1, description="Requests dispatched at once.")
    dispatch_timeout_s: float = Field(
        default=5.0, gt=0, description="How long one ZeroMQ attempt waits for the reply."
    )
    dispatch_attempts: int = Field(
        default=2, ge=1, le=10, description="Lazy Pirate attempts (a fresh socket each)."
    )
    breaker_failure_threshold: int = Field(
        default=3, ge=1, description="Consecutive failures that open a downstream's breaker."
    )
    breaker_reset_s: float = Field(
        default=30.0, gt=0, description="Open breakers allow one trial request after this."
    )
    while_open: Literal["fail", "wait"] = Field(
        default="fail",
        description="Requests whose downstream is open or missing: fail at once, or stay queued.",
    )
    interrupt_pause_s: float = Field(
        default=5.0, ge=0, description="Dispatch pause after an interrupt names no duration."
    )
    results_kept: int = Field(
        default=10_000, ge=1, description="Finished requests whose status stays queryable."
    )


class TwinSettings(Section):
    """Digital twin: host sampling, history, and the legacy simulate_load thresholds."""

    sample_interval_s: float = Field(default=5.0, gt=0, description="Host probe period.")
    history_length: int = Field(default=60, ge=1, description="Samples kept per host.")
    probe_timeout_s: float = Field(default=5.0, gt=0, description="Wait for a host probe.")
    vram_deny_percent: float = Field(default=95.0, gt=0, le=100)
    cpu_caution_percent: float = Field(default=90.0, gt=0, le=100)
    ram_deny_percent: float = Field(default=90.0, gt=0, le=100)


class SupervisionSettings(Section):
    """Agent health sweep (legacy ``{"action": "health_check"}`` over ZeroMQ REQ)."""

    sweep_interval_s: float = Field(default=30.0, gt=0, description="Period of the sweep.")
    probe_timeout_s: float = Field(
        default=2.0, gt=0, description="How long one probe attempt waits for the reply."
    )
    probe_attempts: int = Field(
        default=2,
        ge=1,
        le=10,
        description="Lazy Pirate attempts (a fresh socket each); an agent that answers none is "
        "critical.",
    )
    max_concurrent_probes: int = Field(
        default=128,
        ge=1,
        description="Probes in flight at once; with at least as many agents' worth, a sweep of "
        "agents that never answer takes about probe_timeout_s x probe_attempts.",
    )

    @model_validator(mode="after")
    def an_unanswered_probe_ends_within_the_sweep_interval(self) -> SupervisionSettings:
        budget = self.probe_timeout_s * self.probe_attempts
        if budget > self.sweep_interval_s:
            raise ValueError(
                f"probe_timeout_s x probe_attempts ({budget:g}s) is longer than sweep_interval_s "
                f"({self.sweep_interval_s:g}s); lower the timeout or the attempts, or probe less "
                "often"
            )
        return self


class CoreSettings(DeploymentSettings):
    """CoreOrchestrator (``/core``): registry, twin, request coordinator and supervision."""

    host: str = "mainpc"
    registry: RegistrySettings = RegistrySettings()
    coordinator: CoordinatorSettings = CoordinatorSettings()
    twin: TwinSettings = TwinSettings()
    supervision: SupervisionSettings = SupervisionSettings()
