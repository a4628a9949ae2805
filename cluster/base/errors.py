"""The one error hierarchy of aisys.

Every error raised on purpose by aisys code derives from :class:`AisysError`. Each carries
structured fields, a message prefixed with the component that raised it, and an HTTP status that
the single exception handler in :mod:`deployments.http` maps it to::

    AisysError                      500  base class, never raised directly
    ├── ConfigError                 500  settings or serve config cannot work as given
    ├── ClusterError                503  Ray/NATS not reachable, a host tag has no node, ...
    │   ├── MissingHostTag          503  a deployment is pinned to a tag no node carries
    │   └── ViewLagging             503  a write is stored but this replica's view lags behind it
    ├── ValidationFailed            422  a request is well-formed JSON but not acceptable
    ├── CheckFailed                 500  a step of `aisys check` did not see what it expected
    ├── QuotaExceeded               409  a count or size quota (a setting) would be exceeded
    ├── CoreError                   500  base for CoreOrchestrator's coordinator and supervision
    │   ├── QueueFull               429  the request queue is at its bound; retry later
    │   ├── RequestNotFound         404  no request with that id (or it aged out)
    │   ├── NoRoute                 503  no healthy agent or deployment takes that request type
    │   ├── CircuitOpen             503  the downstream's circuit breaker is open
    │   ├── DispatchFailed          502  the downstream did not answer or answered garbage
    │   ├── RequestCancelled        409  an interrupt cancelled the queued request
    │   ├── ServiceNotFound         404  no Serve application with that name
    │   └── UnknownHost             404  the digital twin has no host with that tag
    ├── ErrorBusError               500  base for ErrorBus
    │   ├── EventTooLarge           413  an error event does not fit in one stream message
    │   └── SpoolFull               507  NATS is unreachable and the on-disk spool is full
    ├── RegistryError               500  base for the agent registry
    │   ├── AgentNotFound           404  no registration with that id
    │   └── RegistryConflict        409  the request contradicts the stored registration
    ├── ResourceError               500  base for the ResourceScheduler
    │   ├── LeaseUnavailable        409  no GPU can ever hold the request (or none is visible)
    │   ├── LeaseNotFound           404  no active or queued lease with that id
    │   ├── HostOverloaded          503  the host is above its CPU/memory threshold
    │   ├── TaskNotFound            404  no task with that id
    │   ├── WorkerNotFound          404  no model worker with that id
    │   └── WorkerFailed            502  a model worker's call or start failed
    └── SecurityError               500  base for the SecurityGateway
        ├── TokenRejected           401  missing, malformed, expired, revoked or foreign token
        ├── CredentialsRejected     401  wrong user/password or agent secret
        ├── PermissionDenied        403  the token lacks the scope a route needs
        ├── IdentityExists          409  a user or agent with that name already exists
        ├── IdentityNotFound        404  no user or agent with that name
        ├── IdentityLimitReached    409  the legacy identity cap is reached; nothing was created
        ├── RateLimited             429  too many failed logins or trust reports; Retry-After
        └── RevocationStale         503  this replica's revocation list is too old to trust
    ├── ObservabilityError      500  base for the ObservabilityHub
    │   ├── AlertRuleNotFound   404  no alert rule with that name
    │   └── SilenceNotFound     404  no silence with that id
    ├── LegacyGatewayError      500  base for the legacy ZeroMQ gateway
    │   └── PortInUse           503  a legacy port is already bound by another process
    ├── LegacySourceUnreadable  422  `aisys import-legacy` cannot read a legacy store
    └── StorageError            503  base for a service's SQLite file that cannot be used
        ├── DatabaseUnusable    503  the file is not a database or is corrupt; restore or move it
        └── DatabaseWriteFailed 503  a write failed (disk full, file busy); nothing was stored

Instances pickle: Ray re-creates exceptions on the caller's side by calling ``cls(*args)``, so
:class:`AisysError` keeps the arguments each instance was constructed with (positional, keywords
bound to their parameters) as ``args``, whatever message a subclass passes to its base.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Self

__all__ = [
    "CheckFailed",
    "CircuitOpen",
    "CoreError",
    "DispatchFailed",
    "NoRoute",
    "QueueFull",
    "RequestCancelled",
    "RequestNotFound",
    "ServiceNotFound",
    "UnknownHost",
    "AgentNotFound",
    "CredentialsRejected",
    "IdentityExists",
    "IdentityLimitReached",
    "IdentityNotFound",
    "RateLimited",
    "RevocationStale",
    "PermissionDenied",
    "SecurityError",
    "TokenRejected",
    "AisysError",
    "ClusterError",
    "ConfigError",
    "ErrorBusError",
    "EventTooLarge",
    "HostOverloaded",
    "LeaseNotFound",
    "LeaseUnavailable",
    "MissingHostTag",
    "RegistryConflict",
    "RegistryError",
    "ResourceError",
    "SpoolFull",
    "TaskNotFound",
    "WorkerFailed",
    "WorkerNotFound",
    "ValidationFailed",
    "ViewLagging",
    "QuotaExceeded",
    "AlertRuleNotFound",
    "ObservabilityError",
    "SilenceNotFound",
    "LegacyGatewayError",
    "LegacySourceUnreadable",
    "PortInUse",
    "StorageError",
    "DatabaseUnusable",
    "DatabaseWriteFailed",
]


class AisysError(Exception):
    """Base class. ``component`` prefixes the message, ``http_status`` is used by the handler."""

    component = "aisys"
    http_status = 500

    _constructed_with: tuple[Any, ...]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        self = super().__new__(cls)
        # cls(*args) must rebuild this instance (pickling, Ray): keep its constructor arguments.
        self._constructed_with = (
            inspect.signature(cls.__init__).bind(self, *args, **kwargs).args[1:] if kwargs else args
        )
        return self

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.args = self._constructed_with

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
        self.tag = tag
        self.needed_by = needed_by
        self.hint = hint


class ViewLagging(ClusterError):
    """A write was stored by a state actor, but this replica's local view did not reach it
    within ``timeout_s``: a read here may not show it yet (the write itself is not undone)."""

    def __init__(self, state: str, version: int, seen: int, timeout_s: float) -> None:
        super().__init__(
            f"the {state} stored the change (version {version}) but this replica's view is "
            f"still at version {seen} after {timeout_s:g}s; its change feed is behind, retry "
            "the read shortly"
        )
        self.state = state
        self.version = version
        self.seen = seen
        self.timeout_s = timeout_s


class ValidationFailed(AisysError):
    """A request parsed but its content is not acceptable."""

    component = "validation"
    http_status = 422


class CheckFailed(AisysError):
    """A step of ``aisys check`` saw something other than a healthy system does."""

    component = "check"


class QuotaExceeded(AisysError):
    """``what`` would exceed ``limit``, the value of ``setting``; nothing was stored.

    The message names the limit and the setting that raises it, so a legacy client's error
    reply tells its operator what to change.
    """

    component = "quota"
    http_status = 409

    def __init__(self, what: str, limit: int | float, setting: str) -> None:
        super().__init__(f"{what}: the limit is {limit:g} (setting {setting})")
        self.what = what
        self.limit = limit
        self.setting = setting


class CoreError(AisysError):
    """Base class of CoreOrchestrator's request coordinator and supervision errors."""

    component = "core"


