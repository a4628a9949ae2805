"""Building blocks of every settings section: the frozen, strict base model and the port type."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DeploymentSettings", "Port", "Section"]

Port = Annotated[int, Field(ge=1, le=65535)]


class Section(BaseModel):
    """A settings section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DeploymentSettings(Section):
    """How a service's Serve deployment is placed and sized."""

    host: str = Field(description="Host profile (a key of Settings.hosts) this service runs on.")
    num_replicas: int = Field(default=1, ge=1)
    # Serve's default is one whole CPU per replica, which a 2-core host cannot give five services.
    num_cpus: float = Field(default=0.1, ge=0)
    max_ongoing_requests: int = Field(default=200, ge=1)
    health_check_period_s: float = Field(default=10.0, gt=0)
    health_check_timeout_s: float = Field(default=30.0, gt=0)
