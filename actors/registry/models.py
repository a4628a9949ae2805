"""Pydantic models of the agent registry: what clients send, what is stored, the change feed."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

__all__ = [
    "AgentQuery",
    "AgentRecord",
    "Change",
    "ChangeFeed",
    "Health",
    "Heartbeat",
    "ImportedAgent",
    "Registration",
]

_AGENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
Port = Annotated[int, Field(ge=1, le=65535)]


class Health(StrEnum):
    """Consul-style check states, plus ``unknown`` before any evidence arrived."""

    UNKNOWN = "unknown"
    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_agent_id(value: str) -> str:
    if not _AGENT_ID_RE.match(value):
        raise ValueError(
            f"agent_id {value!r} must be 1-128 characters: letters, digits and _ . : @ -, "
            "starting with a letter or digit"
        )
    return value


def _check_labels(values: list[str], what: str) -> list[str]:
    for value in values:
        if not _LABEL_RE.match(value):
            raise ValueError(
                f"{what} {value!r} must be 1-64 characters: letters, digits and _ . : / -"
            )
    return sorted(set(values))


class Registration(_Model):
    """An agent's registration. Registering the same ``agent_id`` again replaces it."""

    agent_id: str
    agent_type: str | None = Field(default=None, max_length=128, description="Defaults to id.")
    host: str = Field(min_length=1, max_length=253)
    port: Port
    health_check_port: Port | None = None
    capabilities: list[str] = Field(default_factory=list, max_length=64)
    tags: list[str] = Field(default_factory=list, max_length=64)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    check: Literal["ttl", "none"] = Field(
        default="ttl",
        description="'ttl': the agent sends heartbeats and turns critical without them; "
        "'none': health comes from probes only and starts 'unknown'.",
    )
    ttl_s: float | None = Field(
        default=None, gt=0, le=86_400, description="TTL of a 'ttl' check; None: the default."
    )
    deregister_critical_after_s: float | None = Field(default=None, gt=0)

    @field_validator("agent_id")
    @classmethod
    def agent_id_is_a_plain_name(cls, value: str) -> str:
        return _check_agent_id(value)

    @field_validator("capabilities")
    @classmethod
    def capabilities_are_plain_labels(cls, values: list[str]) -> list[str]:
        return _check_labels(values, "capability")

    @field_validator("tags")
    @classmethod
    def tags_are_plain_labels(cls, values: list[str]) -> list[str]:
        return _check_labels(values, "tag")


class ImportedAgent(_Model):
    """A registration read from the legacy ServiceRegistry by ``aisys import-legacy``.

    It is stored with the ``none`` check (health ``unknown`` until a probe or heartbeat says
    otherwise) and the legacy ``last_registered`` as its registration time.
    """

    registration: Registration
    registered_at: float = Field(description="The legacy record's last_registered (epoch s).")


class Heartbeat(_Model):
    """A TTL heartbeat (Consul's pass/warn/fail) or a probe result for an agent."""

    status: Literal["passing", "warning", "critical"] = "passing"
    note: str = Field(default="", max_length=1024)


class AgentRecord(_Model):
    """A stored registration with its health. Times are seconds since the epoch."""

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
    source: str | None = Field(
        default=None,
        description="Peer address of the legacy port connection it was registered through; "
        "None: registered over HTTP/gRPC or imported.",
    )


class AgentQuery(_Model):
    """Filters for listing agents; every given filter must match."""

    capability: str | None = None
    host: str | None = None
    health: Health | None = None
    agent_type: str | None = None
    tag: str | None = None

    def matches(self, record: AgentRecord) -> bool:
        return (
            (self.capability is None or self.capability in record.capabilities)
            and (self.host is None or self.host == record.host)
            and (self.health is None or self.health == record.health)
            and (self.agent_type is None or self.agent_type == record.agent_type)
            and (self.tag is None or self.tag in record.tags)
        )


class Change(_Model):
    """One change of the registry; ``record`` is None for a deletion."""

    version: int
    op: Literal["upsert", "delete"]
    agent_id: str
    record: AgentRecord | None


class ChangeFeed(_Model):
    """Changes after a version. When the caller is too far behind, ``snapshot`` replaces them."""

    version: int
    changes: list[Change] = Field(default_factory=list)
    snapshot: list[AgentRecord] | None = None
