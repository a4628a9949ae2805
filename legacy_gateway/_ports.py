"""What the legacy ports of the monitoring, resource and system agents share.

:class:`ActionPort` is the dispatch every such port uses: health verbs on the main port (raw
``ping`` too), the port's ``action`` table, its ``command`` table, and error replies in the
caller's dialect when the owning service refuses or is down. :class:`Services` reaches the
aisys services those ports translate to, resolved lazily because the gateway may start before
them. Every handler runs on its port's thread (:mod:`legacy_gateway.server`): anything that
calls a service returns a coroutine, which the server runs on the event loop. Every
agent-status reply words the registry's health with :func:`legacy_status`.

Example::

    class HealthMonitorPort(ActionPort):
        service = "HealthMonitor"

        def actions(self) -> ActionTable:
            return {"get_status": self._status}
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from pydantic import JsonValue, ValidationError
from ray import serve
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException

from actors.registry.models import Health
from actors.resources.client import ResourcesClient
from cluster.base.errors import AisysError
from legacy_gateway._codec import (
    HEALTH_VERBS,
    CommandRequest,
    Dialect,
    InvalidRequest,
    LegacyRequest,
    RawRequest,
    Reply,
    TypedRequest,
    error_reply,
    iso_time,
    unknown,
)
from legacy_gateway.server import Outcome, Received

__all__ = [
    "HEALTH_PROBE_TIMEOUT_S",
    "HEALTH_READING_MAX_AGE_S",
    "LEGACY_STATUS",
    "ActionPort",
    "ActionTable",
    "HealthOnlyPort",
    "Services",
    "guarded",
    "legacy_status",
    "number",
    "probe_problem",
    "text",
]

#: A health reply reuses a reading of the port's aisys service this recent (seconds).
HEALTH_READING_MAX_AGE_S: Final = 1.0
#: How long a health reply waits for the port's aisys service before calling it degraded.
HEALTH_PROBE_TIMEOUT_S: Final = 2.0

#: A registry check state in the status words legacy agents stored and their clients test
#: (``docs/legacy-protocol.md`` 1.1: ``get_ok_agents`` and PHM want ``"ok"``; the error bus marked a
#: failing agent ``"error"``).
LEGACY_STATUS: Final[dict[Health, str]] = {
    Health.PASSING: "ok",
    Health.WARNING: "degraded",
    Health.CRITICAL: "error",
    Health.UNKNOWN: "unknown",
}

Fields = dict[str, JsonValue]
ActionTable = dict[str, Callable[[Fields], Outcome]]


def text(fields: Fields, key: str) -> str | None:
    """A non-empty string field, else None."""
    value = fields.get(key)
    return value if isinstance(value, str) and value else None


def legacy_status(health: Health) -> str:
    """An agent's registry health as the legacy status word every agent-status reply uses."""
    return LEGACY_STATUS[health]


def number(fields: Fields, key: str) -> float | None:
    """A numeric field (not a bool), else None."""
    value = fields.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


async def guarded(service: str, dialect: Dialect, call: Awaitable[Reply | bytes]) -> Reply | bytes:
    """Await a service call; a refusal or an unreachable service becomes an error reply."""
    try:
        return await call
    except (AisysError, ValidationError) as exc:
        cause = getattr(exc, "cause", None)
        return error_reply(dialect, str(cause if isinstance(cause, AisysError) else exc))
    except (RayError, RayServeException) as exc:
        return error_reply(dialect, f"{service}: the aisys service is unavailable ({exc!s:.200})")


async def probe_problem(
    service: str, probe: Awaitable[object], timeout_s: float = HEALTH_PROBE_TIMEOUT_S
) -> str | None:
    """None when ``probe`` (a call to the aisys service behind ``service``) answers in time,
    else what went wrong, for a ``degraded`` health reply."""
    try:
        await asyncio.wait_for(probe, timeout_s)
    except TimeoutError:
        return f"{service}: the aisys service did not answer within {timeout_s:g}s"
    except (AisysError, RayError, RayServeException) as exc:
        return f"{service}: the aisys service is unavailable ({exc!s:.200})"
    return None


class Services:
    """Lazily resolved handles of the aisys services the legacy ports translate to."""

    def __init__(self) -> None:
        self._handles: dict[tuple[str, str], Any] = {}
        self._resources: ResourcesClient | None = None

    def deployment(self, name: str, app: str) -> Any:
        """A Serve handle of deployment ``name`` of application ``app``."""
        key = (name, app)
        handle = self._handles.get(key)
        if handle is None:
            handle = self._handles[key] = serve.get_deployment_handle(name, app_name=app)
        return handle

    def resources(self) -> ResourcesClient:
        """The ResourceScheduler's actor (created by its deployment).

        Raises:
            ValueError: the actor does not run yet.
        """
        if self._resources is None:
            self._resources = ResourcesClient.named()
        return self._resources


