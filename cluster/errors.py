"""The one error hierarchy of aisys.

Every error raised on purpose by aisys code derives from :class:`AisysError`. Each carries
structured fields, a message prefixed with the component that raised it, and an HTTP status that
the single exception handler in :mod:`deployments._http` maps it to::

    AisysError                      500  base class, never raised directly
    ├── ConfigError                 500  settings or serve config cannot work as given
    ├── ClusterError                503  Ray/NATS not reachable, a host tag has no node, ...
    │   └── MissingHostTag          503  a deployment is pinned to a tag no node carries
    ├── ValidationFailed            422  a request is well-formed JSON but not acceptable
    └── RegistryError               500  base for the agent registry
        ├── AgentNotFound           404  no registration with that id
        └── RegistryConflict        409  the request contradicts the stored registration

Every subclass passes *all* of its constructor arguments to ``super().__init__`` so that
instances pickle: Ray re-creates exceptions on the caller's side by calling ``cls(*args)``.
"""

from __future__ import annotations

__all__ = [
    "AgentNotFound",
    "AisysError",
    "ClusterError",
    "ConfigError",
    "MissingHostTag",
    "RegistryConflict",
    "RegistryError",
    "ValidationFailed",
]


class AisysError(Exception):
    """Base class. ``component`` prefixes the message, ``http_status`` is used by the handler."""

    component = "aisys"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.component}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        """Return the JSON body the HTTP layer sends for this error."""
        return {"error": type(self).__name__, "component": self.component, "detail": str(self)}


class ConfigError(AisysError):
    """Settings or a generated config cannot work; the message names the fix."""

    component = "config"


class ClusterError(AisysError):
    """The cluster (Ray, NATS, a node) is not in the state the operation needs."""

    component = "cluster"
    http_status = 503


class MissingHostTag(ClusterError):
    """A deployment is pinned to a host tag that no live node carries."""

    def __init__(self, tag: str, needed_by: str, hint: str) -> None:
        super().__init__(
            f"no node carries host tag '{tag}' (needed by {needed_by}); {hint}",
        )
        # Re-assign after the base call so pickling via cls(*args) keeps working.
        self.args = (tag, needed_by, hint)
        self.tag = tag
        self.needed_by = needed_by
        self.hint = hint


class ValidationFailed(AisysError):
    """A request parsed but its content is not acceptable."""

    component = "validation"
    http_status = 422


class RegistryError(AisysError):
    """Base class of the agent registry's errors."""

    component = "registry"


class AgentNotFound(RegistryError):
    """No registration exists for ``agent_id``."""

    http_status = 404

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent '{agent_id}' is not registered")
        self.args = (agent_id,)
        self.agent_id = agent_id


class RegistryConflict(RegistryError):
    """The request contradicts the stored registration (e.g. a heartbeat without a TTL check)."""

    http_status = 409

    def __init__(self, agent_id: str, reason: str) -> None:
        super().__init__(f"agent '{agent_id}': {reason}")
        self.args = (agent_id, reason)
        self.agent_id = agent_id
        self.reason = reason