class QueueFull(CoreError):
    """Backpressure: the request queue holds ``limit`` requests; nothing was queued."""

    http_status = 429

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the request queue is full ({limit} queued); retry later "
            "(or raise AISYS_CORE__COORDINATOR__QUEUE_MAX_SIZE)"
        )
        self.limit = limit


class RequestNotFound(CoreError):
    """No request has ``request_id`` (finished requests age out after ``results_kept``)."""

    http_status = 404

    def __init__(self, request_id: str) -> None:
        super().__init__(f"request '{request_id}' is unknown or has aged out")
        self.request_id = request_id


class NoRoute(CoreError):
    """No registered, non-critical agent (or deployment) takes requests of this type."""

    http_status = 503

    def __init__(self, request_type: str, target: str) -> None:
        super().__init__(
            f"no healthy downstream for {request_type} requests: {target}; register an agent "
            "with that capability"
        )
        self.request_type = request_type
        self.target = target


class CircuitOpen(CoreError):
    """Every downstream that could take the request has an open circuit breaker."""

    http_status = 503

    def __init__(self, downstream: str, retry_in_s: float) -> None:
        super().__init__(
            f"circuit breaker of '{downstream}' is open after repeated failures; "
            f"a trial request is allowed in {retry_in_s:.1f}s"
        )
        self.downstream = downstream
        self.retry_in_s = retry_in_s


class DispatchFailed(CoreError):
    """The downstream did not answer in time, or its reply was not a valid AgentResponse."""

    http_status = 502

    def __init__(self, downstream: str, reason: str) -> None:
        super().__init__(f"dispatch to '{downstream}' failed: {reason}")
        self.downstream = downstream
        self.reason = reason


class RequestCancelled(CoreError):
    """An interrupt cancelled the request while it was queued."""

    http_status = 409

    def __init__(self, request_id: str, session_id: str | None) -> None:
        whose = f"session '{session_id}'" if session_id else "every session"
        super().__init__(f"request '{request_id}' was cancelled by an interrupt of {whose}")
        self.request_id = request_id
        self.session_id = session_id