class ActionPort(abc.ABC):
    """A legacy main port: health verbs, ``action`` and ``command`` tables.

    Subclasses set ``service`` and implement :meth:`actions` (or :meth:`action`, when their
    handlers need the request's connection) and may override :meth:`health`; ports that
    speak the ``command`` dialect or RequestCoordinator-style ``type`` requests override
    :meth:`commands` or :meth:`typed`. Handlers may return a reply or a coroutine; coroutines
    are wrapped by :func:`guarded`.
    """

    service: str
    #: Health verbs this port answers with :meth:`health` on its main port.
    health_verbs: frozenset[str] = HEALTH_VERBS

    def __init__(self) -> None:
        self.started_at = time.time()
        # (monotonic time, problem or None) of the last probe of the aisys service
        self._reading: tuple[float, str | None] | None = None

    def probe(self) -> Awaitable[object] | None:
        """A call that fails while the aisys service behind this port is down or unhealthy.

        None (the default): nothing behind the port to check; its health is always ``ok``.
        """
        return None

    def health(self) -> Outcome:
        """The port's health dict (legacy H1/H3 shape): ``ok``, or ``degraded`` while the aisys
        service behind it (:meth:`probe`) fails; a coroutine when that needs a call."""
        reading = self._reading
        if reading is not None and time.monotonic() - reading[0] < HEALTH_READING_MAX_AGE_S:
            return self.health_reply(reading[1])
        try:
            probe = self.probe()
        except (ValueError, AisysError, RayError, RayServeException) as exc:  # not found
            problem = f"{self.service}: the aisys service is unavailable ({exc!s:.200})"
            self._reading = (time.monotonic(), problem)
            return self.health_reply(problem)
        if probe is None:
            return self.health_reply(None)

        async def answer() -> Reply:
            problem = await probe_problem(self.service, probe)
            self._reading = (time.monotonic(), problem)
            return self.health_reply(problem)

        return answer()

    def health_reply(self, problem: str | None) -> Reply:
        """The health dict for a probe's outcome: ``problem`` None is ``ok``."""
        return Reply(
            status="ok" if problem is None else "degraded",
            service=self.service,
            ready=problem is None,
            initialized=True,
            message=f"{self.service} is healthy" if problem is None else problem,
            timestamp=iso_time(time.time()),
            uptime=round(time.time() - self.started_at, 3),
        )

    def actions(self) -> ActionTable:
        """The ``action`` dialect: action name -> handler of the request's other fields."""
        return {}

    def action(self, name: str, received: Received) -> Callable[[Fields], Outcome] | None:  # noqa: ARG002
        """The handler of action ``name``, from :meth:`actions`; a port whose handlers need the
        request's connection (its peer address) overrides this instead."""
        return self.actions().get(name)

    def commands(self) -> ActionTable:
        """The ``command`` dialect: upper-case command -> handler of payload + fields."""
        return {}

    def typed(self, request: TypedRequest) -> Outcome:
        return unknown(request)

    def handle(self, request: LegacyRequest, received: Received) -> Outcome:
        if isinstance(request, InvalidRequest):
            return error_reply(request.dialect, request.reason)
        if isinstance(request, RawRequest):
            return self.health() if request.text in self.health_verbs else unknown(request)
        if isinstance(request, TypedRequest):
            return self._wrap(Dialect.ACTION, self.typed(request))
        if isinstance(request, CommandRequest):
            handler = self.commands().get(request.command.upper())
            if handler is None:
                return unknown(request)
            merged: Fields = {**request.fields, **request.payload}
            return self._wrap(Dialect.COMMAND, handler(merged))
        if request.action in self.health_verbs:
            return self._wrap(Dialect.ACTION, self.health())
        handler = self.action(request.action, received)
        if handler is None:
            return unknown(request)
        return self._wrap(Dialect.ACTION, handler(request.fields))

    def _wrap(self, dialect: Dialect, outcome: Outcome) -> Outcome:
        if inspect.isawaitable(outcome):
            return guarded(self.service, dialect, outcome)
        return outcome


class HealthOnlyPort:
    """A dedicated health port: any request gets the main port's health dict."""

    def __init__(self, main: ActionPort) -> None:
        self.service = main.service
        self._main = main

    def handle(self, request: LegacyRequest, received: Received) -> Outcome:  # noqa: ARG002
        return self._main._wrap(Dialect.ACTION, self._main.health())