class ServiceNotFound(CoreError):
    """No Serve application is called ``app``."""

    http_status = 404

    def __init__(self, app: str, known: list[str]) -> None:
        super().__init__(f"no Serve application '{app}'; running: {', '.join(known) or 'none'}")
        self.app = app
        self.known = known


class UnknownHost(CoreError):
    """The digital twin has no host with tag ``host``."""

    http_status = 404

    def __init__(self, host: str, known: list[str]) -> None:
        super().__init__(f"no host '{host}' in the digital twin; known: {', '.join(known)}")
        self.host = host
        self.known = known


class RegistryError(AisysError):
    """Base class of the agent registry's errors."""

    component = "registry"


class AgentNotFound(RegistryError):
    """No registration exists for ``agent_id``."""

    http_status = 404

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent '{agent_id}' is not registered")
        self.agent_id = agent_id


class RegistryConflict(RegistryError):
    """The request contradicts the stored registration (e.g. a heartbeat without a TTL check)."""

    http_status = 409

    def __init__(self, agent_id: str, reason: str) -> None:
        super().__init__(f"agent '{agent_id}': {reason}")
        self.agent_id = agent_id
        self.reason = reason


class ErrorBusError(AisysError):
    """Base class of ErrorBus's errors."""

    component = "errors"


class EventTooLarge(ErrorBusError):
    """An error event's JSON is larger than ``errors.max_event_bytes``."""

    http_status = 413

    def __init__(self, event_id: str, size: int, limit: int) -> None:
        super().__init__(
            f"event '{event_id}' is {size} bytes as JSON, over the limit of {limit}; shorten its "
            "message, details or stack trace (or raise AISYS_ERRORS__MAX_EVENT_BYTES)"
        )
        self.event_id = event_id
        self.size = size
        self.limit = limit


class SpoolFull(ErrorBusError):
    """NATS is unreachable and the events do not fit in the on-disk spool.

    ``stored`` names the events of the same request that reached the stream before the outage;
    no other event of the request was accepted. Retrying the whole request is safe: the stream
    stores an event id once.
    """

    http_status = 507

    def __init__(self, needed_bytes: int, free_bytes: int, stored: list[str]) -> None:
        super().__init__(
            f"NATS is unreachable and the spool has {free_bytes} bytes free, {needed_bytes} "
            f"needed; {len(stored)} event(s) of this request were stored, retry the rest later "
            "(or raise AISYS_ERRORS__SPOOL_MAX_MB)"
        )
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes
        self.stored = stored


class ResourceError(AisysError):
    """Base class of the ResourceScheduler's errors."""

    component = "resources"


class LeaseUnavailable(ResourceError):
    """The lease request cannot be met by any GPU, not even an empty one (or none is visible)."""

    http_status = 409

    def __init__(self, reason: str) -> None:
        super().__init__(f"lease unavailable: {reason}")
        self.reason = reason


class LeaseNotFound(ResourceError):
    """No granted or queued lease has ``lease_id``."""

    http_status = 404

    def __init__(self, lease_id: str) -> None:
        super().__init__(f"lease '{lease_id}' is not granted or queued")
        self.lease_id = lease_id


class HostOverloaded(ResourceError):
    """Backpressure: the host's CPU or memory use is above its threshold; retry later."""

    http_status = 503

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"host '{host}' is overloaded: {reason}; retry later")
        self.host = host
        self.reason = reason


class TaskNotFound(ResourceError):
    """No task has ``task_id``."""

    http_status = 404

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task '{task_id}' is unknown")
        self.task_id = task_id


class WorkerNotFound(ResourceError):
    """No live model worker has ``worker_id``."""

    http_status = 404

    def __init__(self, worker_id: str) -> None:
        super().__init__(f"worker '{worker_id}' is unknown or over")
        self.args = (worker_id,)
        self.worker_id = worker_id


class WorkerFailed(ResourceError):
    """A model worker's call (or start) failed; ``reason`` says how (and what was done)."""

    http_status = 502

    def __init__(self, worker_id: str, reason: str) -> None:
        super().__init__(f"worker '{worker_id}': {reason}")
        self.args = (worker_id, reason)
        self.worker_id = worker_id
        self.reason = reason


class SecurityError(AisysError):
    """Base class of the SecurityGateway's errors."""

    component = "security"


class TokenRejected(SecurityError):
    """The bearer token is missing or does not verify; ``reason`` says which check failed."""

    http_status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(f"token rejected: {reason}")
        self.reason = reason


class CredentialsRejected(SecurityError):
    """A login or client-credentials grant failed (the message never says which part)."""

    http_status = 401

    def __init__(self, subject: str) -> None:
        super().__init__(f"invalid credentials for '{subject}'")
        self.subject = subject


class PermissionDenied(SecurityError):
    """The token is valid but lacks ``scope``."""

    http_status = 403

    def __init__(self, subject: str, scope: str) -> None:
        super().__init__(f"'{subject}' lacks the '{scope}' scope this route needs")
        self.subject = subject
        self.scope = scope


class IdentityExists(SecurityError):
    """A user or agent identity with ``name`` already exists."""

    http_status = 409

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} '{name}' already exists")
        self.kind = kind
        self.name = name


class IdentityNotFound(SecurityError):
    """No user or agent identity with ``name``."""

    http_status = 404

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} '{name}' does not exist")
        self.kind = kind
        self.name = name


class IdentityLimitReached(SecurityError):
    """``limit`` identities of ``kind`` exist already; no new one is created."""

    http_status = 409

    def __init__(self, kind: str, limit: int, setting: str) -> None:
        super().__init__(
            f"the {kind} limit is reached ({limit}); an admin can delete unused ones "
            f"(or raise {setting})"
        )
        self.kind = kind
        self.limit = limit
        self.setting = setting


class RateLimited(SecurityError):
    """Too many attempts by ``key`` in the window; retry after ``retry_after_s`` seconds."""

    http_status = 429

    def __init__(self, what: str, key: str, retry_after_s: float) -> None:
        super().__init__(
            f"too many {what} for {key}; retry in {max(1, math.ceil(retry_after_s))} s"
        )
        self.what = what
        self.key = key
        self.retry_after_s = retry_after_s


class RevocationStale(SecurityError):
    """The replica has not heard from the security actor for ``age_s``: fail closed."""

    http_status = 503

    def __init__(self, age_s: float, limit_s: float) -> None:
        super().__init__(
            f"this replica's revocation list is {age_s:.1f} s old (limit {limit_s:g} s): the "
            "security feed is not reaching it, so no token is accepted until it catches up; "
            "retry shortly"
        )
        self.age_s = age_s
        self.limit_s = limit_s


class LegacyGatewayError(AisysError):
    """Base class of the legacy ZeroMQ gateway's errors."""

    component = "legacy"


class PortInUse(LegacyGatewayError):
    """A legacy port the gateway must bind is held by another process."""

    http_status = 503

    def __init__(self, port: int, owner: str) -> None:
        super().__init__(
            f"port {port} is already in use by {owner}; stop that process or map the legacy "
            "service to another port in legacy_gateway.ports"
        )
        self.port = port
        self.owner = owner


class ObservabilityError(AisysError):
    """Base class of the ObservabilityHub's errors."""

    component = "observability"


class AlertRuleNotFound(ObservabilityError):
    """No alert rule has that name."""

    http_status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"alert rule '{name}' does not exist")
        self.name = name


class SilenceNotFound(ObservabilityError):
    """No silence has that id."""

    http_status = 404

    def __init__(self, silence_id: str) -> None:
        super().__init__(f"silence '{silence_id}' does not exist")
        self.silence_id = silence_id


class LegacySourceUnreadable(AisysError):
    """A legacy store named to ``aisys import-legacy`` cannot be read (as a whole or one table).

    Rows that cannot be read are skipped with a reason instead; this error is for the store:
    a missing or unreadable file, a file that is not SQLite, a missing table, Redis unreachable.
    """

    component = "import-legacy"
    http_status = 422

    def __init__(self, source: str, location: str, reason: str) -> None:
        super().__init__(f"{source} ({location}): {reason}")
        self.source = source
        self.location = location
        self.reason = reason


class StorageError(AisysError):
    """A service's SQLite file at ``path`` cannot be used; ``fix`` says what to do.

    HTTP 503: the service is there but cannot serve until someone acts on ``fix``.
    """

    component = "storage"
    http_status = 503

    def __init__(self, path: str, reason: str, fix: str) -> None:
        super().__init__(f"{path}: {reason}; {fix}")
        self.path = path
        self.reason = reason
        self.fix = fix


class DatabaseUnusable(StorageError):
    """The file is not a SQLite database or is corrupt: the service cannot open its state.

    Raised when the store opens (and by every call of an actor that could not open it), never
    retried by itself: the file stays as it is until it is restored or moved aside.
    """


class DatabaseWriteFailed(StorageError):
    """A write failed (the disk is full, the file is locked by another process) and was rolled
    back: nothing of it was stored, the connection is usable, retrying later is safe."""
